"""What the solution teaches about security, proven on the built image and stack.

- The image carries the service and nothing to build or leak with: no
  compilers, no git, no pip cache, no .git or .env, no secrets in its settings.
- It runs as UID/GID 10001, fixed in the Dockerfile, never as root.
- The stack also runs hardened (docker-compose.hardened.yaml): read-only root
  file systems, every capability dropped, no-new-privileges; and still serves
  POST /logs and /health, and still keeps the queue across a Redis restart.
- hadolint passes on the solution's Dockerfile, and any rule it is told to
  ignore carries its reason.
"""

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, SOLUTION, STARTER, need, wait_until
from conftest import compose as run_compose

IMAGE = "sentinel-tests/log-collector:hardening"
ENTRY = {
    "service_name": "payment-service",
    "level": "ERROR",
    "message": "Transaction failed",
}


def run(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def image(docker) -> str:
    """The solution's image, built as a learner builds it (cached layers reused)."""
    run("docker", "build", "--quiet", "--tag", IMAGE, str(SOLUTION), timeout=600)
    return IMAGE


def in_image(image: str, script: str) -> str:
    """Run a shell script in a throwaway container, as root so it sees every file."""
    return run(
        "docker",
        "run",
        "--rm",
        "--user",
        "0",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        script,
    )


def test_image_has_no_build_tools(image):
    tools = "gcc cc c++ g++ clang make cpp ld as git"
    found = in_image(image, f"for t in {tools}; do command -v $t; done; true")

    assert found == "", f"build tools in the image: {found.split()}"


def test_image_has_no_pip_cache_git_env_or_private_keys(image):
    found = in_image(
        image,
        "find / -xdev \\( -path '*/.cache/pip' -o -name .git -o -name .env \\) -print;"
        " grep -rlE 'BEGIN [A-Z ]*PRIVATE KEY' /app /opt /root /home /etc; true",
    )

    assert found == "", f"found in the image: {found.split()}"


def test_app_folder_holds_only_the_service_code(image):
    files = in_image(image, "cd /app && find . -type f | sort").split()

    assert files, "/app is empty"
    assert all(name.endswith(".py") for name in files), files
    assert "./main.py" in files


def test_image_settings_carry_no_secrets(image):
    config = json.loads(run("docker", "inspect", "--format", "{{json .Config}}", image))
    history = run(
        "docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image
    )

    secret = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE", re.IGNORECASE)
    assert not [env for env in config["Env"] if secret.search(env.split("=")[0])]
    assert not secret.search(history), "a build step names a secret"


def test_image_runs_as_fixed_non_root_uid_10001(image):
    config = json.loads(run("docker", "inspect", "--format", "{{json .Config}}", image))
    # No --user here: the image's own USER decides.
    uid = run("docker", "run", "--rm", "--network", "none", image, "id", "-u")
    gid = run("docker", "run", "--rm", "--network", "none", image, "id", "-g")

    assert config["User"] == "10001:10001"
    assert (uid, gid) == ("10001\n", "10001\n")


def test_without_read_only_the_app_user_could_rewrite_its_code(image):
    # What the hardened stack's read-only root takes away: COPY --chown makes
    # appuser the owner of the code it runs.
    touched = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "touch", "/app/main.py"],
        capture_output=True,
        timeout=60,
    )

    assert touched.returncode == 0


# --- The hardened stack, with the lesson's own commands -------------------------

LESSON = ROOT / "docs" / "module-1" / "extra-credit.md"
UP = (
    "docker compose -f docker-compose.yaml -f docker-compose.hardened.yaml"
    " up --build --wait"
)
TOUCH = "docker compose exec log-collector touch /app/main.py"
CAPS = "docker compose exec {} grep -E '^(CapEff|NoNewPrivs)' /proc/1/status"
DOWN = "docker compose down -v"
HADOLINT = "hadolint module-1/log-collector/Dockerfile"
BENCH = "python bench/run.py"

PROJECT = "sentinel-hardened-test"
COMPOSE_FILES = ("-f", "docker-compose.yaml", "-f", "docker-compose.hardened.yaml")
STACK_URL = "http://127.0.0.1:8000"


def compose(*args: str, timeout: float = 120) -> str:
    return run_compose(PROJECT, *args, files=COMPOSE_FILES, timeout=timeout)


