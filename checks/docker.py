"""The docker CLI and Compose v2, as the step 4 and 5 checks call them.

Everything goes through the `docker` command a learner types, not an SDK, so
a check sees what the learner would see. No call here raises on a non-zero
exit or a timeout: it returns what happened, and the check decides what to
tell the learner. Container output that names a known mistake is translated
into its fix by `explain`.
"""

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from processes import Finished, run

# The lesson (step-4-image.md#image-size) states this limit. The solution's
# image is its base plus 39 MB (/opt/venv without pip): about 165 MB on
# python:3.12-slim-bookworm (~125 MB), 229 MB on the CI stand-in for it
# (190 MB). A venv that keeps pip and setuptools adds 12 MB more. The limit
# leaves room for that and an extra package or two, and none for a full
# `python:3.12` base (over 1 GB) or a compiler toolchain in the runtime stage.
MAX_IMAGE_MB = 300
BUILD_SECONDS = 600  # a cold build downloads every wheel; a warm one takes seconds
START_SECONDS = 30  # from `docker run` to an HTTP answer on port 8000
UP_SECONDS = 180  # `compose up --build --wait`, build included when warm
# More than this in the build context means something big is not ignored:
# the collector's own files are a few kilobytes.
MAX_CONTEXT_MB = 10
# The Compose project the checks bring up, apart from the learner's `sentinel`.
PROJECT = "sentinel-checks"
LAST_LOG_LINES = 15


def add_options(parser) -> None:
    """Command-line options of the image and stack checks (called by conftest)."""
    group = parser.getgroup("sentinel")
    group.addoption(
        "--max-image-mb",
        type=int,
        default=MAX_IMAGE_MB,
        metavar="MB",
        help=f"largest image size step 4 accepts, in MB (default {MAX_IMAGE_MB})",
    )


def docker(*args: str, timeout: float = 60) -> Finished:
    """Run one docker command; the caller has checked that Docker answers."""
    return run(["docker", *args], timeout=timeout)


# Images --------------------------------------------------------------------


def image_tag(collector_dir: Path) -> str:
    """A tag of the checks' own for the image of one tree.

    One tag per graded folder: grading a student's copy never replaces the
    image of your own work, and a rebuild of the same folder reuses its cache.
    """
    digest = hashlib.sha1(str(collector_dir.resolve()).encode()).hexdigest()[:10]
    return f"sentinel-checks/log-collector:{digest}"


def build(context: Path, tag: str, timeout: float = BUILD_SECONDS) -> Finished:
    """`docker build` the way the lesson does, output captured."""
    return docker("build", "--tag", tag, str(context), timeout=timeout)


