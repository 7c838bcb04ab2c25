"""Measure the finished log collector on this machine, and check it loses nothing.

Runs, each against the same real redis-server on 127.0.0.1 (append-only, as
in the Compose stack):

- the solution under uvicorn as its image runs it (`uvicorn main:app`, worker
  count from WEB_CONCURRENCY), with one worker and with one per core;
- the naive variant (bench/naive_collector.py: sync handler, a new Redis
  client per request), the same two ways;
- the same collector in Express and node-redis (bench/express/), one process;
- Redis' own LPUSH ceiling, with redis-benchmark.

Each HTTP run is wrk (bench/post_logs.lua) posting the README's entry over
--connections connections for --duration seconds, after a warm-up. Then it
checks that nothing was lost: the 2xx answers equal the growth of logs_queue,
and every queued entry parses, with the fields that were sent.

It also builds the solution's image from a copy of its folder and reports the
image's size, what it adds to its base image, and how long a rebuild takes
after a code-only change.

Usage:  .venv/bin/python bench/run.py [--duration 10] [--connections 50]
It exits 1 if any entry was lost or malformed, and 0 otherwise, whether or
not the speed targets were met: the figures are for reading.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import redis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SOLUTION = ROOT / "solutions" / "module-1" / "log-collector"
EXPRESS = BENCH / "express"
LUA = BENCH / "post_logs.lua"
QUEUE = "logs_queue"
ENTRY = {
    "service_name": "payment-service",
    "level": "ERROR",
    "message": "Transaction failed",
}
FIELDS = {*ENTRY, "id", "timestamp"}
CORES = os.cpu_count() or 1

# The targets for a 2-core machine.
TARGET_SPEEDUP = 1.5  # solution / naive, at the same worker count
TARGET_P99_MS = 100
TARGET_REBUILD_S = 10


@dataclass
class Run:
    """One wrk run against one server, and what the queue says about it."""

    name: str
    workers: int
    seconds: float
    counts: dict = field(default_factory=dict)  # the BENCH line of post_logs.lua
    queued: int = 0
    malformed: list[str] = field(default_factory=list)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpu: float = 0.0  # CPU seconds the server used during the run

    @property
    def cpu_ms_per_request(self) -> float:
        answered = self.counts["posts_2xx"] + self.counts["posts_other"]
        return 1000 * self.cpu / answered if answered else 0.0

    @property
    def rate(self) -> float:
        return self.counts["posts_2xx"] / self.seconds

    @property
    def lost(self) -> bool:
        return self.counts["posts_2xx"] != self.queued or bool(self.malformed)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float, process: subprocess.Popen) -> None:
    """Wait until `url` answers 200, or fail if the process dies or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    sys.exit(f"{url} did not answer 200 within {seconds} s")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM and wait, as `docker stop` does; SIGKILL only if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def redis_server(folder: Path) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        + ["--dir", str(folder), "--appendonly", "yes", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                sys.exit("redis-server did not start")
            time.sleep(0.05)
    try:
        yield port
    finally:
        client.close()
        stop(process)


@dataclass
class Server:
    url: str
    process: subprocess.Popen

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its worker processes."""
        return cpu_seconds(self.process.pid)


def cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return 0.0
    # utime and stime, the 14th and 15th fields; the 2nd may contain spaces.
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    own = ticks / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(child)) for child in children)


@contextmanager
def serve(kind: str, workers: int, redis_port: int, logs: Path) -> Iterator[Server]:
    """Start one collector on a free port; yield it once it answers /health."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_port),
        # uvicorn takes its worker count from here, as in the image.
        "WEB_CONCURRENCY": str(workers),
    }
    uvicorn = [sys.executable, "-m", "uvicorn"]
    address = ["--host", "127.0.0.1", "--port", str(port)]
    if kind == "solution":
        command, cwd = [*uvicorn, "main:app", *address], SOLUTION
    elif kind == "naive":
        command, cwd = [*uvicorn, "naive_collector:app", *address], BENCH
        # `main` and `config` in naive_collector.py are the solution's.
        env["PYTHONPATH"] = str(SOLUTION)
    else:
        command, cwd = ["node", "server.js"], EXPRESS
        env["PORT"] = str(port)
    log_path = logs / f"{kind}-{workers}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/health", 30, process)
        yield Server(url, process)
    finally:
        stop(process)


def wrk(url: str, seconds: float, connections: int) -> dict:
    """Post for `seconds`, then let the last POSTs finish; return the counts."""
    threads = min(CORES, connections)
    result = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds + 2:.0f}s"]
        + ["--timeout", "10s", "-s", str(LUA), url, "--", str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("BENCH ")), None)
    if result.returncode != 0 or line is None:
        sys.exit(f"wrk failed:\n{result.stdout}{result.stderr}")
    return json.loads(line.removeprefix("BENCH "))


