"""The grader's steps 3-5 judge Dockerfiles, images and stacks for the right reasons.

Each test runs the grader as a learner does, in a subprocess
(`pytest checks --target TREE --step N`), and reads the results file it writes.
The solution must pass with nothing skipped; the starter must fail each step
for the reason the lessons expect; each broken copy of the solution must fail
the one check its mistake is about, with that check's hint; copies that are
correct in another way must pass.

A copy is the solution's tree and the root compose file in tmp_path, changed
by one small textual patch that must apply. Static mistakes (steps 3, and the
compose file in step 5) are graded without building anything; a mistake that
only shows at run time is also graded by building and running it, which
mostly hits Docker's layer cache of the solution's image.
"""

import importlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, need
from grader_runs import run_grader

# The grader's step 5 checks that read the compose file without running it.
COMPOSE_STATIC = [
    "test_compose_file_is_valid",
    "test_compose_declares_log_collector_and_redis_queue",
    "test_both_services_join_sentinel_net",
    "test_collector_finds_redis_by_its_service_name",
    "test_collector_waits_for_a_healthy_redis",
    "test_compose_keeps_the_image_user",
]
STEP3 = "module-1/step-3-dockerfile.md"


@dataclass
class Graded:
    """One grader run: its results by check name, and what it printed."""

    checks: dict[str, dict]
    output: str
    returncode: int

    def outcome(self, check: str) -> str:
        assert check in self.checks, f"{check} did not run:\n{self.output}"
        return self.checks[check]["outcome"]

    def failed(self) -> list[str]:
        return sorted(n for n, c in self.checks.items() if c["outcome"] == "failed")

    def not_passed(self) -> dict[str, str]:
        return {
            n: c["outcome"] for n, c in self.checks.items() if c["outcome"] != "passed"
        }

    def assert_fails(self, check: str, lesson: str, *hint_words: str) -> None:
        """`check` failed, pointing at `lesson`, with a hint that says `hint_words`."""
        result = self.checks.get(check)
        assert result is not None, f"{check} did not run:\n{self.output}"
        assert result["outcome"] == "failed", f"{check} {result}:\n{self.output}"
        assert result["lesson"] == lesson, result
        for word in hint_words:
            assert word in result["hint"], (word, result["hint"])


def grade(
    target: Path, *steps: int, only: list[str] | None = None, extra: tuple = ()
) -> Graded:
    """Run the grader on `target` for `steps`, as a learner would.

    The results go to a file of this run's own, never the repository's
    .sentinel/results.json, which is the learner's progress.
    """
    scratch = Path(tempfile.mkdtemp(prefix="sentinel-grade-"))
    if only:
        extra = (*extra, "-k", " or ".join(only))
    try:
        run = run_grader(target, *steps, tmp_path=scratch, extra=extra, timeout=900)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert run.results, f"the grader wrote no results:\n{run.output}"
    assert run.leftovers == [], f"the grader left these running: {run.leftovers}"
    checks = {entry["check"]: entry for entry in run.entries()}
    return Graded(checks, run.output, run.returncode)


def hadolint_available() -> bool:
    beside = Path(sys.executable).parent / "hadolint"
    return beside.is_file() or shutil.which("hadolint") is not None


@pytest.fixture
def lint() -> None:
    need(hadolint_available(), "hadolint is not installed (bootstrap installs it)")


def checks_images() -> set[str]:
    listing = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {
        name
        for name in listing.stdout.split()
        if name.startswith("sentinel-checks/log-collector:")
    }


@pytest.fixture
def images(docker) -> Iterator[None]:
    """Docker; the grader's image tags of copies in tmp_path are removed after.

    The tags of this repository's own trees stay: they are what a learner's
    next run of the checks rebuilds from cache.
    """
    own = {
        load_checks_module("docker").image_tag(tree / "module-1" / "log-collector")
        for tree in (ROOT, ROOT / "solutions")
    }
    before = checks_images()
    yield
    added = sorted(checks_images() - before - own)
    if added:
        subprocess.run(["docker", "rmi", *added], capture_output=True, timeout=120)


@dataclass
class Copy:
    """A copy of the solution (tree/module-1/log-collector + tree's compose file)."""

    root: Path

    @property
    def collector(self) -> Path:
        return self.root / "module-1" / "log-collector"

    @property
    def dockerfile(self) -> Path:
        return self.collector / "Dockerfile"

    @property
    def compose(self) -> Path:
        return self.root / "docker-compose.yaml"

    def patch(self, path: Path, old: str, new: str, count: int = 1) -> None:
        """Replace `old` by `new` in `path`; fail if it is not there `count` times."""
        text = path.read_text()
        assert text.count(old) == count, f"patch does not apply to {path}: {old!r}"
        path.write_text(text.replace(old, new))


