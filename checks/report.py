"""The end-of-run report: a table per step, the first thing to fix, the results file.

conftest records one `CheckResult` per check as the run goes; at the end
`write_summary` prints the table and `write_results` saves the same facts as
JSON for the lessons site's progress page and for instructors.

The results file keeps earlier runs' entries for checks this run did not
select (a learner who runs `--step 2` keeps their step 1 results), as long as
the target is the same tree.
"""

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grading import STEPS, lesson_url

OUTCOMES = ("passed", "failed", "skipped")
# A check whose call phase never reported: the run was stopped while it ran.
UNFINISHED = "unfinished"
INTERRUPTED = "Interrupted before it finished: run the checks again to grade it."


@dataclass
class CheckResult:
    step: int
    check: str
    title: str
    outcome: str = UNFINISHED
    hint: str = ""
    lesson: str = ""

    def record(self, outcome: str, hint: str, lesson: str) -> None:
        """Fold one phase (setup, call, teardown) in: a failure outranks a skip,
        a skip a pass; conftest records a pass only for the call phase."""
        rank = {UNFINISHED: 0, "passed": 1, "skipped": 2, "failed": 3}
        if rank[outcome] > rank[self.outcome]:
            self.outcome = outcome
            self.hint = hint
            self.lesson = lesson

    def finish(self) -> None:
        """At the end of the run: a check that never finished did not pass."""
        if self.outcome == UNFINISHED:
            self.record("failed", INTERRUPTED, self.lesson)


def title_of(name: str, doc: str | None) -> str:
    """A check's plain sentence: its docstring's first line, or its name spelt out."""
    if doc and doc.strip():
        return doc.strip().splitlines()[0].strip()
    words = name.removeprefix("test_").replace("_", " ")
    return words[:1].upper() + words[1:] + "."


def count_by_step(results: list[CheckResult]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {}
    for result in results:
        row = counts.setdefault(result.step, dict.fromkeys(OUTCOMES, 0))
        row[result.outcome] += 1
    return dict(sorted(counts.items()))


def write_summary(
    terminal: Any, results: list[CheckResult], module: str, notes: list[str]
) -> None:
    """Print the table, the total, and the hint of the first failing check."""
    if not results:
        return
    terminal.write_sep("=", f"Sentinel checks: {module}", bold=True)
    terminal.write_line(f" {'step':<5}{'':<20}{'passed':>7}{'failed':>8}{'skipped':>9}")
    for step, row in count_by_step(results).items():
        title = STEPS.get(step, (f"step {step}", ""))[0]
        terminal.write(f" {step:<5}{title:<20}")
        terminal.write(f"{row['passed']:>7}", green=row["passed"] > 0)
        terminal.write(f"{row['failed']:>8}", red=row["failed"] > 0, bold=True)
        terminal.write(f"{row['skipped']:>9}", yellow=row["skipped"] > 0)
        terminal.line("")
    passed = sum(result.outcome == "passed" for result in results)
    done = passed == len(results)
    label = module.replace("-", " ").capitalize()
    steps_run = sorted({result.step for result in results})
    # A run of some steps only must not read as the whole module done.
    scope = (
        ""
        if set(steps_run) >= set(STEPS)
        else f" (step {', '.join(map(str, steps_run))} only; `pytest checks` runs all)"
    )
    terminal.write_line(
        f"{label}: {passed} of {len(results)} checks passed{scope}",
        green=done,
        red=not done,
        bold=True,
    )
    for note in notes:
        terminal.write_line(note, yellow=True)
    failed = next((r for r in results if r.outcome == "failed"), None)
    skipped = [r for r in results if r.outcome == "skipped"]
    if failed is not None:
        terminal.write_line(f"First to fix (step {failed.step}): {failed.title}")
        if failed.hint:
            terminal.write_line(f"  hint:   {failed.hint}")
        if failed.lesson:
            terminal.write_line(f"  lesson: {lesson_url(failed.lesson)}")
    if skipped:
        first = skipped[0]
        terminal.write_line(
            f"{len(skipped)} check(s) skipped, so not passed: {first.title}",
            yellow=True,
        )
        if first.hint:
            terminal.write_line(f"  fix:    {first.hint}", yellow=True)


def write_results(
    path: Path, results: list[CheckResult], module: str, target: str
) -> None:
    """Save the results as JSON, keeping other checks' entries from earlier runs."""
    entries = [asdict(result) for result in results]
    ran = {(entry["step"], entry["check"]) for entry in entries}
    kept = [
        entry
        for entry in earlier_entries(path, target)
        if (entry["step"], entry["check"]) not in ran
    ]
    entries = kept + entries
    entries.sort(key=lambda entry: entry["step"])
    document = {
        "module": module,
        "target": target,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "checks": entries,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    # A reader (the lessons site) never sees a half-written file.
    partial.replace(path)


def earlier_entries(path: Path, target: str) -> list[dict[str, Any]]:
    """The checks an earlier run of `target` saved at `path`, if it is sound.

    The file may be hand-edited, half-copied or from an older grader; anything
    not in the agreed shape counts as no file, and this run replaces it.
    """
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(earlier, dict) or earlier.get("target") != target:
        return []
    checks = earlier.get("checks")
    if not isinstance(checks, list) or not all(map(_sound_entry, checks)):
        return []
    return checks


def _sound_entry(entry: object) -> bool:
    texts = ("check", "title", "outcome", "hint", "lesson")
    return (
        isinstance(entry, dict)
        and set(entry) == {"step", *texts}
        # Not bool, which is an int too; a step the grader knows.
        and type(entry["step"]) is int
        and entry["step"] in STEPS
        and all(isinstance(entry[name], str) for name in texts)
        and entry["outcome"] in OUTCOMES
    )
