"""Run the grader as a learner does, in its own process, and read what it reports.

The project's tests judge the grader from outside: `python -m pytest checks`
with a target, its exit code, its printed report and its results JSON. Broken
and hostile versions of the solution are made as copies under tmp_path, each a
small textual patch that must apply exactly once, so a change to the solution
that makes a patch miss fails loudly instead of testing nothing.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
STARTER_TREE = ROOT  # holds module-1/
# Every process a grader run starts inherits this variable, which is how a
# test finds any it left behind. redis-server overwrites its environment with
# its process title, so it is found by its working folder instead: the grader
# makes that under TMPDIR, which each run points into its test's tmp_path.
MARKER = "SENTINEL_GRADER_TEST_RUN"


@dataclass
class GraderRun:
    returncode: int
    output: str
    seconds: float
    results: dict[str, Any]
    leftovers: list[str]

    def entries(self) -> list[dict[str, Any]]:
        return self.results.get("checks", [])

    def entry(self, check: str) -> dict[str, Any]:
        found = [entry for entry in self.entries() if entry["check"] == check]
        assert len(found) == 1, f"{check} ran {len(found)} times:\n{self.output}"
        return found[0]

    def outcome(self, check: str) -> str:
        return self.entry(check)["outcome"]

    def outcomes(self, step: int | None = None) -> dict[str, str]:
        return {
            entry["check"]: entry["outcome"]
            for entry in self.entries()
            if step is None or entry["step"] == step
        }

    def assert_failed(self, check: str, lesson: str, *hint_words: str) -> None:
        """`check` failed, pointing at `lesson`, with all `hint_words` in its hint."""
        entry = self.entry(check)
        assert entry["outcome"] == "failed", f"{check}: {entry}\n{self.output}"
        assert entry["lesson"] == lesson, f"{check}: {entry}"
        for word in hint_words:
            assert word in entry["hint"], f"{check}: {word!r} not in {entry['hint']!r}"

    def assert_all(self, outcome: str, step: int | None = None) -> None:
        outcomes = self.outcomes(step)
        assert outcomes, f"no checks ran:\n{self.output}"
        wrong = {name: got for name, got in outcomes.items() if got != outcome}
        assert not wrong, f"expected all {outcome}, got {wrong}:\n{self.output}"


def run_grader(
    target: Path | str,
    *steps: int,
    tmp_path: Path,
    extra: tuple[str, ...] = (),
    env: Mapping[str, str | None] | None = None,
    timeout: float = 240,
    results: Path | None = None,
) -> GraderRun:
    """`python -m pytest checks --target TARGET --step N ...`, and what came of it.

    `env` entries override the environment; a None value removes the variable.
    CI is removed unless given, so a run behaves the same on a laptop and in CI.
    """
    results = results or tmp_path / f"results-{uuid.uuid4().hex[:8]}.json"
    marker = uuid.uuid4().hex
    started = time.monotonic()
    finished = subprocess.run(
        grader_command(target, steps, results, extra),
        cwd=ROOT,
        env=grader_env(env, marker, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.monotonic() - started
    parsed: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        parsed = json.loads(results.read_text())
    leftovers = processes_marked(marker, tmp_path)
    return GraderRun(finished.returncode, finished.stdout, seconds, parsed, leftovers)


def grader_command(
    target: Path | str, steps: tuple[int, ...], results: Path, extra: tuple[str, ...]
) -> list[str]:
    command = [sys.executable, "-m", "pytest", "checks", "--target", str(target)]
    for step in steps:
        command += ["--step", str(step)]
    command += ["-p", "no:cacheprovider", "--results", str(results)]
    return command + list(extra)


def grader_env(
    changes: Mapping[str, str | None] | None, marker: str, tmp_path: Path
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env[MARKER] = marker
    env["TMPDIR"] = str(temp_dir(tmp_path))
    for key, value in (changes or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def temp_dir(tmp_path: Path) -> Path:
    """The TMPDIR of grader runs in one test, where the grader's Redis works."""
    temp = tmp_path / "grader-tmp"
    temp.mkdir(exist_ok=True)
    return temp


def processes_marked(marker: str, tmp_path: Path) -> list[str]:
    """Live processes of a run: its marker in their environment, or their
    working folder under the run's TMPDIR. Linux only, like the checks' CI."""
    found = []
    needle = f"{MARKER}={marker}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            marked = needle in (proc / "environ").read_bytes().split(b"\0")
            inside = Path(os.readlink(proc / "cwd")).is_relative_to(temp_dir(tmp_path))
            if marked or inside:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"{proc.name} {command.decode(errors='replace')}")
    return found


def copy_tree(source: Path, tmp_path: Path, name: str = "tree") -> Path:
    """A copy of `source`/module-1 under tmp_path/name, for patching."""
    root = tmp_path / name
    shutil.copytree(
        source / "module-1",
        root / "module-1",
        ignore=shutil.ignore_patterns("__pycache__", ".venv"),
    )
    return root


def patch(root: Path, file: str, old: str, new: str) -> None:
    """Replace `old` by `new` in module-1/log-collector/FILE; it must occur once."""
    path = root / "module-1" / "log-collector" / file
    text = path.read_text()
    assert text.count(old) == 1, f"patch does not apply to {path}: {old!r}"
    path.write_text(text.replace(old, new))


def variant(
    tmp_path: Path, *patches: tuple[str, str, str], source: Path = SOLUTIONS
) -> Path:
    """A patched copy of the solution (or `source`): patches are (file, old, new)."""
    root = copy_tree(source, tmp_path)
    for file, old, new in patches:
        patch(root, file, old, new)
    return root
