"""The README's quick start, run as written, against the finished module.

Each command below is the README's own text (the first test proves it), run
in a shell from the repository root, so a README that drifts from what works
fails here.
"""

import json
import os
import re
import subprocess
from collections.abc import Iterator

import pytest
from conftest import ROOT

UP = "MODULE_DIR=solutions/module-1 docker compose up --build --wait"
CURL = (
    'curl -X POST http://localhost:8000/logs -H "Content-Type: application/json"'
    ' -d \'{"service_name": "payment-service", "level": "ERROR",'
    ' "message": "Transaction failed"}\''
)
LRANGE = "docker compose exec redis-queue redis-cli lrange logs_queue 0 -1"
DOWN = "docker compose down -v"
# A project name of its own, so the test never touches a learner's stack.
PROJECT = "sentinel-readme-test"


def sh(command: str, timeout: float = 120) -> str:
    """Run one README command as a learner's shell would; return its output."""
    result = subprocess.run(
        command,
        shell=True,
        cwd=ROOT,
        env={**os.environ, "COMPOSE_PROJECT_NAME": PROJECT},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`{command}` exited {result.returncode}:\n{result.stdout}{result.stderr}",
            pytrace=False,
        )
    return result.stdout


@pytest.fixture
def stack(docker, port_8000) -> Iterator[None]:
    """The solution's stack, up for one test and then removed with its volume."""
    sh(UP, timeout=600)
    try:
        yield
    finally:
        sh(DOWN)


def test_readme_shows_these_commands():
    readme = (ROOT / "README.md").read_text()

    for command in (UP, CURL, LRANGE, DOWN):
        assert command in readme, f"README.md no longer shows: {command}"


def test_readme_entry_reaches_redis_and_survives_its_restart(stack):
    accepted = json.loads(sh(CURL))
    queued = [json.loads(line) for line in sh(LRANGE).splitlines()]

    assert accepted["service_name"] == "payment-service"
    assert queued == [accepted]

    # A restart keeps the same container; recreating it proves the volume does
    # the keeping, and the append-only file is how Redis writes it there.
    sh("docker compose restart redis-queue")
    assert [json.loads(line) for line in sh(LRANGE).splitlines()] == [accepted]
    sh("docker compose up --wait --force-recreate redis-queue")
    assert [json.loads(line) for line in sh(LRANGE).splitlines()] == [accepted]
    appendonly = sh("docker compose exec redis-queue redis-cli config get appendonly")
    assert appendonly.split() == ["appendonly", "yes"]


def test_collector_container_runs_as_a_non_root_uid(stack):
    uid = sh("docker compose exec log-collector id -u").strip()
    user = sh(
        "docker compose ps --format '{{.Name}}' log-collector"
        " | xargs docker inspect --format '{{.Config.User}}'"
    ).strip()

    assert re.fullmatch(r"\d+", uid), uid
    assert int(uid) != 0
    assert user not in {"", "root", "0"}
