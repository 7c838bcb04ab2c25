"""A real Redis for the step 1 and 2 checks, from wherever this machine has one.

In order: the URL the learner gives (`--redis URL` or SENTINEL_REDIS_URL), a
`redis-server` on the PATH, a throwaway `redis:7.4-alpine` container. The
grader's own Redis listens on a port the kernel picks, never 6379, and where it
can on 127.0.0.2 rather than 127.0.0.1: a collector that ignores REDIS_HOST or
REDIS_PORT and dials localhost:6379 then finds nothing there, as it would in
Compose.

The grader reads Redis with its own client that returns raw bytes, and decodes
them itself, so a check never depends on how the learner set up theirs.
"""

import contextlib
import functools
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import redis
from environment import docker_status, free_port
from processes import Background, run
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS_IMAGE = "redis:7.4-alpine"
READY_TIMEOUT = 10.0


class RedisUnavailable(Exception):
    """No Redis could be had; the message says why and `fix` what to do."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


@functools.cache
def loopback_host() -> str:
    """127.0.0.2 where this system routes it to itself (Linux does), else 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return "127.0.0.1"
    return "127.0.0.2"


class RedisServer:
    """A Redis the checks can read, clear, and (unless it is the learner's) stop."""

    kind = "redis"
    can_stop = False

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def __str__(self) -> str:
        return f"{self.kind} at {self.host}:{self.port}"

    def connect(self) -> redis.Redis:
        """A new client of the grader's own: raw bytes, short timeouts, no retries."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            socket_timeout=5,
            socket_connect_timeout=5,
            retry=Retry(NoBackoff(), 0),
        )

    def answers(self) -> bool:
        client = self.connect()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def wait_until_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers():
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        raise NotImplementedError(f"the grader cannot stop {self}")

    def start(self) -> None:
        raise NotImplementedError(f"the grader cannot start {self}")

    def close(self) -> None:
        """Release whatever the grader started; the learner's own Redis stays."""


class GivenRedis(RedisServer):
    """The Redis at the URL the learner gave; the grader never stops it."""

    kind = "your Redis"


class LocalRedisServer(RedisServer):
    """A `redis-server` the grader starts, keeps nothing on disk, and can restart."""

    kind = "redis-server"
    can_stop = True

    def __init__(self, executable: str, workdir: Path) -> None:
        host = loopback_host()
        super().__init__(host, free_port(host))
        self.executable = executable
        self.workdir = workdir
        self.process: Background | None = None

    def start(self) -> None:
        self.process = Background(
            [
                self.executable,
                "--bind",
                self.host,
                "--port",
                str(self.port),
                # Nothing on disk: each check starts from what it sets up.
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--loglevel",
                "warning",
            ],
            cwd=self.workdir,
        )
        if not self.wait_until_ready():
            output = self.process.text().strip()
            self.process.stop()
            raise RedisUnavailable(
                f"redis-server did not start on {self.host}:{self.port}: {output}",
                fix="Run `redis-server --port 6390` yourself to see why it stops.",
            )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def close(self) -> None:
        self.stop()


class ContainerRedis(RedisServer):
    """A throwaway Redis container published on a loopback port, removed at the end."""

    kind = "Redis container"
    can_stop = True

    def __init__(self) -> None:
        host = loopback_host()
        super().__init__(host, free_port(host))
        self.name = f"sentinel-grader-redis-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.created = False

    def create(self) -> None:
        result = run(
            [
                "docker",
                "run",
                "--detach",
                "--name",
                self.name,
                "--label",
                "sentinel.grader=redis",
                "--publish",
                f"{self.host}:{self.port}:6379",
                REDIS_IMAGE,
                "redis-server",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            timeout=180,  # the first run may pull the image
        )
        self.created = True
        if not result.ok or not self.wait_until_ready():
            detail = "timed out" if result.timed_out else result.output
            self.close()
            raise RedisUnavailable(
                f"A {REDIS_IMAGE} container did not start: {detail}",
                fix=f"Run `docker run --rm {REDIS_IMAGE}` yourself to see why.",
            )

    def stop(self) -> None:
        run(["docker", "stop", "--time", "1", self.name], timeout=30)

    def start(self) -> None:
        run(["docker", "start", self.name], timeout=30)
        self.wait_until_ready()

    def close(self) -> None:
        if self.created:
            run(["docker", "rm", "--force", "--volumes", self.name], timeout=30)
            self.created = False


NO_REDIS_FIX = (
    "Install redis-server (Debian/Ubuntu/WSL: `sudo apt-get install redis-server`, "
    "macOS: `brew install redis`), or start Docker so the grader can run a "
    f"{REDIS_IMAGE} container, or give one: `pytest checks --redis redis://HOST:PORT`."
)


def given_redis(url: str) -> GivenRedis:
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise RedisUnavailable(
            f"{url!r} is not a Redis URL of the form redis://HOST:PORT.",
            fix="Give it as redis://HOST:PORT, or leave it out.",
        )
    server = GivenRedis(parts.hostname, parts.port or 6379)
    if not server.wait_until_ready(timeout=3):
        raise RedisUnavailable(
            f"The Redis you gave ({url}) does not answer.",
            fix="Start it, or leave out --redis / SENTINEL_REDIS_URL and the grader "
            "starts one of its own.",
        )
    return server


def provide_redis(choice: str, workdir: Path) -> RedisServer:
    """A ready Redis: `choice` is 'auto', 'server', 'container' or a redis:// URL."""
    if choice.startswith("redis://") or "://" in choice:
        return given_redis(choice)
    if choice in {"auto", "server"}:
        executable = shutil.which("redis-server")
        if executable is not None:
            server = LocalRedisServer(executable, workdir)
            server.start()
            return server
        if choice == "server":
            raise RedisUnavailable("`redis-server` is not on your PATH.", NO_REDIS_FIX)
    status = docker_status()
    if not status.ok:
        raise RedisUnavailable(
            "No Redis to test against: `redis-server` is not on your PATH, and "
            f"Docker is not usable ({status.problem})",
            fix=NO_REDIS_FIX,
        )
    container = ContainerRedis()
    try:
        container.create()
    except BaseException:
        container.close()
        raise
    return container


def decode(value: bytes | None) -> str | None:
    """Redis returns bytes; the grader reads them as UTF-8, as the analyzer will."""
    if value is None:
        return None
    return value.decode("utf-8", errors="replace")


def list_keys(client: redis.Redis) -> dict[str, int]:
    """Every list in Redis and its length: finds an entry pushed under another name."""
    found = {}
    with contextlib.suppress(redis.RedisError):
        for key in client.scan_iter(count=1000, _type="list"):
            found[decode(key) or ""] = int(client.llen(key))
    return found
