"""What this machine offers the course: Docker, Compose v2, port 8000, line endings.

The step 0 checks report these findings; later steps use `docker_status` to skip
with the right fix when Docker is missing. Each finding carries its fix for the
learner's system (Linux, macOS, Windows with WSL2) and the lesson section that
explains it. The functions that read tool output are kept free of side effects
so the project's tests can feed them the exact text real tools print.
"""

import contextlib
import functools
import os
import platform
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from processes import run

DOCKER_TIMEOUT = 20.0
MIN_PYTHON = (3, 11)
APP_PORT = 8000
# Architectures the course images are published for.
USUAL_MACHINES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "arm64": "arm64",
    "aarch64": "arm64",
}


@dataclass(frozen=True)
class Finding:
    """Whether something the course needs is in place, and if not, the fix."""

    ok: bool
    problem: str = ""
    fix: str = ""
    lesson: str = ""
    detail: str = ""  # what the tool printed, for the learner to see


def system() -> str:
    """'linux', 'wsl', 'macos' or 'windows': which fix instructions apply."""
    if sys.platform == "darwin":
        return "macos"
    if sys.platform.startswith("win"):
        return "windows"
    with contextlib.suppress(OSError):
        if "microsoft" in Path("/proc/version").read_text().lower():
            return "wsl"
    return "linux"


def python_finding(version: tuple[int, ...] = sys.version_info[:3]) -> Finding:
    shown = ".".join(map(str, version))
    if tuple(version[:2]) >= MIN_PYTHON:
        return Finding(ok=True, detail=f"Python {shown}")
    wanted = ".".join(map(str, MIN_PYTHON))
    return Finding(
        ok=False,
        problem=f"The checks run on Python {shown}; the course needs {wanted}+.",
        fix=f"Install Python {wanted}+ and run `python3 scripts/bootstrap.py` again.",
        lesson="setup.md#python",
    )


def _docker_not_running_fix() -> str:
    if system() in {"macos", "windows", "wsl"}:
        return (
            "Start Docker Desktop and wait until it says it is running "
            "(on WSL2, also turn on WSL integration for your distribution)."
        )
    return "Start it: `sudo systemctl start docker` (and `enable` it to start at boot)."


def classify_docker_error(output: str) -> Finding:
    """Turn what a failed `docker version` printed into the problem and its fix."""
    text = output.lower()
    if "permission denied" in text:
        return Finding(
            ok=False,
            problem="Docker is running, but your user may not use its socket.",
            fix=(
                "Add yourself to the docker group: `sudo usermod -aG docker $USER`, "
                "then log out and back in (or run `newgrp docker`)."
            ),
            lesson="troubleshooting.md#docker-socket",
            detail=output.strip(),
        )
    if (
        "cannot connect to the docker daemon" in text
        or "is the docker daemon running" in text
        or "error during connect" in text
        or "no such file or directory" in text
    ):
        return Finding(
            ok=False,
            problem="Docker is installed but not running (its daemon does not answer).",
            fix=_docker_not_running_fix(),
            lesson="troubleshooting.md#docker-not-running",
            detail=output.strip(),
        )
    return Finding(
        ok=False,
        problem="Docker did not answer `docker version`.",
        fix="Read the message above; `docker info` shows more.",
        lesson="setup.md#docker",
        detail=output.strip(),
    )


@dataclass(frozen=True)
class DockerStatus(Finding):
    server_version: str = ""
    arch: str = ""


@functools.cache
def docker_status() -> DockerStatus:
    """Can this user talk to a Docker engine? Asked once per run."""
    try:
        result = run(
            ["docker", "version", "--format", "{{.Server.Version}} {{.Server.Arch}}"],
            timeout=DOCKER_TIMEOUT,
        )
    except FileNotFoundError:
        return DockerStatus(
            ok=False,
            problem="The `docker` command is not installed (not on your PATH).",
            fix=(
                "Install Docker Desktop (macOS, Windows) or Docker Engine (Linux), "
                "as the setup page shows."
            ),
            lesson="setup.md#docker",
        )
    if result.timed_out:
        return DockerStatus(
            ok=False,
            problem=f"Docker did not answer within {DOCKER_TIMEOUT:.0f} s.",
            fix="Restart Docker (Docker Desktop, or `sudo systemctl restart docker`).",
            lesson="troubleshooting.md#docker-not-running",
        )
    if not result.ok:
        found = classify_docker_error(result.output)
        return DockerStatus(**found.__dict__)
    version, _, arch = result.stdout.strip().partition(" ")
    return DockerStatus(ok=True, server_version=version, arch=arch, detail=version)


