"""Step 5: the Compose stack, read by `docker compose config`, then brought up.

The compose file is graded as Compose itself reads it (`config --format json`,
with MODULE_DIR pointing at the graded tree), so YAML anchors, defaults and
the short and long syntaxes all count alike. Then the checks bring the stack
up under a project name of their own, `sentinel-checks`, send a log entry
through 127.0.0.1:8000, read it back out of Redis, restart Redis and read it
again, and always take the stack down, volumes included.

Containers are found through Compose (`compose ps`, `compose exec`), never by
container names, which differ between Compose versions.
"""

import contextlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import pytest
from environment import (
    compose_finding,
    containers_publishing,
    port_is_free,
    program_finding,
)
from grading import learner_fail, skip_check
from processes import Finished

pytestmark = [
    pytest.mark.step(5),
    pytest.mark.timeout(docker.BUILD_SECONDS + docker.UP_SECONDS + 120),
]

LESSON = "module-1/step-5-compose.md"
COLLECTOR = "log-collector"
REDIS = "redis-queue"
NETWORK = "sentinel-net"
QUEUE = "logs_queue"
URL = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def compose(docker_ready, compose_file: Path, collector_dir: Path) -> docker.Compose:
    """`docker compose` on the graded compose file, building the graded tree."""
    found = compose_finding()
    if not found.ok:
        skip_check(
            f"Step 5 needs Compose v2 (`docker compose`). {found.problem}",
            fix=found.fix,
            lesson=found.lesson,
        )
    return docker.Compose(compose_file, collector_dir.parent)


@pytest.fixture(scope="module")
def config(compose: docker.Compose) -> tuple[Finished, dict | None]:
    return compose.config()


def shown(compose: docker.Compose) -> str:
    return f"MODULE_DIR={compose.module_dir} docker compose -f {compose.file} config"


def require_config(compose: docker.Compose, config) -> dict:
    """The compose file as Compose reads it; a failure when it cannot."""
    result, document = config
    if document is not None:
        return document
    learner_fail(
        "`docker compose config` cannot read the compose file.",
        sent=shown(compose),
        got=result.output.strip() or f"exit {result.returncode}",
        expected="the stack's full configuration",
        hint="Fix the line Compose names: YAML indents with spaces, and each "
        "service sits under `services:`.",
        lesson=f"{LESSON}#compose-services",
    )


def service(document: dict, name: str) -> dict:
    return (document.get("services") or {}).get(name) or {}


def test_compose_file_is_valid(compose: docker.Compose, config, request):
    """`docker compose config` reads the compose file without an error."""
    result, _ = config
    require_config(compose, config)
    warnings = [
        # time="..." level=warning msg="...": the msg is what a learner needs.
        (re.search(r'msg="(.*)"', line) or re.search(r"(.*)", line)).group(1)
        for line in result.stderr.splitlines()
        if "level=warning" in line or line.startswith("WARN")
    ]
    if warnings:
        # Not a failure: an obsolete `version:` key, say, changes nothing. The
        # report shows it beside the table.
        note = "Compose warns: " + "; ".join(warnings)
        request.node.user_properties.append(("note", note))


def test_compose_declares_log_collector_and_redis_queue(compose, config):
    """The stack has the two services log-collector and redis-queue."""
    document = require_config(compose, config)
    names = sorted(document.get("services") or {})
    missing = [name for name in (COLLECTOR, REDIS) if name not in names]
    if missing:
        learner_fail(
            f"The compose file has no service named {', '.join(missing)}.",
            sent=shown(compose),
            got="services: " + (", ".join(names) or "none"),
            expected=f"services {COLLECTOR} and {REDIS}",
            hint="Name the services exactly so: the collector reaches Redis by "
            "its service name.",
            lesson=f"{LESSON}#compose-services",
        )
    if "build" not in service(document, COLLECTOR):
        learner_fail(
            f"{COLLECTOR} has no `build:`, so Compose would not build your image.",
            sent=shown(compose),
            got=json.dumps(service(document, COLLECTOR))[:300],
            expected="build: with the context ${MODULE_DIR:-module-1}/log-collector",
            hint=f"Give {COLLECTOR} a build: section pointing at its folder.",
            lesson=f"{LESSON}#compose-services",
        )