@pytest.fixture
def solution_copy(tmp_path: Path) -> Copy:
    copy = Copy(tmp_path / "tree")
    shutil.copytree(
        ROOT / "solutions" / "module-1" / "log-collector",
        copy.collector,
        ignore=shutil.ignore_patterns("__pycache__", ".venv"),
    )
    shutil.copy(ROOT / "docker-compose.yaml", copy.compose)
    return copy


# The solution and the starter -------------------------------------------------


def test_solution_passes_steps_3_to_5(lint, images, port_8000):
    graded = grade(ROOT / "solutions", 3, 4, 5)

    assert graded.not_passed() == {}, graded.output
    steps = {c["step"] for c in graded.checks.values()}
    assert steps == {3, 4, 5}
    assert len(graded.checks) >= 20
    assert graded.returncode == 0


def test_starter_fails_each_step_for_its_reason(lint, images, port_8000):
    graded = grade(ROOT / "module-1", 3, 4, 5)

    # Step 3: the Dockerfile is comments only, and so is .dockerignore.
    graded.assert_fails(
        "test_dockerfile_has_a_builder_and_a_runtime_stage",
        f"{STEP3}#todo-3-1",
        "TODO 3.1",
    )
    graded.assert_fails(
        "test_dockerignore_keeps_venv_git_and_caches_out",
        f"{STEP3}#todo-3-6",
        ".venv/",
    )
    assert "has no instructions yet, only comments" in graded.output
    # Step 4: it cannot build, and every image check says so.
    graded.assert_fails("test_image_builds", f"{STEP3}#todo-3-1", "no instructions yet")
    graded.assert_fails(
        "test_container_answers_on_port_8000", f"{STEP3}#todo-3-1", "step 3"
    )
    # Step 5: the root compose file is complete; the stack fails on the build.
    for check in COMPOSE_STATIC:
        assert graded.outcome(check) == "passed", graded.output
    graded.assert_fails(
        "test_stack_comes_up_with_build_and_wait",
        f"{STEP3}#todo-3-1",
        "no instructions yet",
    )
    assert "skipped" not in graded.not_passed().values()


def test_image_over_the_size_limit_lists_its_largest_layers(lint, images):
    graded = grade(ROOT / "solutions", 4, extra=("--max-image-mb", "100"))

    graded.assert_fails(
        "test_image_is_small_enough",
        "troubleshooting.md#image-too-large",
        "slim",
    )
    assert "the limit is 100 MB" in graded.output
    assert "(the base image)" in graded.output
    assert "COPY ... to /opt/venv" in graded.output
    assert graded.failed() == ["test_image_is_small_enough"]


def hold_port_8000() -> socket.socket | None:
    """Listen on 127.0.0.1:8000; None if something else already does.

    We hold the lock on 8000, but a program that does not take it (a learner's
    uvicorn, another stack) may still be there; it makes the port just as busy.
    """
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("127.0.0.1", 8000))
    except OSError:
        holder.close()
        return None
    holder.listen()
    return holder


def test_busy_port_8000_fails_with_the_port_busy_hint(docker, port_8000):
    # Any program on 8000 will do; the grader must say so, not fail obscurely.
    holder = hold_port_8000()
    try:
        graded = grade(ROOT / "solutions", 5)
    finally:
        if holder is not None:
            holder.close()

    graded.assert_fails(
        "test_stack_comes_up_with_build_and_wait", "troubleshooting.md#port-busy"
    )
    assert "port 8000 is taken by " in graded.output.lower()
    if holder is not None:
        # A program, not a container: the fix names it, and no Compose command.
        hint = graded.checks["test_stack_comes_up_with_build_and_wait"]["hint"]
        assert f"kill {os.getpid()}" in hint
        assert "docker compose" not in hint
        assert f"taken by another program: {os.getpid()} " in graded.output
    for check in COMPOSE_STATIC:
        assert graded.outcome(check) == "passed"


# Broken copies of the solution: each fails its intended check -----------------


