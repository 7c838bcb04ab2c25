"""MkDocs hooks for the lessons: the learner's progress, and diagrams that work offline.

Progress. After `pytest checks`, the grader writes `.sentinel/results.json` at the
top of the repository. When the site is built or served, this module reads it
and replaces the marker `<!-- progress: step N -->` on a step page, and
`<!-- progress: all -->` on the progress page, with what the last run found.
It also marks each heading that a check links to with that check's outcome.
`mkdocs serve` rebuilds when the file changes, so a page shows the new result
on its next reload. With no results file, the pages say how to make one. The
environment variable SENTINEL_RESULTS points at another results file (the
project's tests use it).

Code. A line `<!-- include PATH start="..." end="..." hl="..." -->` becomes a
code block that pymdownx.snippets fills from the real file PATH (relative to the
repository): from the first line containing `start` (default: the first line)
through the first line containing `end`, or up to the line before the one
containing `until` (default: the last line). The lines `hl` names are
highlighted: `A .. B` is a run of lines, `;` separates runs, `^A` matches only
a line that starts with A, and `*` is every line of code (not blank, not a
comment). The file's own line numbers are shown. Lessons
name code by what it says, not by line number, so a file that gains a line does
not shift what a lesson shows; a marker that no longer matches fails the build.

Diagrams. Mermaid draws them from `docs/assets/vendor/mermaid/mermaid.min.js`,
which `python3 scripts/bootstrap.py` fetches from the npm registry. Without
that file, Material would fetch Mermaid from a CDN when a page opens; instead
this module shows each diagram's text with a note on how to get it drawn.
"""

import html
import json
import logging
import os
import posixpath
import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.lessons")

MERMAID_SCRIPT = "assets/vendor/mermaid/mermaid.min.js"
STEP_PAGES = {
    0: "setup.md",
    1: "module-1/step-1-api.md",
    2: "module-1/step-2-queue.md",
    3: "module-1/step-3-dockerfile.md",
    4: "module-1/step-4-image.md",
    5: "module-1/step-5-compose.md",
}
PROGRESS_PAGE = "module-1/progress.md"
MARKER = re.compile(r"^<!-- progress: (step (?P<step>\d)|all) -->$", re.MULTILINE)
# Material's icons, drawn as inline SVG when the site is built, so they show
# the same with any font (emoji would need an emoji font).
ICONS = {
    "passed": "material-check-circle",
    "failed": "material-close-circle",
    "skipped": "material-minus-circle",
}
INCLUDE = re.compile(
    r"^(?P<indent>[ \t]*)<!-- include (?P<args>.+?) -->$", re.MULTILINE
)
LANGUAGES = {".py": "python", ".yaml": "yaml", ".yml": "yaml", ".txt": "text"}


@dataclass(frozen=True)
class Check:
    """One check's result, as the grader wrote it."""

    step: int
    check: str
    title: str
    outcome: str  # passed, failed or skipped
    hint: str
    lesson: str  # page and anchor under docs/, "module-1/step-2-queue.md#todo-2-3"


@dataclass(frozen=True)
class Results:
    """The last grading run, or why there is none to show."""

    checks: tuple[Check, ...] = ()
    target: str = ""
    finished: str = ""
    problem: str = ""  # set when the file exists but cannot be used

    @property
    def found(self) -> bool:
        return bool(self.finished) and not self.problem


def results_path(config: Any) -> Path:
    """Where the grader writes its results, unless SENTINEL_RESULTS says otherwise."""
    if os.environ.get("SENTINEL_RESULTS"):
        return Path(os.environ["SENTINEL_RESULTS"])
    return Path(config.config_file_path).parent / ".sentinel" / "results.json"


