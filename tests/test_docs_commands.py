"""Every command the lessons show is run here, as written, and does what they say.

A command shown is a line of a ```bash block in docs/ (a trailing backslash
joins lines), or inline code that starts with one of the course's programs
(`docker ...`, `pytest ...`); inline code may use capitals for a placeholder
(`pytest checks --step N`). The scenarios below are a learner's paths through
the pages: the same strings, run by bash in a copy of the repository, in the
pages' order, with what the pages say they print checked. The first test proves
that the pages and the scenarios hold the same commands, both ways, so a
command added to a page without a scenario, or left in a scenario after the
page dropped it, fails.

A page whose commands another test file runs (the extra-credit page's, by
tests/test_hardening.py) counts when that file holds each command as a string,
or as a template it fills in.

The copy has the starter in module-1/, as a learner's clone has; the scenarios
of steps 4 and 5 copy the solution over it, as a learner who finished steps 1
to 3 has. The copy shares this environment's `.venv` (a symlink), so
`python3 scripts/bootstrap.py` runs for real but installs nothing new. Port
8000 is held through the shared lock while a scenario uses it; port 8001 (the
lessons) through a lock of its own. Compose runs under project names of these
tests' own, and everything a scenario starts is removed when it ends.
"""

import ast
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, need

DOCS = ROOT / "docs"
VENV = Path(sys.prefix)
PROGRAMS = ("docker", "pytest", "curl", "uvicorn", "python3", "mkdocs", "git")
PROGRAMS += ("hadolint", "source")


@dataclass(frozen=True)
class Run:
    """A command run to its end: its exit code, and text its output must show."""

    command: str
    exit: int = 0
    shows: tuple[str, ...] = ()
    timeout: float = 180
    retry: float = 0  # seconds to keep retrying until the exit code is right
    home: bool = False  # with HOME in a scratch folder (git config --global)


@dataclass(frozen=True)
class Serve:
    """A command that keeps running, ready once `url` answers; stopped at the end."""

    command: str
    url: str


CURL_ENTRY = (
    "curl -i -X POST http://localhost:8000/logs"
    ' -H "Content-Type: application/json"'
    ' -d \'{"service_name": "payment-service", "level": "ERROR",'
    ' "message": "Transaction failed"}\''
)
CURL_LOUD = CURL_ENTRY.replace('"ERROR"', '"LOUD"')
LRANGE = "docker compose exec redis-queue redis-cli lrange logs_queue 0 -1"
IMAGE = "log-collector:step4"
BUILD = Run(f"docker build -t {IMAGE} module-1/log-collector", timeout=900)
RESOLVE = Run(
    "docker compose exec log-collector python -c"
    " \"import socket; print(socket.gethostbyname('redis-queue'))\""
)
HEALTH_STATUS = Run(
    "docker inspect --format '{{.State.Health.Status}}' step4-collector"
)