def parse_compose_version(output: str) -> tuple[int, ...] | None:
    """The version in what `docker compose version` (or `docker-compose`) printed."""
    found = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", output)
    if found is None:
        return None
    return tuple(int(part) for part in found.groups() if part is not None)


def compose_finding() -> Finding:
    """Is Compose v2 there as `docker compose`? If only v1 is, say so plainly."""
    try:
        result = run(
            ["docker", "compose", "version", "--short"], timeout=DOCKER_TIMEOUT
        )
    except FileNotFoundError:
        return Finding(
            ok=False,
            problem="The `docker` command is not installed, so neither is Compose.",
            fix="Install Docker first, as the setup page shows.",
            lesson="setup.md#docker",
        )
    version = parse_compose_version(result.stdout) if result.ok else None
    if version is not None and version[0] >= 2:
        return Finding(ok=True, detail="Compose " + ".".join(map(str, version)))
    return _compose_missing(result.output)


COMPOSE_INSTALL = (
    "Install the Compose v2 plugin: it comes with Docker Desktop; on Linux, "
    "`sudo apt-get install docker-compose-plugin` (Docker's apt repository)."
)


def _compose_missing(output: str) -> Finding:
    legacy = None
    with contextlib.suppress(FileNotFoundError):
        legacy = run(["docker-compose", "version"], timeout=DOCKER_TIMEOUT)
    if legacy is not None and legacy.ok:
        return compose_without_plugin(legacy.output)
    return Finding(
        ok=False,
        problem="`docker compose version` did not answer: Compose v2 is missing.",
        fix=COMPOSE_INSTALL,
        lesson="setup.md#compose-v2",
        detail=output,
    )


