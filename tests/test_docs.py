"""The lessons site: built strictly, linked correctly, offline, and seen in a browser.

The site is built once with `mkdocs build --strict` (link and anchor validation
on) and read as a learner's browser would get it: every link and anchor in the
built HTML resolves, nothing is loaded from another host, and every lesson link
the checks print leads to a section that exists. Debian's chromium, driven by
Playwright, opens the pages, waits for each Mermaid diagram to become an SVG,
searches, and saves screenshots. The progress hook is built against results
files of the checks' schema, and the site without Mermaid is built too.
"""

import ast
import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from html import unescape
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from conftest import ROOT, need

DOCS = ROOT / "docs"
CHECKS = ROOT / "checks"
STARTER = ROOT / "module-1" / "log-collector"
MERMAID = DOCS / "assets" / "vendor" / "mermaid" / "mermaid.min.js"
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
STEP_PAGES = {
    1: "module-1/step-1-api.md",
    2: "module-1/step-2-queue.md",
    3: "module-1/step-3-dockerfile.md",
    4: "module-1/step-4-image.md",
    5: "module-1/step-5-compose.md",
}
# The anchors agreed with the checks (notes/CONTEXT.md); other helpers link to
# them, so a renamed heading must fail here first.
AGREED_ANCHORS = {
    "module-1/step-1-api.md": ["todo-1-1", "check-your-work"],
    "module-1/step-2-queue.md": [f"todo-2-{n}" for n in range(1, 6)]
    + ["check-your-work"],
    "module-1/step-3-dockerfile.md": [f"todo-3-{n}" for n in range(1, 7)]
    + ["check-your-work"],
    "module-1/step-4-image.md": [
        "image-size",
        "image-user",
        "image-runs",
        "check-your-work",
    ],
    "module-1/step-5-compose.md": [
        "compose-services",
        "compose-network",
        "compose-healthcheck",
        "compose-persistence",
        "compose-up",
        "check-your-work",
    ],
    "setup.md": [
        "python",
        "docker",
        "compose-v2",
        "port-8000",
        "environment-check",
        "line-endings",
    ],
    "troubleshooting.md": [
        "redis-at-localhost",
        "uvicorn-on-127",
        "uvicorn-not-found",
        "permission-denied",
        "curl-missing",
        "port-busy",
        "compose-v1",
        "crlf-scripts",
        "redis-bytes",
        "query-parameters",
        "datetime-json",
        "docker-not-running",
        "docker-socket",
        "image-too-large",
        "client-per-request",
        "dockerignore",
        "import-error",
    ],
}
LESSON_LINK = re.compile(r"^[a-z0-9][a-z0-9/_-]*\.md(#[a-z0-9-]+)?$")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def build_site(
    site: Path, results: Path, config: Path = ROOT / "mkdocs.yml"
) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict` into `site`, reading progress from `results`."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "SENTINEL_RESULTS": str(results)}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    command += ["--config-file", str(config), "--site-dir", str(site)]
    built = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert built.returncode == 0, f"mkdocs build failed:\n{built.stderr}"
    return built


def page_html(site: Path, page: str) -> str:
    """The built HTML of a page given by its source path, e.g. "setup.md"."""
    return (site / built_path(page)).read_text(encoding="utf-8")


def built_path(page: str) -> str:
    """Where mkdocs (directory URLs) writes a page: setup.md -> setup/index.html."""
    stem = page.removesuffix(".md")
    if stem == "index" or stem.endswith("/index"):
        return stem + ".html"
    return stem + "/index.html"


def text_of(html: str) -> str:
    """The text of some HTML, tags dropped, entities decoded, whitespace collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lessons as a learner without any results file gets them."""
    base = tmp_path_factory.mktemp("site")
    build_site(base / "site", base / "no-results.json")
    return base / "site"


# --- building ---------------------------------------------------------------


def test_site_builds_strictly_with_link_and_anchor_validation(site: Path):
    from mkdocs.config import load_config

    config = load_config(str(ROOT / "mkdocs.yml"))
    links = config.validation.links

    assert (site / "index.html").exists()
    for name in ("not_found", "anchors", "absolute_links", "unrecognized_links"):
        assert getattr(links, name) == logging.WARNING, f"validation.links.{name}"
    assert config.dev_addr.port == 8001
    assert config.theme["font"] is False


def test_every_lesson_link_in_the_checks_resolves(site: Path):
    links = lesson_links_in_checks()
    need(bool(links), "checks/ has no lesson links yet")

    missing = [
        f"{link} (from {where})"
        for link, where in sorted(links.items())
        if not anchor_exists(site, link)
    ]

    assert not missing, "lesson links in checks/ that lead nowhere:\n" + "\n".join(
        missing
    )


def test_the_agreed_anchors_exist(site: Path):
    missing = [
        f"{page}#{anchor}"
        for page, anchors in AGREED_ANCHORS.items()
        for anchor in anchors
        if not anchor_exists(site, f"{page}#{anchor}")
    ]

    assert not missing


def lesson_links_in_checks() -> dict[str, str]:
    """Every "page.md#anchor" the checks can print, with the file it came from.

    String literals are taken as they are; f-strings are put together from the
    module's own string constants (LESSON = "module-1/step-4-image.md" and
    f"{LESSON}#image-runs"), so links built that way are checked too.
    """
    found: dict[str, str] = {}
    for path in sorted(CHECKS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            value = string_value(node, constants)
            if value is not None and LESSON_LINK.match(value):
                found.setdefault(value, f"{path.name}:{node.lineno}")
    return found


def string_value(node: ast.AST, constants: dict[str, str]) -> str | None:
    """The text of a string literal or of an f-string made of known constants."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if not isinstance(node, ast.JoinedStr):
        return None
    parts = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            parts.append(str(part.value))
        elif isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name):
            if part.value.id not in constants:
                return None
            parts.append(constants[part.value.id])
        else:
            return None
    return "".join(parts)


def anchor_exists(site: Path, link: str) -> bool:
    page, _, anchor = link.partition("#")
    path = site / built_path(page)
    if not path.exists():
        return False
    return not anchor or f'id="{anchor}"' in path.read_text(encoding="utf-8")


# --- the built site, offline ------------------------------------------------


class Links(HTMLParser):
    """The links, resources and element ids of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in {"id", "name"}:
                self.ids.add(value)
            if name in {"href", "src"}:
                self.links.append((tag, name, value))


def test_built_site_links_resolve_offline(site: Path):
    pages = {path: parse(path) for path in site.rglob("*.html")}
    broken, external_loads, outbound = [], [], 0

    for path, page in pages.items():
        base = "http://site/" + path.relative_to(site).as_posix()
        for tag, _, url in page.links:
            split = urlsplit(urljoin(base, url))
            if split.scheme in {"mailto", "data", "javascript"}:
                continue
            if split.netloc != "site":
                # An ordinary link to another site is fine; a page that loads
                # anything from one is not (scripts, styles, fonts, images).
                if tag == "a":
                    outbound += 1
                else:
                    external_loads.append(f"{path}: <{tag}> {url}")
                continue
            target = site / unquote(split.path).lstrip("/")
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{path.relative_to(site)}: {url}")
            elif split.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                if unquote(split.fragment) not in ids:
                    broken.append(f"{path.relative_to(site)}: {url} (no such anchor)")

    assert not broken, "\n".join(broken)
    assert not external_loads, "\n".join(external_loads)
    assert outbound > 0  # the set-up page links to the install guides


def parse(path: Path) -> Links:
    links = Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def test_no_page_asks_a_font_service_or_cdn(site: Path):
    for path in site.rglob("*.html"):
        html = path.read_text(encoding="utf-8")
        assert "fonts.googleapis" not in html, path
        assert "fonts.gstatic" not in html, path
        # The Mermaid that Material would fetch when none is loaded.
        if 'class="mermaid"' in html:
            assert "assets/vendor/mermaid/mermaid.min.js" in html, path


# --- what the pages contain -------------------------------------------------


def markdown_pages() -> dict[str, str]:
    return {
        path.relative_to(DOCS).as_posix(): path.read_text(encoding="utf-8")
        for path in DOCS.rglob("*.md")
    }


def sections(markdown: str) -> dict[str, str]:
    """The text under each heading with a fixed anchor, up to the next heading."""
    found: dict[str, str] = {}
    current = None
    for line in markdown.splitlines():
        heading = re.match(r"^#{1,6} .*\{#([a-z0-9-]+)\}$", line)
        if heading:
            current = heading[1]
            found[current] = ""
        elif line.startswith("#"):
            current = None
        elif current:
            found[current] += line + "\n"
    return found


def starter_todos() -> dict[str, Path]:
    """Every TODO number in the starter, and the file it is in."""
    todos = {}
    for path in sorted(STARTER.iterdir()):
        for match in re.finditer(r"TODO (\d\.\d)", path.read_text(encoding="utf-8")):
            todos[match[1]] = path
    return todos


def test_each_todo_has_a_section_hints_and_a_solution(site: Path):
    todos = starter_todos()
    assert len(todos) >= 12, todos  # 1.1, 2.1-2.5, 3.1-3.6

    for todo, path in todos.items():
        step = int(todo[0])
        anchor = "todo-" + todo.replace(".", "-")
        markdown = (DOCS / STEP_PAGES[step]).read_text(encoding="utf-8")
        section = sections(markdown).get(anchor)
        assert section is not None, f"{STEP_PAGES[step]} has no #{anchor}"
        assert re.search(rf"^### TODO {re.escape(todo)}: ", markdown, re.M)
        assert '!!! example "Do this"' in section, anchor
        hints = re.findall(r'^\?\?\? hint "Hint (\d)', section, re.M)
        assert len(hints) >= 2, f"{anchor}: hints {hints}"
        assert hints == [str(n) for n in range(1, len(hints) + 1)], anchor
        assert section.count('??? success "Solution"') == 1, anchor
        solution = section.split('??? success "Solution"')[1]
        assert "<!-- include solutions/module-1/log-collector/" in solution, anchor
        # The starter's TODO line is on the page, highlighted, from the real file.
        highlighted = highlighted_lines(page_html(site, STEP_PAGES[step]))
        todo_line = next(
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if f"TODO {todo}" in line
        )
        assert text_of(todo_line) in highlighted, (
            f"{anchor}: the line {todo_line.strip()!r} is not shown highlighted"
        )


def highlighted_lines(html: str) -> list[str]:
    """The text of each highlighted code line (pymdownx.highlight's line spans)."""
    lines = re.split(r'<span id="__span-\d+-\d+">', html)
    return [
        text_of(line.split("</code>")[0]) for line in lines if 'class="hll"' in line
    ]


def test_step_pages_have_their_parts():
    for step, page in STEP_PAGES.items():
        markdown = (DOCS / page).read_text(encoding="utf-8")
        assert markdown.startswith(f"# Step {step}: "), page
        for part in ("**Time:**", "**You will:**", "**Key concepts:**", "## Recap"):
            assert part in markdown, f"{page} lacks {part}"
        assert f"<!-- progress: step {step} -->" in markdown, page
        check = sections(markdown)["check-your-work"]
        assert f"```bash\npytest checks --step {step}\n```" in check, page


def test_steps_4_and_5_number_their_actions():
    for step in (4, 5):
        markdown = (DOCS / STEP_PAGES[step]).read_text(encoding="utf-8")
        numbers = re.findall(rf"^### {step}\.(\d) ", markdown, re.M)
        assert numbers == [str(n) for n in range(1, len(numbers) + 1)], numbers
        assert len(numbers) >= 4


def test_code_comes_from_the_real_files():
    # Code in the lessons is included (<!-- include ... -->, or --8<--), so it
    # cannot drift from the files the checks grade; only commands, diagrams
    # and short illustrations are written into the pages.
    pasted = []
    for page, markdown in markdown_pages().items():
        for language in re.findall(r"^[ \t]*```[ \t]*([a-z]+)", markdown, re.M):
            if language not in {"bash", "mermaid", "text"}:
                pasted.append(f"{page}: ```{language}")

    assert not pasted, pasted