SETUP = [
    Run("python3 --version", shows=("Python 3.",)),
    Run("docker version", shows=("Server",)),
    Run("docker info"),
    Run("docker compose version", shows=("Docker Compose version",)),
    Run("docker ps --filter publish=8000", shows=("CONTAINER ID",)),
    Run("git config --global core.autocrlf input", home=True),
    Run("python3 scripts/bootstrap.py", shows=("Set-up done",), timeout=900),
    Run("source .venv/bin/activate"),
    Run("pytest checks --step 0", timeout=300),
]
# On the starter every step fails, each failure naming a lesson section (a
# later step may send the learner back to an earlier one).
LESSON_LINK = "lesson:   http://127.0.0.1:8001/"
GRADING_STARTER = [
    Run(f"pytest checks --step {n}", exit=1, shows=(LESSON_LINK,))
    for n in (1, 2, 3, 4, 5)
] + [
    Run("pytest checks", exit=1, timeout=900),
    Run("pytest checks --target ../student-repo", exit=1, timeout=900),
]
GRADING_SOLUTIONS = [Run("pytest checks --target solutions", timeout=1500)]
STEP_1_STARTER = [
    Run("cd module-1/log-collector"),
    Serve("uvicorn main:app --reload", "http://127.0.0.1:8000/docs"),
    Run(CURL_ENTRY, shows=("422", "Extra inputs are not permitted")),
]
# After TODO 1.1; --reload has picked the change up.
STEP_1_AFTER_TODO = [
    Run(CURL_ENTRY, shows=("501", "Not implemented yet: see TODO 2.3 in main.py")),
    Run(CURL_LOUD, shows=("422", "level", "CRITICAL")),
]
STEP_2_REDIS = [
    Run("docker compose up --wait redis-queue", timeout=300),
    Run("docker compose exec redis-queue redis-cli lpush demo first second third"),
    Run("docker compose exec redis-queue redis-cli brpop demo 1", shows=("first",)),
    Run("docker compose exec redis-queue redis-cli lrange demo 0 -1"),
    Run("docker compose exec redis-queue redis-cli del demo", shows=("1",)),
    Run("docker compose down"),
]
STEP_3_LINT = [Run("hadolint module-1/log-collector/Dockerfile")]
STEP_4_IMAGE = [
    BUILD,
    BUILD,  # again, as the page asks: all from the cache this time
    Run(f"docker image ls {IMAGE}", shows=("log-collector", "step4")),
    Run("docker image ls python:3.12-slim-bookworm", shows=("slim-bookworm",)),
    Run(f"docker history {IMAGE}", shows=("COPY", "USER 10001:10001")),
    Run(
        f"docker image inspect --format '{{{{.Config.User}}}}' {IMAGE}",
        shows=("10001:10001",),
    ),
    Run(f"docker run --rm {IMAGE} id", shows=("uid=10001",)),
    Run(f"docker run --rm {IMAGE} which uvicorn", shows=("/opt/venv/bin/uvicorn",)),
    Run(f"docker run --rm {IMAGE} which curl", exit=1),
    Run(f"docker run --rm {IMAGE} ls -ln /app", shows=("10001", "main.py")),
    Run(f"docker run -d --name step4-collector -p 127.0.0.1:8000:8000 {IMAGE}"),
    Run(
        "curl -i http://localhost:8000/health",
        shows=("503", '"redis":"down"'),
        retry=30,
    ),
    HEALTH_STATUS,
    Run(
        "docker logs step4-collector",
        shows=("Uvicorn running on http://0.0.0.0:8000", "is not reachable"),
    ),
    Run("docker stop step4-collector"),
    Run("docker rm step4-collector"),
]
STEP_5_COMPOSE = [
    Run("docker compose config", shows=("sentinel-net", "module-1/log-collector")),
    Run("docker compose up --build --wait", timeout=900),
    Run("docker compose ps", shows=("healthy", "log-collector", "redis-queue")),
    Run(CURL_ENTRY, shows=("202 Accepted", '"service_name":"payment-service"')),
    Run(LRANGE, shows=("Transaction failed",)),
    Run("docker compose exec redis-queue redis-cli llen logs_queue", shows=("1",)),
    RESOLVE,
    Run(
        "docker compose logs log-collector",
        shows=("Connected to Redis at redis-queue:6379",),
    ),
    Run("docker compose restart redis-queue"),
    Run(LRANGE, shows=("Transaction failed",), retry=20),
    Run("docker compose down"),
    Run("docker compose up --wait", timeout=300),
    Run(LRANGE, shows=("Transaction failed",)),
    Run("docker compose down -v"),
]
LESSONS = [Serve("mkdocs serve", "http://127.0.0.1:8001/module-1/progress/")]
SCENARIOS = [
    SETUP,
    GRADING_STARTER,
    GRADING_SOLUTIONS,
    STEP_1_STARTER,
    STEP_1_AFTER_TODO,
    STEP_2_REDIS,
    STEP_3_LINT,
    STEP_4_IMAGE,
    STEP_5_COMPOSE,
    LESSONS,
]


# --- what the pages show ----------------------------------------------------


def shown_commands() -> tuple[dict[str, str], dict[str, str]]:
    """The commands of the ```bash blocks, and the inline ones, with their page."""
    blocks: dict[str, str] = {}
    inline: dict[str, str] = {}
    for path in sorted(DOCS.rglob("*.md")):
        page = path.relative_to(DOCS).as_posix()
        fence: str | None = None
        lines: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if fence is None and stripped.startswith("```"):
                fence = stripped[3:].strip().split(" ")[0]
                continue
            if fence is not None and stripped == "```":
                if fence == "bash":
                    for command in joined(lines):
                        blocks.setdefault(command, page)
                fence, lines = None, []
                continue
            if fence is not None:
                lines.append(stripped)
            elif not stripped.startswith("<!--"):
                for span in re.findall(r"`([^`]+)`", line):
                    if span.startswith(tuple(program + " " for program in PROGRAMS)):
                        inline.setdefault(span, page)
    return blocks, inline


