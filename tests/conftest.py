"""Fixtures for the project's own tests: real Redis servers, real collectors, Docker.

Nothing here is mocked. A test that needs a tool this machine lacks is skipped
on a laptop, but fails under CI (CI=true), where a skipped check would hide a
broken install step.
"""

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

# pyproject.toml keeps these plugins out of the grader's start-up; the
# project's own fuzzing tests (test_bad_input.py) need them back.
pytest_plugins = ["_hypothesis_pytestplugin", "schemathesis.pytest.plugin"]

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "module-1" / "log-collector"
STARTER = ROOT / "module-1" / "log-collector"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(available: bool, what: str) -> None:
    """Skip when a tool is missing, except in CI, where that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this, and does not: {what}", pytrace=False)
    pytest.skip(what)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(ready: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll `ready` until it is true; fail with `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    pytest.fail(f"Timed out after {seconds} s waiting for {what}", pytrace=False)


@dataclass
class RedisServer:
    """A redis-server process of our own on a free port, which tests may stop."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Append-only, like the Compose stack, so a restart keeps what was queued.
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.data_dir), "--appendonly", "yes", "--save", ""]
        # DEBUG SLEEP, from this machine only: how a test makes Redis slow.
        args += ["--enable-debug-command", "local"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_until(self._answers, 10, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty Redis on a non-default port."""
    need(shutil.which("redis-server") is not None, "redis-server is not on PATH")
    server = RedisServer(tmp_path / "redis")
    server.data_dir.mkdir()
    server.start()
    yield server
    server.stop()


@dataclass
class Collector:
    """A collector served by a real uvicorn process, and its output so far."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_collector(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    """Start the collector in a folder, as the image runs it, pointed at Redis."""
    started: list[Collector] = []

    def start(app_dir: Path, redis_port: int, **env: str) -> Collector:
        port = free_port()
        log_path = tmp_path / f"uvicorn-{port}.log"
        command = [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=app_dir,
                env={**os.environ, "REDIS_PORT": str(redis_port), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        collector = Collector(f"http://127.0.0.1:{port}", process, log_path)
        started.append(collector)

        def listening() -> bool:
            if process.poll() is not None:
                pytest.fail(f"uvicorn exited:\n{collector.output()}", pytrace=False)
            try:
                httpx.get(collector.url + "/openapi.json", timeout=1)
            except httpx.TransportError:
                return False
            return True

        wait_until(listening, 20, f"the collector in {app_dir}")
        return collector

    yield start
    for collector in started:
        collector.process.terminate()
        try:
            collector.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            collector.process.kill()


def compose(project: str, *args: str, files: tuple[str, ...] = (), timeout=120) -> str:
    """`docker compose` on the solution's stack, as project `project`; its stdout.

    A project name of the test's own keeps it clear of a learner's stack; `files`
    adds `-f` options for overrides.
    """
    result = subprocess.run(
        ["docker", "compose", "-p", project, *files, *args],
        cwd=ROOT,
        env={**os.environ, "MODULE_DIR": "solutions/module-1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"docker compose {' '.join(args)}:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def docker() -> None:
    """A Docker engine and Compose v2, or a skip (a failure in CI)."""
    need(shutil.which("docker") is not None, "the docker CLI is not installed")
    info = subprocess.run(["docker", "info"], capture_output=True, timeout=60)
    need(info.returncode == 0, "the Docker daemon does not answer `docker info`")
    compose = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=60
    )
    need(compose.returncode == 0, "Compose v2 (`docker compose`) is not installed")


@pytest.fixture
def port_8000() -> Iterator[None]:
    """Hold host port 8000 for this test alone.

    The Compose stack publishes 8000. Tests and graders started from other
    processes on this machine take the same lock file before they bring a
    stack up, so two of them never race for the port.
    """
    with open("/tmp/sentinel-8000.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