def test_prose_is_wrapped_near_80_columns():
    long_lines = []
    for page, markdown in markdown_pages().items():
        fenced = False
        for number, line in enumerate(markdown.splitlines(), 1):
            if line.strip().startswith("```"):
                fenced = not fenced
            # Tables, code, includes and a line that is one long link or code
            # span cannot be wrapped.
            unbreakable = (
                fenced
                or line.lstrip().startswith(("|", "<!--"))
                or re.search(r"\]\([^)]{30,}\)|`[^`]{40,}`", line)
            )
            if len(line) > 80 and not unbreakable:
                long_lines.append(f"{page}:{number}: {len(line)} columns")

    assert not long_lines, "\n".join(long_lines)


ADMONITION_PURPOSES = {
    "!!! example": r'"Do this"',  # the actions of an exercise
    "!!! tip": r'"[^"]+"',
    "!!! warning": r'"[^"]+"',
    "??? hint": r'"Hint \d: [^"]+"',  # collapsible, escalating
    "??? success": r'"Solution"',  # collapsible
}


def test_admonitions_have_quoted_titles_and_one_type_per_purpose():
    wrong = []
    for page, markdown in markdown_pages().items():
        for line in re.findall(r"^[ \t]*(?:!!!|\?\?\?\+?) .*$", markdown, re.M):
            kind, _, title = line.strip().partition(" ")[2].partition(" ")
            marker = line.strip()[:3] + " " + kind
            pattern = ADMONITION_PURPOSES.get(marker)
            if pattern is None or not re.fullmatch(pattern, title):
                wrong.append(f"{page}: {line.strip()}")

    assert not wrong, "\n".join(wrong)