def load_results(path: Path) -> Results:
    """Read a results file; a missing one is normal, a broken one is reported."""
    if not path.exists():
        return Results()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        checks = tuple(
            Check(
                step=int(item["step"]),
                check=str(item["check"]),
                title=str(item.get("title") or item["check"]),
                outcome=str(item["outcome"]),
                hint=str(item.get("hint") or ""),
                lesson=str(item.get("lesson") or ""),
            )
            for item in data["checks"]
        )
        return Results(checks, str(data["target"]), str(data["finished"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # A half-written file (the grader still running) or an old format: say so
        # on the page rather than failing the whole site.
        return Results(problem=f"{path} could not be read ({exc!r})")


# --- mkdocs events ------------------------------------------------------------


_state: dict[str, Any] = {"results": Results(), "mermaid": True}


def on_config(config: Any) -> Any:
    root = Path(config.config_file_path).parent
    # Snippets resolve included files against the repository, wherever mkdocs
    # was started from.
    config.mdx_configs.setdefault("pymdownx.snippets", {})["base_path"] = [str(root)]
    mermaid = Path(config.docs_dir) / MERMAID_SCRIPT
    _state["mermaid"] = mermaid.exists()
    if not _state["mermaid"]:
        config.extra_javascript = [
            script
            for script in config.extra_javascript
            if str(script) != MERMAID_SCRIPT
        ]
        log.info(
            "Diagrams will show as text: %s is missing; run "
            "`python3 scripts/bootstrap.py` with npm installed to fetch it.",
            mermaid,
        )
    _state["results"] = load_results(results_path(config))
    return config


def on_serve(server: Any, config: Any, builder: Any) -> Any:
    # Not in mkdocs.yml's `watch:`, which refuses a folder that does not exist
    # yet; the folder is git-ignored and the grader writes into it.
    folder = results_path(config).parent
    folder.mkdir(parents=True, exist_ok=True)
    server.watch(str(folder))
    return server


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    results: Results = _state["results"]
    here = page.file.src_uri
    root = Path(config.config_file_path).parent

    def include(match: re.Match[str]) -> str:
        try:
            return include_block(root, match["args"], match["indent"])
        except ValueError as exc:
            raise PluginError(f"{here}: {match[0].strip()}: {exc}") from exc

    markdown = INCLUDE.sub(include, markdown)

    def replace(match: re.Match[str]) -> str:
        if match["step"] is not None:
            return step_progress(results, int(match["step"]), here)
        return all_progress(results, here)

    if results.found:
        markdown = mark_headings(markdown, results, here)
    return MARKER.sub(replace, markdown)


def on_page_content(html_text: str, page: Any, config: Any, files: Any) -> str:
    if not _state["mermaid"]:
        html_text = diagrams_as_text(html_text)
    return html_text


# --- code from the real files --------------------------------------------------


def include_block(root: Path, args: str, indent: str = "") -> str:
    """A fenced code block that includes part of a real file, found by its text."""
    path, *pairs = shlex.split(args)
    options = dict(pair.split("=", 1) for pair in pairs)
    unknown = set(options) - {"start", "end", "until", "hl", "title"}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}")
    lines = (root / path).read_text(encoding="utf-8").splitlines()
    first, last = 1, len(lines)
    if "start" in options:
        first = find_line(lines, options["start"], 1)
    if "end" in options:
        last = find_line(lines, options["end"], first)
    elif "until" in options:
        last = find_line(lines, options["until"], first + 1) - 1
    while last > first and not lines[last - 1].strip():
        last -= 1  # a block ends with its last line of code, not a gap
    marked: list[int] = []
    for run in filter(
        None, (part.strip() for part in options.get("hl", "").split(";"))
    ):
        if run == "*":
            marked += [
                number - first + 1
                for number in range(first, last + 1)
                if lines[number - 1].strip()
                and not lines[number - 1].lstrip().startswith("#")
            ]
            continue
        begin, _, end = (side.strip() for side in run.partition(".."))
        low = find_line(lines, begin, first)
        high = find_line(lines, end, low) if end else low
        if high > last:
            raise ValueError(f"highlight {run!r} reaches past the end, line {last}")
        marked += range(low - first + 1, high - first + 2)
    name = Path(path).name
    language = (
        "dockerfile" if name == "Dockerfile" else LANGUAGES.get(Path(path).suffix)
    )
    header = [language or "text", f'title="{options.get("title", path)}"']
    header.append(f'linenums="{first}"')
    if marked:
        header.append(f'hl_lines="{" ".join(map(str, marked))}"')
    block = ["``` " + " ".join(header), f'--8<-- "{path}:{first}:{last}"', "```"]
    return "\n".join(indent + line for line in block)


def find_line(lines: list[str], text: str, after: int) -> int:
    """The 1-based number of the first line at or after `after` containing `text`.

    `^text` matches only a line that starts with `text`, indentation aside.
    """
    for number in range(after, len(lines) + 1):
        line = lines[number - 1]
        if text.startswith("^"):
            if line.lstrip().startswith(text[1:]):
                return number
        elif text in line:
            return number
    raise ValueError(f"no line from {after} on contains {text!r}")


# --- what the pages show ------------------------------------------------------


def step_progress(results: Results, step: int, here: str) -> str:
    """The block at the top of a step page: this step's checks, or how to run them."""
    command = f"pytest checks --step {step}"
    if results.problem:
        return _admonition(
            "warning",
            "Your progress could not be read",
            f"{_text(results.problem)}. Run `{command}` again.",
        )
    if not results.found:
        return _admonition(
            "info",
            "Your progress",
            f"No results yet. Run `{command}`, then reload this page: each "
            "check of this step will show here as passed or failing.",
        )
    checks = [check for check in results.checks if check.step == step]
    if not checks:
        return _admonition(
            "info",
            "Your progress",
            f"The last run ({_when(results)}) did not include step {step}. "
            f"Run `{command}`, then reload this page.",
        )
    passed = sum(check.outcome == "passed" for check in checks)
    lines = [
        f"{_count(passed, len(checks))} passed in the last run on "
        f"`{_text(results.target)}` ({_when(results)}).",
        "",
        *(_check_line(check, here) for check in checks),
    ]
    kind = "success" if passed == len(checks) else "failure"
    return _admonition(kind, "Your progress", "\n".join(lines))


def all_progress(results: Results, here: str) -> str:
    """The progress page: every check of the last run, step by step."""
    if results.problem:
        return _admonition(
            "warning",
            "Your progress could not be read",
            f"{_text(results.problem)}. Run `pytest checks` again.",
        )
    if not results.found:
        return _admonition(
            "info",
            "No results yet",
            "Run `pytest checks` from the top of the repository, then reload "
            "this page. The checks write what they found to "
            "`.sentinel/results.json`, and this page reads it.",
        )
    passed = sum(check.outcome == "passed" for check in results.checks)
    total = len(results.checks)
    percent = round(100 * passed / total) if total else 0
    out = [
        f"**{_count(passed, total)} passed** in the last run on "
        f"`{_text(results.target)}` ({_when(results)}).",
        "",
        f'<div class="sentinel-bar" role="progressbar" aria-valuenow="{percent}" '
        f'aria-valuemin="0" aria-valuemax="100"><span style="width: {percent}%">'
        "</span></div>",
        "",
    ]
    for step in sorted({check.step for check in results.checks}):
        checks = [check for check in results.checks if check.step == step]
        done = sum(check.outcome == "passed" for check in checks)
        page = STEP_PAGES.get(step)
        name = f"Step {step}"
        if page:
            name = f"[{name}]({_relative(page, here)})"
        out += [f"### {name}: {done} of {len(checks)}", ""]
        out += [_check_line(check, here) for check in checks]
        out.append("")
    return "\n".join(out)


def _check_line(check: Check, here: str) -> str:
    line = f"- {_icon(check.outcome)} {_text(check.title)}"
    if check.outcome != "passed":
        if check.hint:
            line += f": {_text(check.hint)}"
        if check.lesson:
            line += f" ([read more]({_relative(check.lesson, here)}))"
    return line


def mark_headings(markdown: str, results: Results, here: str) -> str:
    """Put each check's outcome under the heading its lesson link points at."""
    by_anchor: dict[str, list[Check]] = {}
    step_page = here in STEP_PAGES.values()
    for check in results.checks:
        page, _, anchor = check.lesson.partition("#")
        # Elsewhere (troubleshooting, set-up) only what needs attention is marked.
        if page == here and anchor and (step_page or check.outcome != "passed"):
            by_anchor.setdefault(anchor, []).append(check)
    for anchor, checks in by_anchor.items():
        heading = re.compile(rf"^#{{1,6}} .*\{{#{re.escape(anchor)}\}}[ \t]*$", re.M)
        marks = "".join(
            f"\n\n{_icon(check.outcome)} {_text(check.title)}: {check.outcome} in the "
            f"last run\n{{: .sentinel-mark .sentinel-{check.outcome} }}"
            for check in checks
        )
        markdown = heading.sub(lambda m, marks=marks: m[0] + marks, markdown, count=1)
    return markdown


def diagrams_as_text(html_text: str) -> str:
    """Show each diagram's source, since the script that draws it is missing."""
    note = (
        '<p class="sentinel-diagram-note">This diagram is shown as text because '
        "its drawing library is not installed. Install Node.js, then run "
        "<code>python3 scripts/bootstrap.py</code> again.</p>"
    )
    return html_text.replace('<pre class="mermaid">', note + '<pre class="diagram">')


def _icon(outcome: str) -> str:
    icon = ICONS.get(outcome, "material-help-circle")
    return f':{icon}:{{ .sentinel-{outcome} title="{outcome}" }}'


def _count(passed: int, total: int) -> str:
    return f"{passed} of {total} check{'' if total == 1 else 's'}"


def _admonition(kind: str, title: str, body: str) -> str:
    indented = "\n".join(f"    {line}" if line else "" for line in body.splitlines())
    return f'!!! {kind} "{title}"\n\n{indented}\n'


def _relative(lesson: str, here: str) -> str:
    """A link from the page `here` to `lesson`, both relative to docs/."""
    page, hash_, anchor = lesson.partition("#")
    link = posixpath.relpath(page, posixpath.dirname(here) or ".")
    return link + hash_ + anchor


def _text(value: str) -> str:
    """Plain text from the results file, safe to put into Markdown."""
    flat = " ".join(value.split())
    return html.escape(flat, quote=False).replace("|", "\\|")


def _when(results: Results) -> str:
    try:
        finished = datetime.fromisoformat(results.finished)
    except ValueError:
        return _text(results.finished)
    return finished.astimezone().strftime("%Y-%m-%d %H:%M")
