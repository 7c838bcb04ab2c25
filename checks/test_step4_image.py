"""Step 4: the image, built and run with the docker CLI as the lesson does.

The image is built once per run under a tag of the checks' own, then one
container of it runs with port 8000 published on a free loopback port. No
Redis runs beside it: the collector starts without one and answers /health
with 503, which proves what this step is about, that the server inside the
container listens on 0.0.0.0:8000. Step 5 runs it with Redis.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import pytest
from dockerfile import build_context, parse
from grading import learner_fail
from processes import Finished

pytestmark = [
    pytest.mark.step(4),
    # A cold build downloads every wheel; whichever check runs first pays for it.
    pytest.mark.timeout(docker.BUILD_SECONDS + docker.START_SECONDS + 60),
]

LESSON = "module-1/step-4-image.md"
# Seconds to keep asking after uvicorn logs that it runs: the port is
# published by then, so silence after this means it listens elsewhere.
SERVING_GRACE = 3


@dataclass
class Build:
    """The checks' build of the learner's image."""

    context: Path
    tag: str
    result: Finished

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def command(self) -> str:
        return f"docker build --tag {self.tag} {self.context}"


@pytest.fixture(scope="module")
def build(collector_dir: Path, docker_ready) -> Build:
    """The learner's image, built once for every check of this step."""
    tag = docker.image_tag(collector_dir)
    return Build(collector_dir, tag, docker.build(collector_dir, tag))


def require_image(build: Build) -> None:
    """Fail a check that needs the image when the image did not build."""
    if build.ok:
        return
    explanation = docker.explain_build(build.result.output)
    learner_fail(
        "The image did not build, so this cannot be checked (the check "
        '"the image builds" shows why).',
        hint=explanation.hint if explanation else "Make `docker build` succeed first.",
        lesson=explanation.lesson if explanation else f"{LESSON}#image-runs",
        todo=explanation.todo if explanation else None,
    )


def test_image_builds(build: Build):
    """The image builds with `docker build`, within the time limit."""
    result = build.result
    if result.ok:
        return
    if result.timed_out:
        learner_fail(
            f"`docker build` did not finish within {docker.BUILD_SECONDS} s.",
            sent=build.command,
            got="still building; its last lines:\n" + docker.last_lines(result.output),
            hint="Look for a RUN step that waits for input or downloads far too "
            "much; a warm rebuild of the collector takes seconds.",
            lesson=f"{LESSON}#image-runs",
        )
    explanation = docker.explain_build(result.output)
    learner_fail(
        f"`docker build` failed (exit {result.returncode}).",
        sent=build.command,
        got="its last lines:\n" + docker.last_lines(result.output),
        hint=explanation.hint
        if explanation
        else "Read the step that failed above; fix the Dockerfile and build again.",
        lesson=explanation.lesson if explanation else f"{LESSON}#image-runs",
        todo=explanation.todo if explanation else None,
    )


def test_build_context_leaves_big_folders_out(build: Build):
    """`docker build` sends Docker only a small build context, not a .venv or .git."""
    require_image(build)
    sent = docker.context_bytes(build.result.output)
    total, per_top = build_context(build.context)
    if sent is None:
        # A builder whose output this does not know: count it as Docker would.
        sent = total
    if sent <= docker.MAX_CONTEXT_MB * 1e6:
        return
    biggest = sorted(per_top.items(), key=lambda item: item[1], reverse=True)[:5]
    learner_fail(
        f"`docker build` sent {docker.mb(sent)} of build context to Docker; the "
        f"collector's own files are a few kB.",
        sent=build.command,
        got="the biggest entries sent:\n"
        + "\n".join(f"    {docker.mb(size):>10}  {name}" for name, size in biggest),
        expected=f"at most {docker.MAX_CONTEXT_MB} MB",
        hint="List the big folders (.venv/, .git/, caches) in .dockerignore: every "
        "build sends them all, and a `COPY . .` would put them in the image.",
        lesson="troubleshooting.md#dockerignore",
        todo="3.6",
    )