def test_single_stage_dockerfile_fails_the_stages_check(solution_copy, lint):
    dockerfile = solution_copy.dockerfile
    text = dockerfile.read_text()
    builder = text[text.index("# Step 3.1") : text.index("# Step 3.2")]
    solution_copy.patch(dockerfile, builder, "")
    solution_copy.patch(
        dockerfile,
        "COPY --from=builder /opt/venv /opt/venv\n",
        "COPY requirements.txt /tmp/requirements.txt\n"
        "RUN python -m venv /opt/venv \\\n"
        "    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt\n",
    )

    graded = grade(solution_copy.root, 3)

    graded.assert_fails(
        "test_dockerfile_has_a_builder_and_a_runtime_stage",
        f"{STEP3}#todo-3-1",
        "COPY --from=builder",
    )
    assert "The Dockerfile has one stage (FROM at line" in graded.output
    assert graded.failed() == ["test_dockerfile_has_a_builder_and_a_runtime_stage"]


def test_missing_user_fails_the_dockerfile_and_image_checks(
    solution_copy, lint, images
):
    solution_copy.patch(solution_copy.dockerfile, "USER 10001:10001\n", "")

    graded = grade(solution_copy.root, 3, 4)

    graded.assert_fails(
        "test_runtime_stage_runs_as_a_non_root_user", f"{STEP3}#todo-3-5", "USER"
    )
    # The built image proves it: no Config.User, and `id -u` is 0 inside.
    graded.assert_fails(
        "test_image_runs_as_a_non_root_user",
        "module-1/step-4-image.md#image-user",
        "USER 10001:10001",
    )
    assert graded.failed() == [
        "test_image_runs_as_a_non_root_user",
        "test_runtime_stage_runs_as_a_non_root_user",
    ]


def test_user_root_in_compose_fails_the_compose_user_checks(
    solution_copy, lint, images, port_8000
):
    solution_copy.patch(
        solution_copy.compose,
        '      REDIS_PORT: "6379"\n',
        '      REDIS_PORT: "6379"\n    user: root\n',
    )

    graded = grade(solution_copy.root, 5)

    graded.assert_fails(
        "test_compose_keeps_the_image_user",
        "module-1/step-4-image.md#image-user",
        "user:",
    )
    # And the running stack shows it: the collector's process is UID 0.
    graded.assert_fails(
        "test_collector_runs_as_non_root_in_the_stack",
        "module-1/step-4-image.md#image-user",
        "user: root",
    )
    assert graded.failed() == [
        "test_collector_runs_as_non_root_in_the_stack",
        "test_compose_keeps_the_image_user",
    ]


def test_curl_healthcheck_on_slim_fails_the_healthcheck_check(solution_copy, lint):
    text = solution_copy.dockerfile.read_text()
    start = text.index('    CMD ["python", "-c", "import urllib')
    end = text.index("\n", start)
    solution_copy.patch(
        solution_copy.dockerfile,
        text[start:end],
        '    CMD ["curl", "--fail", "http://127.0.0.1:8000/health"]',
    )

    graded = grade(solution_copy.root, 3)

    graded.assert_fails(
        "test_healthcheck_works_without_curl",
        "troubleshooting.md#curl-missing",
        "urllib",
    )
    assert "calls curl, which python:3.12-slim-bookworm does not have" in (
        graded.output
    )
    assert graded.failed() == ["test_healthcheck_works_without_curl"]


def test_big_venv_without_dockerignore_fails_the_context_checks(
    solution_copy, lint, images
):
    (solution_copy.collector / ".dockerignore").unlink()
    venv = solution_copy.collector / ".venv"
    (venv / "lib").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    # 40 MB that Docker must read and send; sparse, so it costs no disk.
    with (venv / "lib" / "big.bin").open("wb") as big:
        big.truncate(40_000_000)

    graded = grade(solution_copy.root, 3, 4)

    graded.assert_fails(
        "test_dockerignore_keeps_venv_git_and_caches_out",
        "troubleshooting.md#dockerignore",
        ".dockerignore",
    )
    assert ".venv/ (a virtual environment, 40.0 MB)" in graded.output
    # Docker's own figure: what `docker build` printed it sent.
    graded.assert_fails(
        "test_build_context_leaves_big_folders_out",
        "troubleshooting.md#dockerignore",
        ".venv/",
    )
    assert "`docker build` sent 40.0 MB of build context" in graded.output
    assert graded.failed() == [
        "test_build_context_leaves_big_folders_out",
        "test_dockerignore_keeps_venv_git_and_caches_out",
    ]