def test_image_limit_in_the_lessons_is_the_checks_limit():
    source = (CHECKS / "docker.py").read_text(encoding="utf-8")
    limit = re.search(r"^MAX_IMAGE_MB = (\d+)", source, re.M)
    need(limit is not None, "checks/docker.py has no MAX_IMAGE_MB yet")

    for page in ("module-1/step-4-image.md", "troubleshooting.md"):
        stated = re.findall(r"(\d+) MB", (DOCS / page).read_text(encoding="utf-8"))
        assert stated == [limit[1]], f"{page} states {stated}, checks use {limit[1]}"


# --- progress from the results file -----------------------------------------


def results_file(path: Path, checks: list[dict[str, object]]) -> Path:
    """A results file in the schema the grader writes (.sentinel/results.json)."""
    document = {
        "module": "module-1",
        "target": "module-1",
        "finished": "2026-12-03T16:19:04+00:00",
        "checks": checks,
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def result(step: int, check: str, outcome: str, lesson: str, hint: str = ""):
    title = check.removeprefix("test_").replace("_", " ").capitalize()
    return {
        "step": step,
        "check": check,
        "title": title,
        "outcome": outcome,
        "hint": hint,
        "lesson": lesson,
    }


STEP_1 = "module-1/step-1-api.md"
STEP_2 = "module-1/step-2-queue.md"
SAMPLE = [
    result(0, "test_port_8000_is_free", "failed", "troubleshooting.md#port-busy",
           "Stop what holds port 8000."),
    result(1, "test_valid_entry_is_accepted", "passed", f"{STEP_1}#todo-1-1"),
    result(1, "test_blank_message_is_refused", "passed", f"{STEP_1}#todo-1-1"),
    result(2, "test_posted_entry_lands_in_logs_queue", "failed", f"{STEP_2}#todo-2-3",
           "LPUSH the entry's JSON, then return it <not a tag>."),
    result(2, "test_redis_down_answers_503", "skipped", f"{STEP_2}#todo-2-4"),
]  # fmt: skip


def test_without_results_the_pages_say_how_to_make_them(site: Path):
    step_2 = text_of(page_html(site, "module-1/step-2-queue.md"))
    progress = text_of(page_html(site, "module-1/progress.md"))

    assert "No results yet. Run pytest checks --step 2" in step_2
    assert "No results yet Run pytest checks from the top" in progress
    assert "sentinel-mark" not in page_html(site, "module-1/step-2-queue.md")


def test_results_show_on_step_pages_and_the_progress_page(tmp_path: Path):
    results = results_file(tmp_path / "results.json", SAMPLE)
    build_site(tmp_path / "site", results)
    site = tmp_path / "site"

    step_1 = page_html(site, "module-1/step-1-api.md")
    step_2 = page_html(site, "module-1/step-2-queue.md")
    progress = page_html(site, "module-1/progress.md")
    trouble = page_html(site, "troubleshooting.md")

    assert "2 of 2 checks passed in the last run on module-1" in text_of(step_1)
    assert "admonition success" in step_1
    assert "0 of 2 checks passed" in text_of(step_2)
    assert "admonition failure" in step_2
    # A failing check's hint, escaped, and a link to its section.
    assert "then return it &lt;not a tag&gt;." in step_2
    assert re.search(r'href="(\./)?#todo-2-3">read more<', step_2)
    # Marks under the headings the checks point at: both outcomes on a step
    # page, only what needs attention elsewhere.
    mark = r'<h3 id="{}".*?</h3>\s*<p class="sentinel-mark sentinel-{}">'
    assert re.search(mark.format("todo-1-1", "passed"), step_1, re.S)
    assert re.search(mark.format("todo-2-3", "failed"), step_2, re.S)
    assert re.search(mark.format("todo-2-4", "skipped"), step_2, re.S)
    assert re.search(mark.format("port-busy", "failed"), trouble, re.S)
    assert "2 of 5 checks passed" in text_of(progress)
    assert 'aria-valuenow="40"' in progress
    for step in (0, 1, 2):
        assert f"Step {step}:" in text_of(progress)
    assert "did not include step 3" in text_of(
        page_html(site, "module-1/step-3-dockerfile.md")
    )


def test_a_broken_results_file_is_reported_not_fatal(tmp_path: Path):
    results = tmp_path / "results.json"
    results.write_text('{"module": "module-1", "checks": [', encoding="utf-8")
    build_site(tmp_path / "site", results)

    step_2 = text_of(page_html(tmp_path / "site", "module-1/step-2-queue.md"))

    assert "Your progress could not be read" in step_2
    assert "Run pytest checks --step 2 again" in step_2


# --- Mermaid, installed or not ----------------------------------------------


def test_mermaid_comes_from_the_set_up_not_from_git():
    need(MERMAID.exists(), f"{MERMAID} is missing: run python3 scripts/bootstrap.py")
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bootstrap
    finally:
        sys.path.remove(str(ROOT / "scripts"))

    stamp = (MERMAID.parent / "VERSION").read_text(encoding="utf-8")

    assert stamp == bootstrap.MERMAID_VERSION
    assert MERMAID.stat().st_size > 1_000_000  # the real bundle, not a stub
    if (ROOT / ".git").exists():
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(MERMAID)], cwd=ROOT, check=False
        )
        assert ignored.returncode == 0, "mermaid.min.js must not be committed"