def joined(lines: list[str]) -> list[str]:
    """Commands from a block's lines: continuations joined, comments dropped."""
    commands, current = [], ""
    for line in lines:
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        commands.append(current + line)
        current = ""
    return commands


def scenario_commands() -> set[str]:
    return {step.command for scenario in SCENARIOS for step in scenario}


def commands_other_tests_run() -> list[str]:
    """Patterns for the commands that the project's other test files run.

    Another test file may own a page's commands (the extra-credit page's are
    run by tests/test_hardening.py); it holds each as a string constant, or as
    a template whose `{}` fields it fills in.
    """
    patterns = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        if path.name.startswith("test_docs"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith(tuple(f"{p} " for p in (*PROGRAMS, "python")))
            ):
                parts = re.split(r"\{[a-z_]*\}", node.value)
                patterns.append(".+".join(re.escape(part) for part in parts))
    return patterns


def test_the_pages_and_the_scenarios_hold_the_same_commands():
    blocks, inline = shown_commands()
    run = scenario_commands()
    elsewhere = commands_other_tests_run()

    not_run = {
        command: page
        for command, page in blocks.items()
        if command not in run
        and not any(re.fullmatch(pattern, command) for pattern in elsewhere)
    }
    not_shown = run - set(blocks)
    unmatched = {
        span: page
        for span, page in inline.items()
        if not any(re.match(placeholders(span), command) for command in run)
    }

    assert len(blocks) > 40
    assert not not_run, f"shown in the lessons, run by no test: {not_run}"
    assert not not_shown, f"run as a lesson command, shown nowhere: {not_shown}"
    assert not unmatched, f"inline commands that no test runs: {unmatched}"


def placeholders(span: str) -> str:
    """A regex for an inline command: capitals (N, PATH, NAME:TAG) stand for a value."""
    parts = re.split(r"\b([A-Z][A-Z_]*)\b", span)
    pattern = ""
    for index, part in enumerate(parts):
        pattern += (
            (r".+?" if part == "COMMAND" else r"\S+?") if index % 2 else re.escape(part)
        )
    return pattern


# --- running them -----------------------------------------------------------


class Shell:
    """Runs lesson commands the way a learner's terminal does, in one folder."""

    def __init__(self, root: Path, scratch: Path, **env: str) -> None:
        self.root = root
        self.cwd = root
        self.scratch = scratch
        self.env = {
            **os.environ,
            # What `source .venv/bin/activate` does, for every command.
            "PATH": f"{root / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "VIRTUAL_ENV": str(root / ".venv"),
            "NO_MKDOCS_2_WARNING": "1",
            **env,
        }
        self.servers: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.seconds: dict[str, float] = {}  # how long each command took, last run

    def run(self, steps: list[Run | Serve]) -> list[str]:
        return [self.step(step) for step in steps]

    def step(self, step: Run | Serve) -> str:
        if isinstance(step, Serve):
            self.serve(step)
            return ""
        if step.command.startswith("cd "):
            self.cwd = (self.cwd / step.command[3:]).resolve()
            assert self.cwd.is_dir(), step.command
            return ""
        env = dict(self.env)
        if step.home:
            env["HOME"] = str(self.scratch)
        deadline = time.monotonic() + step.retry
        while True:
            started = time.monotonic()
            result = subprocess.run(
                ["bash", "-c", step.command],
                cwd=self.cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=step.timeout,
                check=False,
            )
            self.seconds[step.command] = time.monotonic() - started
            output = result.stdout + result.stderr
            missing = [text for text in step.shows if text not in output]
            if result.returncode == step.exit and not missing:
                return output
            if time.monotonic() > deadline:
                pytest.fail(
                    f"`{step.command}` (in {self.cwd}) exited {result.returncode}, "
                    f"expected {step.exit}; missing from its output: {missing}\n"
                    f"{output[-6000:]}",
                    pytrace=False,
                )
            time.sleep(1)

    def serve(self, step: Serve) -> None:
        log = self.scratch / f"serve-{len(self.servers)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", "exec " + step.command],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, to stop it whole
            )
        self.servers.append((process, log))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"`{step.command}` exited:\n{log.read_text()}", False)
            try:
                if httpx.get(step.url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        pytest.fail(f"`{step.command}` did not answer {step.url}:\n{log.read_text()}")

    def stop(self) -> None:
        for process, _ in self.servers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.servers.clear()


def copy_repository(
    destination: Path, *, solved: bool = False, venv: bool = True
) -> Path:
    """A learner's copy of the repository, sharing this environment's .venv.

    Nothing a scenario runs in a copy with the shared .venv may install into
    it: pip would write the copy's path into the scripts it installs.
    """
    need(sys.prefix != sys.base_prefix, "the tests must run in the course's .venv")
    shutil.copytree(
        ROOT,
        destination,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".sentinel", "site", "build", "__pycache__", ".*_cache"
        ),
    )
    if venv:
        (destination / ".venv").symlink_to(VENV)
    if solved:
        solution = ROOT / "solutions" / "module-1" / "log-collector"
        shutil.copytree(
            solution, destination / "module-1" / "log-collector", dirs_exist_ok=True
        )
    return destination


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shell = Shell(copy_repository(tmp_path / "repo"), scratch)
    yield shell
    shell.stop()