def test_plain_depends_on_without_healthcheck_fails_the_healthy_check(
    solution_copy, docker
):
    compose = solution_copy.compose
    text = compose.read_text()
    healthcheck = text[text.index("    healthcheck:") : text.index("    # No `ports:`")]
    solution_copy.patch(compose, healthcheck, "")
    solution_copy.patch(
        compose,
        "    depends_on:\n      redis-queue:\n",
        "    depends_on:\n      - redis-queue\n",
    )
    solution_copy.patch(
        compose,
        "        condition: service_healthy\n",
        "",
    )

    graded = grade(solution_copy.root, 5, only=COMPOSE_STATIC)

    graded.assert_fails(
        "test_collector_waits_for_a_healthy_redis",
        "module-1/step-5-compose.md#compose-healthcheck",
        "redis-cli ping",
    )
    assert graded.failed() == ["test_collector_waits_for_a_healthy_redis"]


def test_wrong_network_name_fails_the_network_check(solution_copy, docker):
    compose = solution_copy.compose
    solution_copy.patch(compose, "  - sentinel-net\n", "  - sentinel-network\n", 2)
    solution_copy.patch(compose, "  sentinel-net:\n", "  sentinel-network:\n")

    graded = grade(solution_copy.root, 5, only=COMPOSE_STATIC)

    graded.assert_fails(
        "test_both_services_join_sentinel_net",
        "module-1/step-5-compose.md#compose-network",
        "sentinel-net",
    )
    assert "networks declared: sentinel-network" in graded.output
    assert graded.failed() == ["test_both_services_join_sentinel_net"]


STATIC_MISTAKES = {
    "shell-form CMD": (
        'CMD ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8000"]',
        "CMD uvicorn main:app --host 0.0.0.0 --port 8000",
        "test_command_runs_uvicorn_in_exec_form_on_0_0_0_0_port_8000",
        f"{STEP3}#todo-3-5",
        "JSON array",
    ),
    "gcc in the runtime stage": (
        "WORKDIR /app\n",
        "RUN apt-get update \\\n"
        "    && apt-get install -y --no-install-recommends gcc=4:12.2.0-3 \\\n"
        "    && rm -rf /var/lib/apt/lists/*\n"
        "WORKDIR /app\n",
        "test_runtime_stage_has_no_compilers_or_pip_cache",
        f"{STEP3}#todo-3-2",
        "builder stage",
    ),
    "pip cache in the runtime stage": (
        "WORKDIR /app\n",
        "RUN pip install fastapi==0.165.0\nWORKDIR /app\n",
        "test_runtime_stage_has_no_compilers_or_pip_cache",
        f"{STEP3}#todo-3-2",
        "--no-cache-dir",
    ),
    "USER root": (
        "USER 10001:10001\n",
        "USER root\n",
        "test_runtime_stage_runs_as_a_non_root_user",
        f"{STEP3}#todo-3-5",
        "appuser",
    ),
    "an ignore with no reason": (
        "EXPOSE 8000\n",
        "# hadolint ignore=DL3059\nEXPOSE 8000\n",
        "test_dockerfile_passes_hadolint",
        f"{STEP3}#check-your-work",
        "line above",
    ),
}


@pytest.mark.parametrize("mistake", sorted(STATIC_MISTAKES))
def test_other_dockerfile_mistakes_fail_their_check(solution_copy, lint, mistake):
    old, new, check, lesson, hint_word = STATIC_MISTAKES[mistake]
    solution_copy.patch(solution_copy.dockerfile, old, new)

    graded = grade(solution_copy.root, 3)

    graded.assert_fails(check, lesson, hint_word)


# Mistakes that only show when the container runs: the log is translated -----


def test_uvicorn_on_127_is_caught_in_the_file_and_in_the_container(
    solution_copy, lint, images
):
    solution_copy.patch(
        solution_copy.dockerfile, '"--host", "0.0.0.0"', '"--host", "127.0.0.1"'
    )

    graded = grade(solution_copy.root, 3, 4)

    graded.assert_fails(
        "test_command_runs_uvicorn_in_exec_form_on_0_0_0_0_port_8000",
        "troubleshooting.md#uvicorn-on-127",
        "0.0.0.0",
    )
    # The container runs and its log says where uvicorn listens.
    graded.assert_fails(
        "test_container_answers_on_port_8000",
        "troubleshooting.md#uvicorn-on-127",
        "0.0.0.0",
    )
    assert "Uvicorn running on http://127.0.0.1:8000" in graded.output
    assert len(graded.failed()) == 2