def test_without_mermaid_diagrams_show_as_text(tmp_path: Path):
    # A copy of what the site is built from, less the installed Mermaid.
    copy = tmp_path / "repo"
    for part in ("docs", "lessons", "module-1", "solutions"):
        shutil.copytree(
            ROOT / part, copy / part, ignore=shutil.ignore_patterns("vendor")
        )
    for part in ("mkdocs.yml", "docker-compose.yaml", "docker-compose.hardened.yaml"):
        shutil.copy(ROOT / part, copy / part)
    build_site(copy / "site", tmp_path / "no-results.json", copy / "mkdocs.yml")

    home = page_html(copy / "site", "index.md")

    assert 'class="mermaid"' not in home
    assert '<pre class="diagram">' in home
    assert "its drawing library is not installed" in home
    assert "mermaid.min.js" not in home


# --- in a real browser ------------------------------------------------------


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # the test reports what matters; access logs are noise


@contextlib.contextmanager
def http_server(site: Path) -> Iterator[str]:
    """A built site over HTTP on a free port of 127.0.0.1."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(QuietHandler, directory=str(site))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    with http_server(site) as url:
        yield url


# Material draws each diagram in a closed shadow root; opened, a test can see
# the SVG inside.
OPEN_SHADOW_ROOTS = """
(() => {
  const attach = Element.prototype.attachShadow;
  Element.prototype.attachShadow = function (init) {
    return attach.call(this, { ...init, mode: "open" });
  };
})();
"""
DIAGRAMS_DRAWN = """
(expected) => {
  const drawn = [...document.querySelectorAll("div.mermaid")].filter((div) => {
    const svg = div.shadowRoot && div.shadowRoot.querySelector("svg");
    if (!svg) return false;
    const box = svg.getBoundingClientRect();
    return box.width > 100 && box.height > 50;
  });
  return drawn.length === expected;
}
"""


@pytest.mark.timeout(240)
def test_pages_render_in_chromium_offline(
    site: Path, served: str, capsys: pytest.CaptureFixture[str]
):
    need(os.path.exists(CHROMIUM), f"{CHROMIUM} is missing (apt-get install chromium)")
    need(MERMAID.exists(), f"{MERMAID} is missing: run python3 scripts/bootstrap.py")
    from playwright.sync_api import sync_playwright

    pages = ["index.md", "setup.md", "module-1/index.md", *STEP_PAGES.values()]
    left_localhost: list[str] = []
    errors: list[str] = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def only_localhost(route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            left_localhost.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=BROWSER_ARGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(OPEN_SHADOW_ROOTS)
        context.route("**/*", only_localhost)
        page = context.new_page()
        page.on(
            "console",
            lambda message: message.type == "error" and errors.append(message.text),
        )
        page.on("pageerror", lambda error: errors.append(str(error)))

        for source in pages:
            page.goto(served + built_path(source).removesuffix("index.html"))
            expected = page_html(site, source).count('<pre class="mermaid">')
            page.wait_for_function(DIAGRAMS_DRAWN, arg=expected, timeout=30_000)
            # Material adds a copy button to each code block once the page runs.
            blocks = (DOCS / source).read_text(encoding="utf-8").count("```bash")
            if blocks:
                copy = page.locator('button[data-md-type="copy"]')
                copy.first.wait_for(state="attached", timeout=10_000)
                assert copy.count() >= blocks, source
            if source == "index.md":
                assert expected == 1
                page.screenshot(path=SCREENSHOTS / "home.png")

        # The step 2 page at TODO 2.3, with its first hint and solution open.
        page.goto(served + "module-1/step-2-queue/#todo-2-3")
        section = page.locator("#todo-2-3 ~ details")
        section.nth(0).locator("summary").click()
        page.locator("#todo-2-3 ~ details.success").first.locator("summary").click()
        page.locator("#todo-2-3").scroll_into_view_if_needed()
        page.screenshot(path=SCREENSHOTS / "step-2-queue.png")

        # The palette toggle cycles system → light → dark.
        toggle = page.locator("label.md-header__button[for^='__palette']:visible")
        schemes = []
        for _ in range(3):
            toggle.click()
            schemes.append(page.evaluate("document.body.dataset.mdColorScheme"))
        assert {"slate", "default"} <= set(schemes), schemes
        while page.evaluate("document.body.dataset.mdColorScheme") != "slate":
            toggle.click()
        page.goto(served + "setup/#docker")
        page.locator(".tabbed-labels label", has_text="macOS").first.click()
        assert page.get_by_text("Install Docker Desktop").first.is_visible()
        page.wait_for_timeout(500)  # the tab's underline slides across
        page.screenshot(path=SCREENSHOTS / "setup-dark.png")

        # Search finds BRPOP on the step 2 page.
        page.goto(served)
        search = page.locator(".md-search__input")
        search.click()
        # The index loads in a web worker; until it is ready, Material shows
        # "Initializing search" and answers nothing.
        page.wait_for_function(
            "() => !document.querySelector('.md-search-result__meta')"
            "  .textContent.includes('Initializing')",
            timeout=15_000,
        )
        search.press_sequentially("BRPOP")
        found = page.locator(".md-search-result__item a").first
        found.wait_for(timeout=15_000)
        hits = page.locator(".md-search-result__item a").evaluate_all(
            "links => links.map(link => link.href)"
        )
        browser.close()

    with capsys.disabled():
        print(f"\nscreenshots of the lessons: {SCREENSHOTS}")
    assert any("/module-1/step-2-queue/" in hit for hit in hits), hits
    assert not left_localhost, left_localhost
    assert not errors, errors
    for name in ("home.png", "step-2-queue.png", "setup-dark.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000, name


@pytest.mark.timeout(120)
def test_progress_renders_in_chromium(tmp_path: Path):
    need(os.path.exists(CHROMIUM), f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    build_site(tmp_path / "site", results_file(tmp_path / "results.json", SAMPLE))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with http_server(tmp_path / "site") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=BROWSER_ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "module-1/progress/")
        bar = page.locator(".sentinel-bar > span").bounding_box()
        track = page.locator(".sentinel-bar").bounding_box()
        page.screenshot(path=SCREENSHOTS / "progress.png")
        page.goto(url + "module-1/step-2-queue/#todo-2-3")
        mark = page.locator("#todo-2-3 + .sentinel-mark")
        mark_shown = mark.is_visible() and "failed" in mark.inner_text()
        page.screenshot(path=SCREENSHOTS / "step-2-queue-progress.png")
        browser.close()

    assert bar is not None
    assert track is not None
    assert bar["width"] == pytest.approx(0.4 * track["width"], abs=2)
    assert mark_shown