def check_queue(client: redis.Redis) -> tuple[int, list[str]]:
    """How many entries are queued, and each one that is not a whole entry."""
    lines = client.lrange(QUEUE, 0, -1)
    malformed, ids = [], set()
    for line in lines:
        try:
            entry = json.loads(line)
            assert set(entry) == FIELDS
            assert {key: entry[key] for key in ENTRY} == ENTRY
            assert re.fullmatch(r"[0-9a-f]{32}", entry["id"])
            stamp = datetime.fromisoformat(entry["timestamp"])
            assert stamp.utcoffset() == timedelta(0)
            assert entry["id"] not in ids, "duplicate id"
            ids.add(entry["id"])
        except (ValueError, AssertionError, AttributeError):
            malformed.append(line[:200].decode(errors="replace"))
    return len(lines), malformed


def measure(kind, workers, args, redis_port, logs) -> Run:
    client = redis.Redis(port=redis_port)
    with serve(kind, workers, redis_port, logs) as server:
        if args.warmup:
            wrk(server.url, args.warmup, args.connections)
        client.delete(QUEUE)
        run = Run(kind, workers, args.duration, load=os.getloadavg())
        cpu = server.cpu_seconds()
        run.counts = wrk(server.url, args.duration, args.connections)
        run.cpu = server.cpu_seconds() - cpu
        run.queued, run.malformed = check_queue(client)
    client.delete(QUEUE)
    client.close()
    return run


def redis_ceiling(port: int, connections: int) -> tuple[float, tuple]:
    """LPUSHes per second Redis itself takes from `connections` clients."""
    load = os.getloadavg()
    # -d 163: values the size of the entries the collector queues.
    result = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "lpush", "-c", str(connections)]
        + ["-n", "200000", "-d", "163", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    match = re.search(r"LPUSH: ([\d.]+) requests per second", result.stdout)
    if not match:
        sys.exit(f"redis-benchmark failed:\n{result.stdout}{result.stderr}")
    redis.Redis(port=port).delete("mylist")  # redis-benchmark's own key
    return float(match.group(1)), load


def docker(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=True
    )


def image_figures() -> dict:
    """Size of the solution's image, bytes over its base, code-only rebuild time."""
    tag = "sentinel-bench/log-collector:latest"
    dockerfile = (SOLUTION / "Dockerfile").read_text()
    base = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)[-1]
    built = []
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-") as folder:
        copy = Path(folder) / "log-collector"
        shutil.copytree(SOLUTION, copy, ignore=shutil.ignore_patterns("__pycache__"))
        try:
            started = time.monotonic()
            docker("build", "--tag", tag, str(copy))
            first = time.monotonic() - started
            built.append(docker("image", "inspect", "--format", "{{.Id}}", tag).stdout)
            size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)
            base_size = int(
                docker("image", "inspect", "--format", "{{.Size}}", base).stdout
            )
            standin = "standin" in docker("image", "inspect", base).stdout

            # A code-only change: one comment more in main.py.
            with (copy / "main.py").open("a") as main:
                main.write(f"\n# benchmark rebuild {time.time()}\n")
            started = time.monotonic()
            rebuild = docker("build", "--tag", tag, str(copy))
            seconds = time.monotonic() - started
            built.append(docker("image", "inspect", "--format", "{{.Id}}", tag).stdout)
        finally:
            # Only what this run tagged; layers other images share stay.
            for image in {tag, *(x.strip() for x in built)}:
                subprocess.run(["docker", "rmi", image], capture_output=True)
    # The classic builder prints " ---> Using cache" under each cached step.
    steps = re.split(r"^Step \d+/\d+ : ", rebuild.stdout, flags=re.MULTILINE)
    install = next((s for s in steps if "pip install" in s.splitlines()[0]), "")
    return {
        "base": base,
        "standin": standin,
        "size": size,
        "base_size": base_size,
        "first_build": first,
        "rebuild": seconds,
        "install_cached": "Using cache" in install,
    }


