"""The repository keeps its own rules: the pre-commit hooks pass on every file."""

import re
import subprocess
import sys

from conftest import ROOT


def test_pre_commit_hooks_pass_on_every_file():
    # The hooks' tools come from PyPI (repo: local), so this also proves that
    # .pre-commit-config.yaml installs where hook repositories cannot be cloned.
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files", "--color", "never"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_test_command_the_readme_shows():
    script = (ROOT / ".ci" / "run").read_text()
    # The command is the line that runs pytest on tests/, alone on its line.
    commands = re.findall(r"^\s*(\S*python -m pytest tests)\s*$", script, re.M)

    assert commands == [".venv/bin/python -m pytest tests"]
    assert commands[0] in (ROOT / "README.md").read_text()
