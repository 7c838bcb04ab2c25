"""Set up everything the course needs, in one command: `python3 scripts/bootstrap.py`.

It creates the virtual environment `.venv` at the top of the repository,
installs the pinned tools from requirements-dev.txt into it (checks, lessons,
linters), installs the pre-commit hooks and, where npm is installed, fetches the
lessons' diagram library. Running it again is safe: it only adds what is
missing. It uses nothing but the standard library, so it runs on a fresh Python
on Linux, macOS and Windows (WSL2).
"""

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
from pathlib import Path

MIN_PYTHON = (3, 11)
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
# Mermaid draws the lessons' diagrams. It comes from the npm registry at set-up
# time so the site never fetches it from a CDN; pinned by version and by the
# registry's own SHA-512 of the package (`npm view mermaid@VERSION dist.integrity`).
MERMAID_VERSION = "11.17.2"
MERMAID_INTEGRITY = (
    "sha512-V6K3C8EBdEsPFZXSKMJe6ppQOENxuHARr9GvHX4hh47lAbhM"
    "RD9qf4oEK7LoaRQxULMa80/qt5gHO73aCleBBg=="
)
MERMAID_DIR = ROOT / "docs" / "assets" / "vendor" / "mermaid"


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


def install_mermaid() -> None:
    """Put mermaid.min.js where the lessons load it, unless that version is there."""
    stamp = MERMAID_DIR / "VERSION"
    script = MERMAID_DIR / "mermaid.min.js"
    if script.exists() and stamp.exists() and stamp.read_text() == MERMAID_VERSION:
        return
    without = "The lessons will show their diagrams as text. To draw them,"
    npm = shutil.which("npm")
    if npm is None:
        print(f"\nnpm was not found. {without} install Node.js and run this again.")
        return
    with tempfile.TemporaryDirectory() as tmp:
        # `npm pack` downloads the package's tarball without installing anything.
        command = [npm, "pack", "--silent", f"mermaid@{MERMAID_VERSION}"]
        print("+", " ".join(command), flush=True)
        packed = subprocess.run([*command, "--pack-destination", tmp], check=False)
        if packed.returncode != 0:
            # The lessons still work without it, so this does not stop the set-up.
            print(f"\nnpm could not fetch Mermaid. {without} run this again.")
            return
        tarball = Path(tmp) / f"mermaid-{MERMAID_VERSION}.tgz"
        digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest())
        if f"sha512-{digest.decode()}" != MERMAID_INTEGRITY:
            sys.exit(
                f"\nSet-up stopped: {tarball.name} does not match its pinned hash."
            )
        MERMAID_DIR.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as archive:
            for name in ("dist/mermaid.min.js", "LICENSE"):
                # extractfile, not extract: only these two files, and no path
                # from the archive decides where anything is written.
                member = archive.extractfile(f"package/{name}")
                if member is None:
                    sys.exit(f"\nSet-up stopped: {name} is missing from the package.")
                (MERMAID_DIR / Path(name).name).write_bytes(member.read())
    stamp.write_text(MERMAID_VERSION)
    print(f"Mermaid {MERMAID_VERSION} installed for the lessons' diagrams.")


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
    install_mermaid()

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