def test_image_is_small_enough(build: Build, request: pytest.FixtureRequest):
    """The image is no bigger than the lesson's limit."""
    require_image(build)
    limit_mb = request.config.getoption("--max-image-mb")
    image = docker.inspect("image", build.tag) or {}
    size = int(image.get("Size", 0))
    if size <= limit_mb * 1e6:
        return
    base = ""
    try:
        base_name = parse(build.context / "Dockerfile").final.root_image()
        base_image = docker.inspect("image", base_name)
        if base_image:
            base = f" (its base {base_name} is {docker.mb(base_image['Size'])})"
    except (OSError, ValueError):
        pass  # the size alone still says what is wrong
    layers = docker.largest_layers(build.tag)
    learner_fail(
        f"The image is {docker.mb(size)}{base}; the limit is {limit_mb} MB.",
        sent=f"docker image inspect {build.tag}",
        got="its largest layers (docker history):\n"
        + "\n".join(f"    {docker.mb(n):>10}  {made_by}" for n, made_by in layers),
        expected=f"at most {limit_mb} MB",
        hint="Start the runtime stage from a slim tag, install in the builder "
        "stage only, and copy across just the installed packages.",
        lesson="troubleshooting.md#image-too-large",
        todo="3.2",
    )


@dataclass
class Started:
    """The one container the step 4 checks run, and what it did."""

    name: str
    run: Finished | None = None
    url: str | None = None
    status: int | None = None  # the HTTP status /health answered, if it did
    body: str = ""
    last_error: str = ""  # why the last request failed, when none succeeded
    state: dict = field(default_factory=dict)
    logs: str = ""
    serving_since: float | None = None  # when uvicorn's log said it was up

    def report(self) -> str:
        """The container's state and last log lines, for a failure message."""
        status = self.state.get("Status", "not created")
        if self.state.get("Status") == "exited":
            status += f" with code {self.state.get('ExitCode')}"
        error = self.state.get("Error") or ""
        lines = [f"container {status}" + (f": {error}" if error else "")]
        if self.run is not None and not self.run.ok:
            lines.append("docker run said: " + self.run.output.strip())
        lines.append("its last log lines:\n" + docker.last_lines(self.logs))
        return "\n  ".join(lines)


@pytest.fixture(scope="module")
def container(build: Build) -> Iterator[Started]:
    """Run the image once, publish 8000 on a free loopback port, wait for /health."""
    started = Started(docker.unique_name("step4"))
    if not build.ok:
        yield started
        return
    try:
        # Port 0 on the host side: Docker picks a free port, so a stack on 8000
        # and another grader never collide with this container.
        started.run = docker.docker(
            "run",
            "--detach",
            "--name",
            started.name,
            "--label",
            "org.sentinel-workshop.checks=step4",
            "--publish",
            "127.0.0.1::8000",
            build.tag,
            timeout=60,
        )
        if started.run.ok:
            port = docker.docker("port", started.name, "8000/tcp", timeout=30)
            address = port.stdout.strip().splitlines()[0] if port.ok else ""
            if address:
                started.url = f"http://{address}/health"
                docker.wait_for(lambda: answered(started), docker.START_SECONDS)
        started.state = (docker.inspect("container", started.name) or {}).get(
            "State", {}
        )
        started.logs = docker.docker("logs", started.name, timeout=30).output
        yield started
    finally:
        docker.remove_container(started.name)


def answered(started: Started) -> bool:
    """One try at /health; True once it answers, or once waiting is pointless."""
    try:
        response = httpx.get(started.url, timeout=2)
    except httpx.HTTPError as exc:
        started.last_error = f"{type(exc).__name__}: {exc}"
        state = (docker.inspect("container", started.name) or {}).get("State", {})
        if not state.get("Running", False):
            return True
        # uvicorn says it is serving, yet nothing answers from outside: on the
        # wrong address or port, and waiting longer changes nothing.
        if started.serving_since is None:
            logs = docker.docker("logs", started.name, timeout=30).output
            if "Uvicorn running on" in logs:
                started.serving_since = time.monotonic()
        return (
            started.serving_since is not None
            and time.monotonic() - started.serving_since > SERVING_GRACE
        )
    started.status = response.status_code
    started.body = response.text[:300]
    return True