def sh(command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a lesson command as a learner's shell would, on the finished module."""
    return subprocess.run(
        command,
        shell=True,
        cwd=ROOT,
        env={
            **os.environ,
            "MODULE_DIR": "solutions/module-1",
            # Overrides the compose file's `name:`, so no learner stack is touched.
            "COMPOSE_PROJECT_NAME": PROJECT,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_lesson_shows_these_commands():
    lesson = LESSON.read_text()

    for command in (UP, TOUCH, CAPS.format("log-collector"), DOWN, HADOLINT, BENCH):
        assert command in lesson, f"the lesson no longer shows: {command}"
    assert CAPS.format("redis-queue") in lesson


@pytest.fixture(scope="module")
def hardened_stack(docker) -> Iterator[None]:
    """The hardened stack, up once for this module's tests, then removed."""
    # The same lock as conftest's port_8000, held for the whole module.
    with open("/tmp/sentinel-8000.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        compose("down", "-v", "--remove-orphans")
        try:
            up = sh(UP, timeout=600)
            assert up.returncode == 0, up.stderr
            yield
        finally:
            down = sh(DOWN, timeout=180)
            assert down.returncode == 0, down.stderr


def test_lesson_check_commands_show_the_hardening(hardened_stack):
    touch = sh(TOUCH)
    caps = {
        service: sh(CAPS.format(service))
        for service in ("log-collector", "redis-queue")
    }

    assert touch.returncode != 0
    assert "Read-only file system" in touch.stderr
    for service, result in caps.items():
        assert result.returncode == 0, (service, result.stderr)
        assert result.stdout.split() == [
            "CapEff:",
            "0000000000000000",
            "NoNewPrivs:",
            "1",
        ], service


def test_hardened_stack_serves_and_keeps_the_queue(hardened_stack):
    accepted = httpx.post(STACK_URL + "/logs", json=ENTRY, timeout=10)
    health = httpx.get(STACK_URL + "/health", timeout=10)

    assert accepted.status_code == 202, accepted.text
    assert health.json() == {"status": "ok", "redis": "up"}
    # Redis writes its append-only file to the volume, the one writable place.
    compose("restart", "redis-queue")

    def entry_back() -> bool:
        try:
            return lrange() == [accepted.json()]
        except AssertionError:
            return False

    wait_until(entry_back, 30, "the entry to be in Redis after its restart")


def lrange() -> list[dict]:
    out = compose(
        "exec", "-T", "redis-queue", "redis-cli", "lrange", "logs_queue", "0", "-1"
    )
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("service", ["log-collector", "redis-queue"])
def test_hardened_container_is_read_only_without_capabilities(hardened_stack, service):
    container = compose("ps", "-q", service).strip()
    host = json.loads(
        run("docker", "inspect", "--format", "{{json .HostConfig}}", container)
    )
    status = run("docker", "exec", container, "cat", "/proc/1/status")
    write = subprocess.run(
        ["docker", "exec", container, "touch", "/probe"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    uid = run("docker", "exec", container, "id", "-u").strip()

    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    # What the kernel enforces on the service's own process, PID 1.
    assert re.search(r"^CapEff:\s+0+$", status, re.MULTILINE), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.MULTILINE), status
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    assert uid != "0"


# --- hadolint -------------------------------------------------------------------


def test_hadolint_passes_on_the_solution_dockerfile():
    need(
        shutil.which("hadolint", path=str(Path(sys.executable).parent)) is not None,
        "hadolint is not installed (requirements-dev.txt)",
    )

    # The lesson's command, on the finished Dockerfile.
    result = sh(HADOLINT.replace("module-1/", "solutions/module-1/"), timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_says_why():
    # Today there are none; this keeps a future one from arriving unexplained.
    files = [SOLUTION / "Dockerfile", STARTER / "Dockerfile", ROOT / ".hadolint.yaml"]
    unexplained = []
    for path in [file for file in files if file.exists()]:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            # `# hadolint ignore=DL3008` in a Dockerfile, or `- DL3008` listed
            # under `ignored:` in .hadolint.yaml.
            inline = "hadolint ignore=" in line
            listed = path.suffix == ".yaml" and re.match(r"\s*-\s*(DL|SC)\d+", line)
            if not (inline or listed):
                continue
            above = lines[number - 1].strip() if number else ""
            reason_above = above.startswith("#") and "hadolint" not in above
            reason_beside = bool(listed) and "#" in line
            if not (reason_above or reason_beside):
                unexplained.append(f"{path.relative_to(ROOT)}:{number + 1}")

    assert not unexplained, f"hadolint ignores without a reason: {unexplained}"