_SIZE = re.compile(r"([\d.]+)\s*([kKMG]?i?B)\b")
_UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}
_UNITS |= {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def context_bytes(build_output: str) -> int | None:
    """How much the build sent to Docker, read from its own output.

    The classic builder prints "Sending build context to Docker daemon 8.4kB";
    BuildKit prints "transferring context: 8.4kB".
    """
    sizes = []
    for line in build_output.splitlines():
        if "build context" in line or "transferring context" in line:
            match = _SIZE.search(line.rsplit("context", 1)[-1])
            if match and match.group(2) in _UNITS:
                sizes.append(int(float(match.group(1)) * _UNITS[match.group(2)]))
    return max(sizes) if sizes else None


def inspect(kind: str, name: str) -> dict | None:
    """`docker <kind> inspect` of one object, or None when there is no such object."""
    result = docker(kind, "inspect", name, timeout=30)
    if not result.ok:
        return None
    found = json.loads(result.stdout or "[]")
    return found[0] if found else None


def largest_layers(tag: str, count: int = 5) -> list[tuple[int, str]]:
    """The image's biggest layers, as (bytes, the instruction that made it)."""
    result = docker(
        "history",
        "--no-trunc",
        "--human=false",
        "--format",
        "{{.Size}}\t{{.CreatedBy}}",
        tag,
        timeout=30,
    )
    layers = []
    for line in result.stdout.splitlines():
        size, _, created_by = line.partition("\t")
        if size.isdigit() and int(size) > 0:
            layers.append((int(size), tidy_created_by(created_by)))
    return sorted(layers, key=lambda layer: layer[0], reverse=True)[:count]


def tidy_created_by(created_by: str) -> str:
    """An image history line as the Dockerfile instruction a learner wrote."""
    text = created_by.strip()
    if not text:
        return "(the base image)"
    text = re.sub(r"^/bin/sh -c #\(nop\)\s*", "", text)
    # The classic builder writes COPY sources as content hashes, glued to a
    # --chown value when there is one.
    text = re.sub(r"\s*(?:file|dir|multi):[0-9a-f]{64} in ", " ... to ", text)
    text = re.sub(r"^/bin/sh -c ", "RUN ", text)
    text = re.sub(r"^\|\d+ ", "RUN ", text)  # RUN with build args
    text = " ".join(text.split())
    return text if len(text) <= 90 else text[:87] + "..."


def mb(size: int | float) -> str:
    return f"{size / 1e6:.1f} MB"


# Containers ----------------------------------------------------------------


def unique_name(purpose: str) -> str:
    """A container name of the checks' own, unique to this run."""
    return f"{PROJECT}-{purpose}-{os.getpid()}-{int(time.time() * 1000) % 100000}"


def remove_container(name: str) -> None:
    docker("rm", "--force", "--volumes", name, timeout=60)


# What the docker CLI prints on every classic build, which is no news to a learner.
_NOISE = re.compile(r"legacy builder is deprecated|buildx component|go/buildx")


def last_lines(text: str, count: int = LAST_LOG_LINES) -> str:
    """The last lines of some output, indented for a failure message."""
    lines = [line for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not _NOISE.search(line)]
    return "\n".join("    " + line for line in lines[-count:]) or "    (no output)"


# Compose -------------------------------------------------------------------


@dataclass
class Compose:
    """`docker compose` for one compose file, under the checks' project name.

    MODULE_DIR points the file's build at the graded tree, as a learner does
    with `MODULE_DIR=solutions/module-1 docker compose up`.
    """

    file: Path
    module_dir: Path
    project: str = PROJECT

    def __call__(self, *args: str, timeout: float = 60) -> Finished:
        return run(
            ["docker", "compose", "-f", str(self.file), "-p", self.project, *args],
            timeout=timeout,
            env={**os.environ, "MODULE_DIR": str(self.module_dir.resolve())},
            cwd=self.file.parent,
        )

    def config(self) -> tuple[Finished, dict | None]:
        result = self("config", "--format", "json", timeout=60)
        if not result.ok:
            return result, None
        try:
            return result, json.loads(result.stdout)
        except ValueError:
            return result, None

    def containers(self) -> list[dict]:
        """The project's containers as `compose ps --format json` lists them."""
        result = self("ps", "--all", "--format", "json", timeout=30)
        text = result.stdout.strip()
        if not result.ok or not text:
            return []
        # Some Compose versions print one array, others one object per line.
        if text.startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def container(self, service: str) -> dict | None:
        for container in self.containers():
            if container.get("Service") == service:
                return container
        return None

    def down(self) -> Finished:
        return self("down", "--volumes", "--remove-orphans", "--timeout", "5")


def wait_for(ready, seconds: float, interval: float = 0.25) -> bool:
    """Poll `ready()` until it is true or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        if ready():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# What a log line means -------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """A known mistake recognised in output: the fix, and where a lesson explains it."""

    hint: str
    lesson: str
    todo: str | None = None


# Order matters: the first pattern that matches explains the output.
_KNOWN: list[tuple[re.Pattern[str], Explanation]] = [
    (
        re.compile(r"permission denied while trying to connect to the docker", re.I),
        Explanation(
            "Your user may not use the Docker socket: add it to the docker group "
            "(`sudo usermod -aG docker $USER`), then log out and in again.",
            "troubleshooting.md#docker-socket",
        ),
    ),
    (
        re.compile(r"Cannot connect to the Docker daemon", re.I),
        Explanation(
            "Docker is not running: start Docker Desktop (or `sudo systemctl start "
            "docker`) and check that `docker info` answers.",
            "troubleshooting.md#docker-not-running",
        ),
    ),
    (
        re.compile(
            r"(curl|wget).{0,40}(not found|executable file not found)"
            r"|exec: \"(curl|wget)\"",
            re.I,
        ),
        Explanation(
            "The healthcheck calls curl or wget, which the slim image does not "
            "have: fetch /health with Python's urllib instead.",
            "troubleshooting.md#curl-missing",
            "3.4",
        ),
    ),
    (
        re.compile(
            r"exec: \"?uvicorn\"?: executable file not found"
            r"|uvicorn: (not found|No such file)"
            r"|No module named uvicorn",
            re.I,
        ),
        Explanation(
            "uvicorn is not found in the runtime stage: copy the packages from the "
            "builder (COPY --from=builder /opt/venv /opt/venv) and put their bin "
            'folder on the PATH (ENV PATH="/opt/venv/bin:$PATH").',
            "troubleshooting.md#uvicorn-not-found",
            "3.2",
        ),
    ),
    (
        re.compile(r"unable to find user|no matching entries in passwd file", re.I),
        Explanation(
            "USER names a user the image does not have: create it in the runtime "
            "stage (useradd --uid 10001 ...) before switching to it, or use the "
            "number.",
            "module-1/step-3-dockerfile.md#todo-3-3",
            "3.3",
        ),
    ),
    (
        re.compile(r"Permission denied|PermissionError|EACCES", re.I),
        Explanation(
            "The app's user cannot read or write a path that root owns: copy your "
            "files with COPY --chown=appuser:appuser, and write only where that "
            "user may.",
            "troubleshooting.md#permission-denied",
            "3.3",
        ),
    ),
    (
        re.compile(r"Uvicorn running on https?://(127\.0\.0\.1|localhost)", re.I),
        Explanation(
            "uvicorn listens on 127.0.0.1 inside the container, which nothing outside "
            'it can reach: start it with "--host", "0.0.0.0".',
            "troubleshooting.md#uvicorn-on-127",
            "3.5",
        ),
    ),
    (
        re.compile(r"Uvicorn running on https?://[^:]+:(?!8000\b)\d+", re.I),
        Explanation(
            "uvicorn listens on a port other than 8000: start it with "
            '"--port", "8000".',
            "module-1/step-3-dockerfile.md#todo-3-5",
            "3.5",
        ),
    ),
    (
        re.compile(
            r"Error loading ASGI app|Could not import module|ModuleNotFoundError"
            r"|ImportError",
            re.I,
        ),
        Explanation(
            "uvicorn cannot import main.py: WORKDIR must be the folder you copy the "
            ".py files into, and .dockerignore must not leave them out.",
            "troubleshooting.md#import-error",
            "3.3",
        ),
    ),
    (
        # uvicorn's own words: the bind it failed is inside the container, where
        # only the learner's code can hold 8000 first. Docker's words for a busy
        # host port ("port is already allocated", "listen tcp4 ...") differ.
        re.compile(r"error while attempting to bind on address \(.{0,60}8000\)", re.I),
        Explanation(
            "Inside the container something already listens on port 8000 when "
            "uvicorn starts: your own code opens it (a server started when main.py "
            "is imported?). Leave serving to the CMD's uvicorn.",
            "module-1/step-3-dockerfile.md#todo-3-5",
        ),
    ),
    (
        re.compile(
            r"(port is already allocated|address already in use).{0,80}8000"
            r"|8000.{0,80}(port is already allocated|address already in use)",
            re.I,
        ),
        Explanation(
            "Host port 8000 is taken by something else: stop it (`docker compose "
            "down` stops a stack from the lessons) and run the checks again.",
            "troubleshooting.md#port-busy",
        ),
    ),
]

# Only where Redis should be there (step 5): in step 4 no Redis runs, on purpose.
REDIS_AT_LOCALHOST = (
    re.compile(r"(connecting to|Redis at) (localhost|127\.0\.0\.1):6379", re.I),
    Explanation(
        "The collector looks for Redis at localhost, which inside a container is "
        "the container itself: set REDIS_HOST=redis-queue for it in compose.",
        "troubleshooting.md#redis-at-localhost",
    ),
)


def explain(*texts: str) -> Explanation | None:
    """The known mistake these outputs show, if any."""
    text = "\n".join(texts)
    for pattern, explanation in _KNOWN:
        if pattern.search(text):
            return explanation
    return None


# Why an image did not build, from what `docker build` printed.
_BUILD_FAILURES: list[tuple[re.Pattern[str], Explanation]] = [
    (
        re.compile(r"file with no instructions|cannot be empty", re.I),
        Explanation(
            "The Dockerfile has no instructions yet: write its stages (step 3), "
            "then check them with `pytest checks --step 3`.",
            "module-1/step-3-dockerfile.md#todo-3-1",
            "3.1",
        ),
    ),
    (
        re.compile(
            r"pull access denied|manifest (for .*)?(unknown|not found)"
            r"|repository does not exist|no such host|failed to resolve source",
            re.I,
        ),
        Explanation(
            "Docker cannot get the base image: check the FROM lines name an existing "
            "tag (python:3.12-slim-bookworm) and that you are online.",
            "module-1/step-3-dockerfile.md#todo-3-1",
            "3.1",
        ),
    ),
    (
        re.compile(r"COPY failed|no source files were specified|not found: not found"),
        Explanation(
            "A COPY names a file that is not in the build context: check its path, "
            "and that .dockerignore does not leave it out.",
            "troubleshooting.md#dockerignore",
            "3.6",
        ),
    ),
    (
        re.compile(r"Could not find a version that satisfies|No matching distribution"),
        Explanation(
            "pip could not install requirements.txt: check you are online, and that "
            "the builder copies requirements.txt before it runs pip.",
            "module-1/step-3-dockerfile.md#todo-3-1",
            "3.1",
        ),
    ),
]


def explain_build(output: str, fallback: bool = True) -> Explanation | None:
    """The known reason a build failed, if its output shows one.

    With `fallback`, a run-time mistake in the output (a RUN that hits
    "Permission denied", say) counts too.
    """
    for pattern, explanation in _BUILD_FAILURES:
        if pattern.search(output):
            return explanation
    return explain(output) if fallback else None