def npm_install() -> bool:
    if not shutil.which("node") or not shutil.which("npm"):
        return False
    # npm records what it installed in node_modules/.package-lock.json; when
    # that matches the lock file, there is nothing to do.
    locked = json.loads((EXPRESS / "package-lock.json").read_text())["packages"]
    installed = EXPRESS / "node_modules" / ".package-lock.json"
    if installed.exists():
        packages = json.loads(installed.read_text())["packages"]
        if packages == {k: v for k, v in locked.items() if k}:
            return True
    # `npm ci` installs exactly package-lock.json, into bench/express/node_modules.
    subprocess.run(
        ["npm", "ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=EXPRESS,
        check=True,
        timeout=600,
    )
    return True


def mb(size: float) -> str:
    return f"{size / 1_000_000:.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=2, help="seconds, not counted")
    parser.add_argument("--no-image", action="store_true", help="skip the Docker part")
    args = parser.parse_args()

    for tool in ("redis-server", "redis-benchmark", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not on PATH; see bench/README.md")
    express = npm_install()
    print(f"{CORES} cores; load average {os.getloadavg()} (1, 5, 15 min) at start")
    print(f"wrk: {args.connections} connections, {args.duration:g} s per run\n")

    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="sentinel-bench-") as folder,
        redis_server(Path(folder)) as redis_port,
    ):
        plan = [("solution", 1), ("solution", CORES), ("naive", 1), ("naive", CORES)]
        plan += [("express", 1)] if express else []
        print(HEADER)
        for kind, workers in plan:
            run = measure(kind, workers, args, redis_port, Path(folder))
            runs.append(run)
            report(run)
        ceiling, ceiling_load = redis_ceiling(redis_port, args.connections)
    print(
        f"{'redis-benchmark LPUSH':<24} {ceiling:>9.0f} req/s"
        f"{'':>39}load {ceiling_load[0]:.2f}"
    )
    if not express:
        print("express: skipped, node and npm are not installed")

    lost = [run for run in runs if run.lost]
    summarise(runs, ceiling, express)
    if not args.no_image:
        image = image_figures() if shutil.which("docker") else None
        report_image(image)
    print(f"\nload average {os.getloadavg()} at the end")
    if lost:
        print(f"\nLOSS in {', '.join(f'{r.name} x{r.workers}' for r in lost)}")
        return 1
    print("\nNothing lost: every 2xx answer is one whole entry in the queue.")
    return 0


HEADER = (
    f"{'server':<14}{'workers':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
    f" {'non-2xx':>8} {'errors':>7} {'2xx':>8} {'queued':>8} {'CPU ms/req':>10}"
    "  load (1 min)"
)


def report(run: Run) -> None:
    c = run.counts
    print(
        f"{run.name:<14}{run.workers:>7} {run.rate:>9.0f} {c['p50_us'] / 1000:>8.1f}"
        f" {c['p99_us'] / 1000:>8.1f} {c['posts_other']:>8}"
        f" {c['socket_errors'] + c['timeouts']:>7} {c['posts_2xx']:>8} {run.queued:>8}"
        f" {run.cpu_ms_per_request:>10.2f}  {run.load[0]:.2f}"
        + (f"  LOST/MALFORMED {len(run.malformed)}" if run.lost else "")
    )
    if c["other_statuses"]:
        print(f"{'':<14}non-2xx by status: {c['other_statuses']}")
    unanswered = c["posts_sent"] - c["posts_2xx"] - c["posts_other"]
    if unanswered:
        print(f"{'':<14}{unanswered} POSTs had no answer when wrk stopped")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a (nothing was accepted)"


def summarise(runs: list[Run], ceiling: float, express: bool) -> None:
    by = {(run.name, run.workers): run for run in runs}
    print("\nRatios")
    for workers in sorted({1, CORES}):
        fast, slow = by[("solution", workers)], by[("naive", workers)]
        met = slow.rate and fast.rate / slow.rate >= TARGET_SPEEDUP
        print(
            f"  solution / naive, {workers} worker(s): {ratio(fast.rate, slow.rate)}"
            f" (target {TARGET_SPEEDUP}x: {'met' if met else 'MISSED'})"
        )
    if express:
        solution, node = by[("solution", 1)].rate, by[("express", 1)].rate
        print(f"  solution / Express, one process each: {ratio(solution, node)}")
    for workers in sorted({1, CORES}):
        share = ratio(by[("solution", workers)].rate, ceiling)
        print(f"  solution ({workers} worker(s)) / Redis LPUSH ceiling: {share}")
    print("\nTargets")
    for workers in sorted({1, CORES}):
        p99 = by[("solution", workers)].counts["p99_us"] / 1000
        verdict = (
            "met" if p99 < TARGET_P99_MS else f"MISSED by {p99 - TARGET_P99_MS:.1f} ms"
        )
        print(
            f"  solution p99, {workers} worker(s): {p99:.1f} ms"
            f" (< {TARGET_P99_MS}: {verdict})"
        )


def report_image(image: dict | None) -> None:
    print("\nImage")
    if image is None:
        print("  skipped: docker is not installed")
        return
    print(f"  size {mb(image['size'])}; base {image['base']} {mb(image['base_size'])};")
    print(f"  added over the base: {mb(image['size'] - image['base_size'])}")
    if image["standin"]:
        print("  (the base is this machine's CI stand-in, built from Debian packages)")
    verdict = "met" if image["rebuild"] < TARGET_REBUILD_S else "MISSED"
    cached = "cached" if image["install_cached"] else "NOT cached"
    print(f"  first build {image['first_build']:.1f} s; after a code-only change")
    print(
        f"  {image['rebuild']:.1f} s, dependency layer {cached}"
        f" (< {TARGET_REBUILD_S} s: {verdict})"
    )


if __name__ == "__main__":
    sys.exit(main())
