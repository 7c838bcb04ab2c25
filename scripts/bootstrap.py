"""Set up everything the course needs, in one command: `python3 scripts/bootstrap.py`.

It creates the virtual environment `.venv` at the top of the repository,
installs the pinned tools from requirements-dev.txt into it (checks, lessons,
linters) and installs the pre-commit hooks. Running it again is safe: it only
adds what is missing. It uses nothing but the standard library, so it runs on
a fresh Python on Linux, macOS and Windows (WSL2).
"""

import os
import subprocess
import sys
import venv
from pathlib import Path

MIN_PYTHON = (3, 11)
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def venv_python() -> Path:
    """Where the environment's interpreter lives on this operating system."""
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def run(*args: str | Path) -> None:
    """Run one step, showing it; stop the whole set-up if it fails."""
    print("+", " ".join(str(arg) for arg in args), flush=True)
    result = subprocess.run([str(arg) for arg in args], cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(f"\nSet-up stopped: the step above failed (exit {result.returncode}).")


def main() -> None:
    if sys.version_info < MIN_PYTHON:
        sys.exit(
            f"Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed; this is "
            f"{sys.version.split()[0]}. Install a newer Python and run this again."
        )
    if not venv_python().exists():
        print(f"Creating the virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = venv_python()
    run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(python, "-m", "pip", "install", "--quiet", "-r", "requirements-dev.txt")
    if (ROOT / ".git").exists():
        run(python, "-m", "pre_commit", "install")

    activate = (
        r".venv\Scripts\activate" if os.name == "nt" else "source .venv/bin/activate"
    )
    print(
        "\nSet-up done. Next:\n"
        f"  {activate}\n"
        "  pytest checks --step 0    # is Docker ready?\n"
    )


if __name__ == "__main__":
    main()