def test_image_runs_as_a_non_root_user(build: Build, container: Started):
    """The image names a USER, and a process in the container has a UID other than 0."""
    require_image(build)
    image = docker.inspect("image", build.tag) or {}
    user = (image.get("Config") or {}).get("User") or ""
    if user.split(":", 1)[0] in {"", "root", "0"}:
        learner_fail(
            f"The image's user is {user or 'not set'}, so its processes run as root.",
            sent=f"docker image inspect --format '{{{{.Config.User}}}}' {build.tag}",
            got=repr(user),
            expected="a user other than root, such as 10001:10001",
            hint="End the runtime stage with USER 10001:10001 (the appuser of "
            "TODO 3.3).",
            lesson=f"{LESSON}#image-user",
            todo="3.5",
        )
    # Ask a process inside: a USER that names an unknown user, say, only shows
    # when a container starts.
    if container.state.get("Running"):
        sent = f"docker exec {container.name} id -u"
        uid = docker.docker("exec", container.name, "id", "-u", timeout=30)
    else:
        sent = f"docker run --rm --entrypoint id {build.tag} -u"
        uid = docker.docker("run", "--rm", "--entrypoint", "id", build.tag, "-u")
    if uid.ok and uid.stdout.strip().isdigit() and int(uid.stdout) != 0:
        return
    explanation = docker.explain(uid.output)
    learner_fail(
        "A process in the container does not run as a user other than root.",
        sent=sent,
        got=uid.output.strip() or f"exit {uid.returncode}",
        expected="a number other than 0",
        hint=explanation.hint
        if explanation
        else "Create the user in the runtime stage and switch to it with USER.",
        lesson=explanation.lesson if explanation else f"{LESSON}#image-user",
        todo=explanation.todo if explanation else "3.3",
    )


def test_container_answers_on_port_8000(build: Build, container: Started):
    """A container of the image answers GET /health on port 8000.

    With no Redis beside it, 503 is the right answer: it proves the server
    listens on 0.0.0.0:8000, which is what this step checks.
    """
    require_image(build)
    if container.status in {200, 503}:
        return
    sent = f"docker run --publish 127.0.0.1::8000 {build.tag}, then GET /health"
    if container.status is not None:
        learner_fail(
            f"The container answers /health with {container.status}.",
            sent=sent,
            got=f"{container.status} {container.body}",
            expected="200, or 503 while no Redis runs beside it",
            hint="Finish step 2 (TODO 2.5) first: `pytest checks --step 2` checks "
            "/health without Docker.",
            lesson="module-1/step-2-queue.md#todo-2-5",
            todo="2.5",
        )
    error = container.state.get("Error") or ""
    run_output = container.run.output if container.run else ""
    explanation = docker.explain(error, run_output, container.logs)
    running = container.state.get("Running")
    if running and explanation is None:
        # Running, yet silent on 8000: the usual reason, said plainly.
        explanation = docker.Explanation(
            "The container runs, but nothing answers on port 8000: start uvicorn "
            'with "--host", "0.0.0.0", "--port", "8000" in the CMD.',
            "troubleshooting.md#uvicorn-on-127",
            "3.5",
        )
    if not running:
        what = "stopped before it answered"
    elif container.serving_since is not None:
        what = (
            "runs and uvicorn says it is serving, but nothing answers on port 8000 "
            f"({container.last_error})"
        )
    else:
        what = (
            f"did not answer within {docker.START_SECONDS} s ({container.last_error})"
        )
    learner_fail(
        f"The container {what}.",
        sent=sent,
        got=container.report(),
        expected="an HTTP answer from uvicorn on 0.0.0.0:8000",
        hint=explanation.hint
        if explanation
        else "Run the image yourself (`docker run --rm -p 8000:8000 <image>`) and "
        "read what it prints.",
        lesson=explanation.lesson if explanation else f"{LESSON}#image-runs",
        todo=explanation.todo if explanation else None,
    )