def test_both_services_join_sentinel_net(compose, config):
    """log-collector and redis-queue both join the network sentinel-net."""
    document = require_config(compose, config)
    declared = sorted(document.get("networks") or {})
    for name in (COLLECTOR, REDIS):
        joined = sorted(service(document, name).get("networks") or {})
        if NETWORK not in joined:
            learner_fail(
                f"{name} does not join the network {NETWORK}.",
                sent=shown(compose),
                got=f"{name} joins: {', '.join(joined) or 'only the default network'}"
                f"; networks declared: {', '.join(declared) or 'none'}",
                expected=f"both services under networks: [{NETWORK}], and "
                f"{NETWORK} declared at the top level",
                hint=f"Spell the network {NETWORK} everywhere: under each service "
                "and in the top-level networks: section.",
                lesson=f"{LESSON}#compose-network",
            )


def test_collector_finds_redis_by_its_service_name(compose, config):
    """log-collector gets REDIS_HOST=redis-queue from the compose file."""
    document = require_config(compose, config)
    environment = service(document, COLLECTOR).get("environment") or {}
    host = environment.get("REDIS_HOST")
    port = environment.get("REDIS_PORT") or "6379"
    if host == REDIS and str(port) == "6379":
        return
    learner_fail(
        f"{COLLECTOR} is given REDIS_HOST={host} and REDIS_PORT={port}.",
        sent=shown(compose),
        got=json.dumps(environment),
        expected=f"REDIS_HOST={REDIS} (the service name), port 6379 or unset",
        hint="Inside the network, Redis is reached by its service name; localhost "
        "would be the collector's own container.",
        lesson="troubleshooting.md#redis-at-localhost",
    )


def test_collector_waits_for_a_healthy_redis(compose, config):
    """redis-queue has a healthcheck, and log-collector waits for it to pass."""
    document = require_config(compose, config)
    healthcheck = service(document, REDIS).get("healthcheck") or {}
    test = healthcheck.get("test") or []
    if not test or healthcheck.get("disable") or test[0] == "NONE":
        learner_fail(
            f"{REDIS} has no healthcheck, so Compose cannot tell when Redis is ready.",
            sent=shown(compose),
            got=json.dumps(healthcheck) if healthcheck else "no healthcheck",
            expected='healthcheck: test: ["CMD", "redis-cli", "ping"]',
            hint=f"Give {REDIS} a healthcheck that runs redis-cli ping.",
            lesson=f"{LESSON}#compose-healthcheck",
        )
    depends = service(document, COLLECTOR).get("depends_on") or {}
    condition = (depends.get(REDIS) or {}).get("condition")
    if condition != "service_healthy":
        learner_fail(
            f"{COLLECTOR} starts as soon as the {REDIS} container exists "
            f"(condition: {condition or 'none'}), before Redis answers.",
            sent=shown(compose),
            got=f"depends_on: {json.dumps(depends)}",
            expected=f"depends_on: {REDIS}: condition: service_healthy",
            hint="Use the long form of depends_on with condition: service_healthy.",
            lesson=f"{LESSON}#compose-healthcheck",
        )


def test_compose_keeps_the_image_user(compose, config):
    """The compose file does not switch log-collector back to root."""
    document = require_config(compose, config)
    user = str(service(document, COLLECTOR).get("user") or "")
    if user.split(":", 1)[0] in {"root", "0"}:
        learner_fail(
            f"{COLLECTOR} has `user: {user}`, which undoes the image's USER: the "
            "service runs as root again.",
            sent=shown(compose),
            got=f"user: {user}",
            expected="no user: key (the image's USER 10001:10001 applies)",
            hint=f"Remove `user:` from {COLLECTOR}; the Dockerfile already names "
            "the user.",
            lesson="module-1/step-4-image.md#image-user",
        )


# The running stack -----------------------------------------------------------


@dataclass
class Stack:
    """The checks' own run of the stack, and what happened bringing it up."""

    compose: docker.Compose
    up: Finished | None = None
    problem: str = ""  # why the stack is not up, in words
    hint: str = ""
    lesson: str = ""
    todo: str | None = None
    detail: str = ""  # output that shows the learner why
    posted: dict = field(default_factory=dict)  # the entry a check queued

    @property
    def running(self) -> bool:
        return not self.problem


def port_taken() -> tuple[str, str]:
    """Why host port 8000 is taken, and how to free it: a container or a program."""
    holders = containers_publishing(8000)
    if not holders:
        found = program_finding(8000)
        return found.problem, found.fix
    holder = holders[0]
    problem = f"Host port 8000 is taken by the container {holder.name}"
    if not holder.project:
        return problem + ".", f"Stop it (`docker stop {holder.name}`), then run again."
    return (
        f'{problem} (Compose project "{holder.project}").',
        f"Stop that stack (`docker compose -p {holder.project} down`), then run again.",
    )