def test_venv_not_on_path_is_caught_in_the_container(solution_copy, lint, images):
    solution_copy.patch(
        solution_copy.dockerfile, ' \\\n    PATH="/opt/venv/bin:$PATH"\n', "\n"
    )

    graded = grade(solution_copy.root, 3, 4)

    # Nothing in the file is wrong by itself; the container cannot start.
    graded.assert_fails(
        "test_container_answers_on_port_8000",
        "troubleshooting.md#uvicorn-not-found",
        "PATH",
    )
    assert 'exec: "uvicorn": executable file not found' in graded.output
    assert graded.failed() == ["test_container_answers_on_port_8000"]


def test_root_owned_unreadable_code_is_caught_in_the_container(
    solution_copy, lint, images
):
    # A learner whose umask is 077 has files only they can read; copied
    # without --chown, they belong to root in the image, mode 600.
    solution_copy.patch(
        solution_copy.dockerfile, "COPY --chown=appuser:appuser *.py ./", "COPY *.py ./"
    )
    for code in solution_copy.collector.glob("*.py"):
        code.chmod(0o600)

    graded = grade(solution_copy.root, 3, 4)

    graded.assert_fails(
        "test_container_answers_on_port_8000",
        "troubleshooting.md#permission-denied",
        "--chown",
    )
    assert "Permission denied" in graded.output
    assert graded.failed() == ["test_container_answers_on_port_8000"]


def test_port_8000_taken_inside_the_container_is_told_apart(solution_copy, images):
    # The learner's own code listens on 8000 when main.py is imported, so the
    # CMD's uvicorn cannot: a clash inside the container, not on the host.
    solution_copy.patch(
        solution_copy.collector / "main.py",
        "import logging\n",
        "import logging\nimport socket\n\n"
        "_server = socket.create_server(('0.0.0.0', 8000))\n",
    )

    graded = grade(solution_copy.root, 4, only=["test_container_answers_on_port_8000"])

    graded.assert_fails(
        "test_container_answers_on_port_8000",
        "module-1/step-3-dockerfile.md#todo-3-5",
        "Inside the container",
    )
    assert "error while attempting to bind on address" in graded.output
    assert "Host port 8000" not in graded.output


# Correct, but not the solution's way: these pass ------------------------------


def test_obsolete_version_key_is_no_failure(solution_copy, docker):
    compose = solution_copy.compose
    compose.write_text('version: "3.8"\n' + compose.read_text())

    graded = grade(solution_copy.root, 5, only=COMPOSE_STATIC)

    assert graded.not_passed() == {}, graded.output
    assert len(graded.checks) == len(COMPOSE_STATIC)


def test_python_m_uvicorn_command_passes(solution_copy, lint, images):
    solution_copy.patch(
        solution_copy.dockerfile,
        'CMD ["uvicorn", "main:app",',
        'CMD ["python", "-m", "uvicorn", "main:app",',
    )

    graded = grade(solution_copy.root, 3, 4)

    assert graded.not_passed() == {}, graded.output


def test_alpine_base_passes(solution_copy, lint, images):
    # The CI stand-in tagged python:3.12-alpine is Debian inside, so the
    # solution's useradd still works; the checks judge the tag, and the image.
    solution_copy.patch(
        solution_copy.dockerfile,
        "FROM python:3.12-slim-bookworm",
        "FROM python:3.12-alpine",
        count=2,
    )

    graded = grade(solution_copy.root, 3, 4)

    assert graded.not_passed() == {}, graded.output


def test_prefix_install_copied_to_usr_local_passes_step_3(solution_copy, lint):
    # Step 3 only: on the CI stand-in (Debian's python3), pip lays out a
    # --prefix install as PREFIX/local/lib/python3.11/dist-packages, so a copy
    # to /usr/local is not importable there; on python:3.12-slim it is.
    dockerfile = solution_copy.dockerfile
    text = dockerfile.read_text()
    solution_copy.patch(
        dockerfile,
        text[text.index("# Step 3.1") : text.index("# Step 3.2")],
        "FROM python:3.12-slim-bookworm AS builder\n"
        "COPY requirements.txt /tmp/requirements.txt\n"
        "RUN pip install --no-cache-dir --prefix=/install -r /tmp/requirements.txt\n",
    )
    solution_copy.patch(
        dockerfile,
        "COPY --from=builder /opt/venv /opt/venv",
        "COPY --from=builder /install /usr/local",
    )
    solution_copy.patch(
        dockerfile,
        ' \\\n    PATH="/opt/venv/bin:$PATH"\n',
        "\n",
    )

    graded = grade(solution_copy.root, 3)

    assert graded.not_passed() == {}, graded.output
    assert "/opt/venv" not in dockerfile.read_text()


