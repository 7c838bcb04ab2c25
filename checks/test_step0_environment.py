"""Step 0, the environment doctor: is this machine ready for the course?

These run first, so a learner whose Docker is stopped hears that, with the fix
for their system, before any later step fails for that reason.
"""

from collections.abc import Callable
from pathlib import Path

import pytest
from environment import (
    Finding,
    compose_finding,
    docker_status,
    files_with_crlf,
    is_script,
    port_finding,
    python_finding,
)
from grading import learner_fail, lesson_url

pytestmark = [pytest.mark.step(0), pytest.mark.timeout(60)]


def shown(path: Path) -> str:
    """A path as the learner would type it from where they ran the checks."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def fail_finding(finding: Finding, expected: str) -> None:
    if not finding.ok:
        learner_fail(
            finding.problem,
            got=finding.detail or None,
            expected=expected,
            hint=finding.fix,
            lesson=finding.lesson,
        )


def test_python_is_new_enough() -> None:
    """Python is 3.11 or newer."""
    fail_finding(python_finding(), "Python 3.11 or newer")


def test_docker_engine_answers() -> None:
    """Docker is running and this user may use it."""
    fail_finding(docker_status(), "`docker version` shows a Server section")


def test_compose_v2_is_installed() -> None:
    """Compose v2 answers as `docker compose`."""
    fail_finding(compose_finding(), "`docker compose version` answers 2.x or newer")


def test_port_8000_is_free_or_held_by_this_stack(
    repo_root: Path, target_root: Path | None
) -> None:
    """Port 8000 is free, or held by this course's own stack."""
    roots = [repo_root] + ([target_root] if target_root is not None else [])
    fail_finding(
        port_finding(roots),
        "port 8000 free for the stack (or used by its own log-collector)",
    )


def test_scripts_have_unix_line_endings(
    collector_dir: Path, note: Callable[[str], None]
) -> None:
    """Your scripts have Unix (LF) line endings."""
    found = files_with_crlf(collector_dir)
    scripts = [path for path in found if is_script(path)]
    others = [path for path in found if path not in scripts]
    if others:
        # Python, a Dockerfile and .dockerignore read CRLF as LF: worth knowing
        # before a script is added, not worth failing for.
        note(
            f"note: Windows (CRLF) line endings in {', '.join(map(shown, others))}: "
            "harmless in these, but they break a script. `git config --global "
            "core.autocrlf input` keeps new files LF: "
            + lesson_url("setup.md#line-endings")
        )
    if scripts:
        names = ", ".join(shown(path) for path in scripts)
        first = shown(scripts[0])
        learner_fail(
            "Some scripts have Windows line endings (CRLF); inside a Linux "
            "container a script whose lines end in CR breaks (`/bin/sh^M: bad "
            "interpreter`, or a command that fails for no visible reason).",
            got=f"CRLF in {names}",
            expected="LF line endings",
            hint=(
                f"Convert them, e.g. `sed -i 's/\\r$//' {first}` (or `dos2unix`), "
                "set your editor to LF, and run `git config --global core.autocrlf "
                "input` so Git stops adding CRs."
            ),
            lesson="setup.md#line-endings",
        )