def diagnose(stack: Stack) -> None:
    """Say why `up` failed: from the build, the containers' state, their logs."""
    compose = stack.compose
    up_output = stack.up.output if stack.up else ""
    logs = compose("logs", "--no-color", "--tail", "30", COLLECTOR, timeout=30).output
    containers = compose.containers()
    health = ""
    for container in containers:
        inspected = docker.inspect("container", container.get("ID", "")) or {}
        probes = (inspected.get("State", {}).get("Health") or {}).get("Log") or []
        if probes:
            health += f"{container.get('Service')} healthcheck: "
            health += probes[-1].get("Output", "").strip()[:300] + "\n"
    states = ", ".join(
        f"{c.get('Service')} {c.get('State')} {c.get('Health', '')}".strip()
        for c in containers
    )
    explanation = docker.explain_build(up_output, fallback=False)
    explanation = explanation or docker.explain(health, logs, up_output)
    pattern, redis_hint = docker.REDIS_AT_LOCALHOST
    if explanation is None and pattern.search(logs):
        explanation = redis_hint
    timed_out = stack.up is not None and stack.up.timed_out
    how = f"did not finish within {docker.UP_SECONDS} s" if timed_out else "failed"
    stack.problem = f"`docker compose up --build --wait` {how}" + (
        f" (containers: {states})." if states else "."
    )
    stack.detail = "compose said:\n" + docker.last_lines(up_output)
    if health:
        stack.detail += "\n  " + health.strip()
    stack.detail += f"\n  {COLLECTOR} logs:\n" + docker.last_lines(logs)
    if explanation:
        stack.hint, stack.lesson, stack.todo = (
            explanation.hint,
            explanation.lesson,
            explanation.todo,
        )
    else:
        stack.hint = (
            "Run `MODULE_DIR=... docker compose up --build --wait` yourself and read "
            "which service fails; `docker compose logs` shows why."
        )
        stack.lesson = f"{LESSON}#compose-up"


@pytest.fixture(scope="module")
def stack(compose: docker.Compose, config) -> Iterator[Stack]:
    """The stack, up for this step's checks and always taken down after."""
    running = Stack(compose)
    if config[1] is None:
        running.problem = "The compose file is not valid, so the stack cannot start."
        running.hint = "Fix what `docker compose config` reports first."
        running.lesson = f"{LESSON}#compose-services"
        yield running
        return
    # Leftovers of an interrupted run would hold the port and the volume.
    compose.down()
    try:
        if not port_is_free(8000):
            problem, fix = port_taken()
            running.problem = f"{problem} The stack publishes 8000."
            running.hint = f"{fix} The checks bring up a stack of their own."
            running.lesson = "troubleshooting.md#port-busy"
            yield running
            return
        running.up = compose(
            "up",
            "--build",
            "--wait",
            "--wait-timeout",
            str(docker.UP_SECONDS),
            timeout=docker.BUILD_SECONDS + docker.UP_SECONDS,
        )
        if not running.up.ok:
            diagnose(running)
        yield running
    finally:
        compose.down()


def require_stack(stack: Stack) -> None:
    """Fail a check that needs the running stack when it is not up."""
    if stack.running:
        return
    learner_fail(
        "The stack is not up, so this cannot be checked (the check "
        '"`docker compose up --build --wait` brings the stack up" shows why).',
        hint=stack.hint,
        lesson=stack.lesson,
        todo=stack.todo,
    )


def test_stack_comes_up_with_build_and_wait(stack: Stack):
    """`docker compose up --build --wait` brings the stack up healthy."""
    if stack.running:
        return
    learner_fail(
        stack.problem,
        sent=f"MODULE_DIR={stack.compose.module_dir} docker compose -f "
        f"{stack.compose.file} up --build --wait",
        got=stack.detail or None,
        hint=stack.hint,
        lesson=stack.lesson,
        todo=stack.todo,
    )


def queued_entries(stack: Stack) -> tuple[Finished, list[str]]:
    """What `redis-cli lrange logs_queue 0 -1` prints inside redis-queue."""
    result = stack.compose(
        "exec", "-T", REDIS, "redis-cli", "lrange", QUEUE, "0", "-1", timeout=30
    )
    return result, [line for line in result.stdout.splitlines() if line.strip()]


def holds(entries: list[str], entry_id: str) -> bool:
    for line in entries:
        try:
            if json.loads(line).get("id") == entry_id:
                return True
        except (ValueError, AttributeError):
            continue
    return False