@pytest.fixture
def solved_shell(tmp_path: Path) -> Iterator[Shell]:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shell = Shell(copy_repository(tmp_path / "repo", solved=True), scratch)
    yield shell
    shell.stop()


@contextlib.contextmanager
def own_compose_project(shell: Shell) -> Iterator[Shell]:
    """`docker compose` in this shell works on a project of the test's own."""
    project = f"sentinel-docs-{uuid.uuid4().hex[:8]}"
    shell.env["COMPOSE_PROJECT_NAME"] = project
    try:
        yield shell
    finally:
        subprocess.run(
            ["docker", "compose", "-p", project, "down", "-v", "--rmi", "local"],
            cwd=shell.root,
            capture_output=True,
            timeout=180,
            check=False,
        )


@pytest.fixture
def port_8001() -> Iterator[None]:
    """Hold port 8001, the lessons' port, for this test alone."""
    with open("/tmp/sentinel-8001.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --- the scenarios ----------------------------------------------------------


@pytest.mark.timeout(1200)
def test_setup_commands(tmp_path: Path, docker, port_8000):
    # A fresh copy with no .venv and no Mermaid, as a learner's clone is: the
    # set-up creates the one and fetches the other.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shell = Shell(copy_repository(tmp_path / "repo", venv=False), scratch)
    shutil.rmtree(shell.root / "docs" / "assets" / "vendor", ignore_errors=True)

    shell.run(SETUP)

    gitconfig = (scratch / ".gitconfig").read_text()
    assert re.search(r"autocrlf\s*=\s*input", gitconfig), gitconfig
    mermaid = shell.root / "docs" / "assets" / "vendor" / "mermaid" / "mermaid.min.js"
    assert mermaid.stat().st_size > 1_000_000
    # The checks ran from the environment the set-up made, not from this one.
    assert (shell.root / ".venv" / "bin" / "pytest").exists()
    assert not (shell.root / ".venv").is_symlink()


@pytest.mark.timeout(2400)
def test_grading_commands_and_the_progress_they_show(
    shell: Shell, tmp_path: Path, docker, port_8000
):
    shutil.copytree(ROOT / "module-1", tmp_path / "student-repo" / "module-1")
    results = shell.root / ".sentinel" / "results.json"

    shell.run(GRADING_STARTER)
    starter = json.loads(results.read_text())
    step_1 = built_page(shell, "module-1/step-1-api/index.html")

    shell.run(GRADING_SOLUTIONS)
    solved = json.loads(results.read_text())
    progress = built_page(shell, "module-1/progress/index.html")

    assert {check["step"] for check in starter["checks"]} == {0, 1, 2, 3, 4, 5}
    assert re.search(r'id="todo-1-1".*?sentinel-failed', step_1, re.S)
    assert "read more" in step_1
    assert solved["target"].endswith("solutions/module-1"), solved["target"]
    assert {check["outcome"] for check in solved["checks"]} == {"passed"}
    total = len(solved["checks"])
    assert f"{total} of {total} checks passed" in " ".join(progress.split())


def built_page(shell: Shell, page: str) -> str:
    """Build the copy's lessons (reading its results file); one page's HTML."""
    site = shell.scratch / "site"
    shell.run([Run(f"mkdocs build --strict --site-dir {site}")])
    return (site / page).read_text(encoding="utf-8")


@pytest.mark.timeout(300)
def test_step_1_commands_before_and_after_todo_1_1(shell: Shell, port_8000):
    shell.run(STEP_1_STARTER)
    assert "swagger-ui" in httpx.get("http://127.0.0.1:8000/docs").text

    do_todo_1_1(shell.root / "module-1" / "log-collector" / "main.py")
    # --reload restarts the server on save; wait for the new code to answer.
    shell.run([Run(STEP_1_AFTER_TODO[0].command, shows=("501",), retry=30)])
    shell.run(STEP_1_AFTER_TODO)


def do_todo_1_1(main: Path) -> None:
    """Do TODO 1.1 as the solution does: its field lines replace the TODO line."""
    solution = (
        ROOT / "solutions" / "module-1" / "log-collector" / "main.py"
    ).read_text()
    fields = solution.split("# Step 1.1")[1].split("\n", 1)[1].split("\n\n")[0]
    starter = main.read_text()
    todo = re.findall(r"^ *# TODO 1\.1:.*\n", starter, re.M)
    assert len(todo) == 1, todo
    main.write_text(starter.replace(todo[0], fields + "\n"))


@pytest.mark.timeout(600)
def test_step_2_redis_commands(shell: Shell, docker):
    with own_compose_project(shell):
        outputs = shell.run(STEP_2_REDIS)

    assert outputs[1].split() == ["3"]
    assert outputs[2].split() == ["demo", "first"]
    assert outputs[3].split() == ["third", "second"]


@pytest.mark.timeout(1200)
def test_step_3_and_4_commands(solved_shell: Shell, docker, port_8000):
    try:
        solved_shell.run(STEP_3_LINT)
        outputs = solved_shell.run(STEP_4_IMAGE)
    finally:
        for command in (["rm", "-f", "step4-collector"], ["image", "rm", IMAGE]):
            subprocess.run(["docker", *command], capture_output=True, check=False)

    rebuild = outputs[1]
    health = outputs[STEP_4_IMAGE.index(HEALTH_STATUS)].strip()
    assert "Using cache" in rebuild or "CACHED" in rebuild, rebuild
    assert health in {"starting", "unhealthy"}, health
    # Exec form: uvicorn is process 1, takes the SIGTERM and stops at once,
    # where a shell in between would make Docker wait 10 s and then kill.
    assert solved_shell.seconds["docker stop step4-collector"] < 5


@pytest.mark.timeout(1200)
def test_step_5_commands(solved_shell: Shell, docker, port_8000):
    with own_compose_project(solved_shell):
        outputs = solved_shell.run(STEP_5_COMPOSE)

    address = outputs[STEP_5_COMPOSE.index(RESOLVE)].strip()
    queue = outputs[STEP_5_COMPOSE.index(Run(LRANGE, shows=("Transaction failed",)))]
    queued = [json.loads(line) for line in queue.splitlines() if line.strip()]
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", address), address
    assert [entry["message"] for entry in queued] == ["Transaction failed"]


@pytest.mark.timeout(300)
def test_mkdocs_serve_shows_new_results_without_a_restart(shell: Shell, port_8001):
    shell.run(LESSONS)
    url = LESSONS[0].url
    assert "No results yet" in httpx.get(url).text

    results = shell.root / ".sentinel" / "results.json"
    results.write_text(
        json.dumps(
            {
                "module": "module-1",
                "target": "module-1",
                "finished": "2026-12-03T16:19:04+00:00",
                "checks": [
                    {
                        "step": 1,
                        "check": "test_valid_entry_is_accepted",
                        "title": "A valid entry is accepted",
                        "outcome": "passed",
                        "hint": "",
                        "lesson": "module-1/step-1-api.md#todo-1-1",
                    }
                ],
            }
        )
    )

    deadline = time.monotonic() + 60
    while "1 of 1 check passed" not in " ".join(httpx.get(url).text.split()):
        assert time.monotonic() < deadline, "mkdocs serve did not rebuild"
        time.sleep(0.5)