# The grader reads Dockerfiles and .dockerignore as Docker does ----------------


def load_checks_module(name: str):
    """Import a module of checks/ (they import each other by their plain names)."""
    checks = str(ROOT / "checks")
    if checks not in sys.path:
        sys.path.insert(0, checks)
    return importlib.import_module(name)


def docker_json(*args: str) -> list | dict:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)


TRICKY_DOCKERFILE = """\
# escape=`
ARG BASE=python:3.12-slim-bookworm
FROM ${BASE} AS base
ENV APP_HOME=/srv/app
USER nobody
CMD ["python", "-c", "print('base')"]

FROM base AS runtime
ARG RUN_AS=10001
# A comment inside a continued instruction is dropped, as Docker does.
ENTRYPOINT ["python", `
# dropped
    "-m", `
    "uvicorn"]
USER ${RUN_AS}:${RUN_AS}
HEALTHCHECK --interval=30s CMD ["python", "-c", "print(1)"]
"""


def test_dockerfile_reading_matches_what_docker_builds(tmp_path, docker):
    dockerfile = load_checks_module("dockerfile")
    (tmp_path / "Dockerfile").write_text(TRICKY_DOCKERFILE)
    tag = "sentinel-checks/parser-test:latest"
    subprocess.run(
        ["docker", "build", "--tag", tag, str(tmp_path)],
        capture_output=True,
        timeout=300,
        check=True,
    )
    try:
        config = docker_json("image", "inspect", tag)[0]["Config"]
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True, timeout=60)

    final = dockerfile.parse(tmp_path / "Dockerfile").final
    entrypoint, cmd = final.command()

    assert final.root_image() == "python:3.12-slim-bookworm"
    assert final.last("USER").args == config["User"] == "10001:10001"
    assert dockerfile.command_words(entrypoint) == config["Entrypoint"]
    # An ENTRYPOINT clears the CMD inherited from the base stage.
    assert cmd is None
    assert config["Cmd"] is None
    assert final.environment()["APP_HOME"] == "/srv/app"
    healthcheck = final.last("HEALTHCHECK")
    assert ["CMD", *healthcheck.exec_form] == config["Healthcheck"]["Test"]


def test_build_context_matches_what_docker_sends(tmp_path, docker):
    dockerfile = load_checks_module("dockerfile")
    files = [
        "main.py",
        "README.md",
        "notes.md",
        "docs/guide.md",
        ".venv/pyvenv.cfg",
        ".venv/lib/site.py",
        "__pycache__/main.cpython-312.pyc",
        "pkg/__pycache__/mod.cpython-312.pyc",
        "pkg/mod.py",
        "data/keep.txt",
        "data/drop.txt",
        ".git/HEAD",
    ]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / ".dockerignore").write_text(
        ".venv/\n**/__pycache__\n*.md\n!README.md\n/data/*\n!data/keep.txt\n.git\n"
    )
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY . /context/\n")
    tag = "sentinel-checks/context-test:latest"
    subprocess.run(
        ["docker", "build", "--tag", tag, str(tmp_path)],
        capture_output=True,
        timeout=120,
        check=True,
    )
    # The image holds exactly what Docker was sent: export it and list it.
    created = subprocess.run(
        ["docker", "create", tag, "none"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    try:
        exported = subprocess.run(
            ["docker", "export", created], capture_output=True, timeout=60, check=True
        ).stdout
    finally:
        subprocess.run(["docker", "rm", created], capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", tag], capture_output=True, timeout=60)
    with tarfile.open(fileobj=io.BytesIO(exported)) as archive:
        sent = {
            member.name.removeprefix("context/")
            for member in archive.getmembers()
            if member.isfile() and member.name.startswith("context/")
        }

    patterns = dockerfile.read_dockerignore(tmp_path / ".dockerignore")
    kept = {name for name in files if not dockerfile.is_ignored(name, patterns)}

    assert sent - {"Dockerfile", ".dockerignore"} == kept
    # `*.md` is only the top folder's, as with Docker; `**/` reaches further.
    assert kept == {
        "main.py",
        "README.md",
        "docs/guide.md",
        "pkg/mod.py",
        "data/keep.txt",
    }