def post_entry(stack: Stack) -> dict:
    """POST one log entry through the published port, once per run."""
    if stack.posted:
        return stack.posted
    body = {
        "service_name": "sentinel-checks",
        "level": "INFO",
        "message": f"step 5 check {uuid.uuid4().hex}",
    }
    sent = f"POST {URL}/logs {json.dumps(body)}"
    try:
        response = httpx.post(f"{URL}/logs", json=body, timeout=10)
    except httpx.HTTPError as exc:
        learner_fail(
            "Nothing answered on 127.0.0.1:8000 although the stack is up.",
            sent=sent,
            got=f"{type(exc).__name__}: {exc}",
            expected="202 from the collector",
            hint=f'Publish the collector\'s port: ports: ["127.0.0.1:8000:8000"] '
            f"under {COLLECTOR}.",
            lesson=f"{LESSON}#compose-services",
        )
    entry = {}
    with contextlib.suppress(ValueError):
        entry = response.json()
    if response.status_code != 202 or not isinstance(entry, dict) or "id" not in entry:
        learner_fail(
            "The collector in the stack did not queue the entry.",
            sent=sent,
            got=f"{response.status_code} {response.text[:300]}",
            expected="202 with the queued entry, its id included",
            hint="`pytest checks --step 2` checks the collector itself; if that "
            f"passes, check {COLLECTOR}'s REDIS_HOST in the compose file.",
            lesson=f"{LESSON}#compose-up",
        )
    stack.posted = {"entry": entry, "sent": sent}
    return stack.posted


def test_posted_entry_lands_in_logs_queue(stack: Stack):
    """An entry POSTed to 127.0.0.1:8000 is in logs_queue inside redis-queue."""
    require_stack(stack)
    posted = post_entry(stack)
    entry_id = posted["entry"]["id"]
    result, entries = queued_entries(stack)
    if holds(entries, entry_id):
        return
    learner_fail(
        f"The entry the collector accepted (id {entry_id}) is not in {QUEUE}.",
        sent=posted["sent"]
        + f"\n            then docker compose exec -T {REDIS} redis-cli lrange "
        f"{QUEUE} 0 -1",
        got=result.output.strip()[:500] or "an empty list",
        expected=f"a JSON entry with id {entry_id}",
        hint="The collector must push onto the Redis of the stack (REDIS_HOST="
        f"{REDIS}) and the list {QUEUE}.",
        lesson=f"{LESSON}#compose-up",
    )


def test_queued_entry_survives_a_redis_restart(stack: Stack):
    """After `docker compose restart redis-queue`, the queued entry is still there."""
    require_stack(stack)
    posted = post_entry(stack)
    entry_id = posted["entry"]["id"]
    # Redis with appendonly writes a second at a time; give it that second.
    time.sleep(1.1)
    restart = stack.compose("restart", REDIS, timeout=90)
    ready = docker.wait_for(
        lambda: (
            stack.compose(
                "exec", "-T", REDIS, "redis-cli", "ping", timeout=10
            ).stdout.strip()
            == "PONG"
        ),
        30,
        interval=0.5,
    )
    result, entries = queued_entries(stack)
    if restart.ok and ready and holds(entries, entry_id):
        return
    learner_fail(
        f"After a restart of {REDIS}, the entry queued before it "
        f"(id {entry_id}) is gone.",
        sent=f"docker compose restart {REDIS}, then redis-cli lrange {QUEUE} 0 -1",
        got=(restart.output.strip() if not restart.ok else "")
        + (" Redis did not answer PING within 30 s." if not ready else "")
        + (result.output.strip()[:300] or " an empty list"),
        expected=f"the entry with id {entry_id}, still queued",
        hint=f"Run Redis with --appendonly yes and keep /data on a named volume "
        f"(volumes: [redis-data:/data]) so {REDIS} writes the queue to disk.",
        lesson=f"{LESSON}#compose-persistence",
    )


def test_collector_runs_as_non_root_in_the_stack(stack: Stack):
    """Inside the stack, log-collector's process has a UID other than 0."""
    require_stack(stack)
    uid = stack.compose("exec", "-T", COLLECTOR, "id", "-u", timeout=30)
    if uid.ok and uid.stdout.strip().isdigit() and int(uid.stdout) != 0:
        return
    learner_fail(
        f"{COLLECTOR} runs as root in the stack.",
        sent=f"docker compose exec -T {COLLECTOR} id -u",
        got=uid.output.strip() or f"exit {uid.returncode}",
        expected="a number other than 0",
        hint="Set USER in the Dockerfile (step 3), and no `user: root` in the "
        "compose file.",
        lesson="module-1/step-4-image.md#image-user",
    )