def compose_without_plugin(legacy_output: str) -> Finding:
    """`docker compose` is missing but `docker-compose` answered with this text."""
    old = parse_compose_version(legacy_output)
    if old is not None and old[0] < 2:
        return Finding(
            ok=False,
            problem=(
                "Only the old Compose v1 (`docker-compose`, version "
                + ".".join(map(str, old))
                + ") is installed; the course uses Compose v2, `docker compose`."
            ),
            fix=COMPOSE_INSTALL
            + " Then `docker compose version` answers 2.x or newer.",
            lesson="troubleshooting.md#compose-v1",
            detail=legacy_output.strip(),
        )
    return Finding(
        ok=False,
        problem=(
            "`docker-compose` is installed, but `docker compose` (with a space), "
            "the command the course uses, is not."
        ),
        fix=COMPOSE_INSTALL,
        lesson="setup.md#compose-v2",
        detail=legacy_output.strip(),
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Could a server listen on host:port now?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Linux refuses a bind on a port still in TIME_WAIT without this;
        # a server such as uvicorn sets it too, so the answer matches theirs.
        if os.name != "nt":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's pick, so never a default one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def listening_processes(port: int) -> list[str]:
    """Which local processes listen on `port`, as 'pid command' (Linux only).

    Reads /proc the way `ss -ltnp` does; on other systems, or for another
    user's process, it finds nothing and the message falls back to a command
    the learner can run.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    found = []
    if not inodes:
        return found
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                    found.append(f"{proc.name} {command.decode(errors='replace')}")
                    break
    return found


@dataclass(frozen=True)
class Publisher:
    """A container that publishes a host port."""

    name: str
    project: str
    service: str
    config_files: str


def containers_publishing(port: int) -> list[Publisher]:
    """Running containers that publish `port` on the host, with their Compose labels."""
    template = (
        '{{.Names}}\t{{.Label "com.docker.compose.project"}}\t'
        '{{.Label "com.docker.compose.service"}}\t'
        '{{.Label "com.docker.compose.project.config_files"}}'
    )
    try:
        result = run(
            ["docker", "ps", "--filter", f"publish={port}", "--format", template],
            timeout=DOCKER_TIMEOUT,
        )
    except FileNotFoundError:
        return []
    if not result.ok:
        return []
    publishers = []
    for line in result.stdout.splitlines():
        name, project, service, config_files = (line.split("\t") + ["", "", ""])[:4]
        publishers.append(Publisher(name, project, service, config_files))
    return publishers


def is_this_stack(publisher: Publisher, roots: list[Path]) -> bool:
    """Is this the course's own collector, started by Compose from one of `roots`?"""
    if publisher.service != "log-collector":
        return False
    if publisher.project == "sentinel":
        return True
    for config in publisher.config_files.split(","):
        if config and any(Path(config).is_relative_to(root) for root in roots):
            return True
    return False


def port_finding(roots: list[Path], port: int = APP_PORT) -> Finding:
    """Is port 8000 free for the stack, or already held by the stack itself?"""
    publishers = containers_publishing(port) if docker_status().ok else []
    ours = [p for p in publishers if is_this_stack(p, roots)]
    others = [p for p in publishers if p not in ours]
    if ours and not others:
        return Finding(ok=True, detail=f"port {port} is held by this course's stack")
    if others:
        names = ", ".join(p.name for p in others)
        return Finding(
            ok=False,
            problem=f"Port {port} is taken by another container: {names}.",
            fix=f"Stop it: `docker stop {others[0].name}`.",
            lesson="troubleshooting.md#port-busy",
        )
    if port_is_free(port):
        return Finding(ok=True, detail=f"port {port} is free")
    return program_finding(port)


def program_finding(port: int = APP_PORT) -> Finding:
    """`port` is taken, and not by a container: which program holds it, if known."""
    holders = listening_processes(port)
    if holders:
        pid = holders[0].split()[0]
        return Finding(
            ok=False,
            problem=f"Port {port} is taken by another program: {holders[0]}.",
            fix=f"Stop that program (for example `kill {pid}`), then run again.",
            lesson="troubleshooting.md#port-busy",
        )
    finder = (
        f"`sudo lsof -i :{port}`"
        if system() != "windows"
        else f"`netstat -ano | findstr :{port}`"
    )
    return Finding(
        ok=False,
        problem=f"Port {port} is taken by another program.",
        fix=f"Find it with {finder} and stop it, then run again.",
        lesson="troubleshooting.md#port-busy",
    )


# The learner's text files whose line endings are looked at. Only in a script
# does a CR at a line end break something: the kernel reads a `#!` line's
# interpreter name with the CR on it, and a shell takes each command's last word
# with it. Python, a Dockerfile and .dockerignore read CRLF as LF.
LINE_ENDING_NAMES = ("Dockerfile", ".dockerignore")
LINE_ENDING_SUFFIXES = (".py", ".sh", ".txt", ".toml", ".yaml", ".yml")
SKIPPED_DIRS = {".venv", "venv", ".git", "__pycache__", "node_modules"}


def files_with_crlf(root: Path) -> list[Path]:
    """The learner's files under `root` that have Windows (CRLF) line endings:
    scripts (a `#!` line or .sh), the Dockerfile, Python and config files."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(folder) / name
            listed = name in LINE_ENDING_NAMES or name.endswith(LINE_ENDING_SUFFIXES)
            with contextlib.suppress(OSError):
                if (listed or is_script(path)) and b"\r\n" in path.read_bytes():
                    found.append(path)
    return found


def is_script(path: Path) -> bool:
    """Is this a file a CR at line ends breaks: a shell script or a `#!` script?"""
    if path.suffix == ".sh":
        return True
    with contextlib.suppress(OSError), path.open("rb") as file:
        return file.read(2) == b"#!"
    return False


def machine_note(machine: str = platform.machine()) -> tuple[str, bool]:
    """A line about the CPU for the report, and whether it is a usual one."""
    arch = USUAL_MACHINES.get(machine.lower())
    if arch is not None:
        return f"CPU {machine}: images run as linux/{arch}", True
    return (
        f"CPU {machine}: unusual for this course; images may need building for it, "
        "and some base images may not exist for it",
        False,
    )
