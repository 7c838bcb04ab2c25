"""Step 0, the environment doctor: each problem is found, and named with its fix.

The problems are made for real where this machine allows it (a Docker host
that does not answer, a user without access to the socket, a Docker config
without the Compose plugin, a program on port 8000, files with CRLF endings);
the readers of tool output are also fed the exact text the real tools print.
"""

import os
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import need
from grader_runs import ROOT, SOLUTIONS, run_grader, variant

sys.path.insert(0, str(ROOT / "checks"))

from environment import (  # noqa: E402  (the checks folder is not a package)
    classify_docker_error,
    compose_without_plugin,
    machine_note,
    parse_compose_version,
)

NOT_RUNNING = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
    "Is the docker daemon running?"
)
DESKTOP_NOT_RUNNING = (
    "error during connect: this error may indicate that the docker daemon is not "
    "running: Get "
    '"http://%2F%2F.%2Fpipe%2Fdocker_engine/v1.24/version": open '
    "//./pipe/docker_engine: The system cannot find the file specified."
)


def test_docker_not_running_is_named_with_the_start_command(tmp_path):
    run = run_grader(
        SOLUTIONS,
        0,
        tmp_path=tmp_path,
        extra=("-k", "docker_engine"),
        env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"},
    )
    run.assert_failed(
        "test_docker_engine_answers",
        "troubleshooting.md#docker-not-running",
        "sudo systemctl start docker",
    )
    assert "Docker is installed but not running" in run.output


def test_socket_permission_is_named_with_the_group_fix(tmp_path):
    """The real docker CLI, run as a user outside the docker group."""
    need(shutil.which("setpriv") is not None, "setpriv (util-linux) is not installed")
    need(os.geteuid() == 0, "switching to another user needs root")
    denied = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "docker",
            "version",
        ],
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = denied.stdout + denied.stderr
    assert denied.returncode != 0
    assert "permission denied" in output
    finding = classify_docker_error(output)
    assert finding.lesson == "troubleshooting.md#docker-socket"
    assert "sudo usermod -aG docker $USER" in finding.fix


@pytest.mark.parametrize("output", [NOT_RUNNING, DESKTOP_NOT_RUNNING])
def test_docker_daemon_down_reads_as_not_running(output):
    finding = classify_docker_error(output)
    assert finding.lesson == "troubleshooting.md#docker-not-running"
    assert not finding.ok


def test_missing_compose_plugin_is_reported(tmp_path):
    empty = tmp_path / "docker-config"
    empty.mkdir()
    # Precondition: this machine keeps the plugin in the user's Docker config,
    # as Docker's own packages for a single user and .ci/run do.
    hidden = subprocess.run(
        ["docker", "compose", "version"],
        env={**os.environ, "DOCKER_CONFIG": str(empty)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    need(hidden.returncode != 0, "Compose is installed system-wide here")
    run = run_grader(
        SOLUTIONS,
        0,
        tmp_path=tmp_path,
        extra=("-k", "compose"),
        env={"DOCKER_CONFIG": str(empty)},
    )
    run.assert_failed(
        "test_compose_v2_is_installed", "setup.md#compose-v2", "docker-compose-plugin"
    )
    # Step 5 cannot run without it: skipped, saying so in a sentence.
    step5 = run_grader(
        SOLUTIONS,
        5,
        tmp_path=tmp_path,
        extra=("-k", "compose_file_is_valid"),
        env={"DOCKER_CONFIG": str(empty)},
    )
    assert step5.outcome("test_compose_file_is_valid") == "skipped", step5.output
    assert "Step 5 needs Compose v2 (`docker compose`). " in step5.output


def test_compose_v1_alone_is_named_plainly():
    finding = compose_without_plugin("docker-compose version 1.29.2, build 5becea4c\n")
    assert finding.lesson == "troubleshooting.md#compose-v1"
    assert "Only the old Compose v1" in finding.problem
    assert "1.29.2" in finding.problem
    standalone_v2 = compose_without_plugin("Docker Compose version v2.24.6\n")
    assert standalone_v2.lesson == "setup.md#compose-v2"


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("v5.6.1\n", (5, 6, 1)),
        ("2.24.6-desktop.1\n", (2, 24, 6)),
        ("Docker Compose version v2.29.7\n", (2, 29, 7)),
        ("docker-compose version 1.29.2, build 5becea4c", (1, 29, 2)),
        ("docker: unknown command: docker compose", None),
    ],
)
def test_compose_versions_are_read(output, version):
    assert parse_compose_version(output) == version


def test_port_8000_taken_by_a_program_names_it(tmp_path, port_8000):
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 8000))
        holder.listen()
        run = run_grader(SOLUTIONS, 0, tmp_path=tmp_path, extra=("-k", "port_8000"))
    run.assert_failed(
        "test_port_8000_is_free_or_held_by_this_stack",
        "troubleshooting.md#port-busy",
        f"kill {os.getpid()}",
    )


def test_port_8000_held_by_the_course_stack_passes(tmp_path, port_8000, docker):
    project = "sentinel-doctor-test"
    compose = ["docker", "compose", "--project-name", project]
    env = {**os.environ, "MODULE_DIR": "solutions/module-1"}
    try:
        up = subprocess.run(
            [*compose, "up", "--build", "--wait", "--quiet-pull"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert up.returncode == 0, up.stdout + up.stderr
        run = run_grader(SOLUTIONS, 0, tmp_path=tmp_path, extra=("-k", "port_8000"))
        assert run.outcome("test_port_8000_is_free_or_held_by_this_stack") == "passed"
    finally:
        subprocess.run(
            [*compose, "down", "--volumes", "--remove-orphans"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )


def test_crlf_in_scripts_fails_naming_them_with_the_fix(tmp_path):
    root = variant(tmp_path)
    collector = root / "module-1" / "log-collector"
    (collector / "start.sh").write_bytes(b"#!/bin/sh\r\nexec uvicorn main:app\r\n")
    # A script is known by its first line as well as by its name.
    (collector / "serve").write_bytes(b"#!/bin/sh\r\nexec uvicorn main:app\r\n")
    # A virtual environment is not the learner's to fix, so it is not looked at.
    (collector / ".venv").mkdir()
    (collector / ".venv" / "activate.sh").write_bytes(b"x=1\r\n")
    run = run_grader(root, 0, tmp_path=tmp_path, extra=("-k", "line_endings"))
    run.assert_failed(
        "test_scripts_have_unix_line_endings", "setup.md#line-endings", "sed -i"
    )
    assert "log-collector/start.sh" in run.output
    assert "log-collector/serve" in run.output
    assert "activate.sh" not in run.output
    clean = run_grader(SOLUTIONS, 0, tmp_path=tmp_path, extra=("-k", "line_endings"))
    assert clean.outcome("test_scripts_have_unix_line_endings") == "passed"
    assert "CRLF" not in clean.output


def test_crlf_where_it_is_harmless_passes_with_a_note(tmp_path):
    """Python, a Dockerfile and .dockerignore read CRLF as LF (Docker builds them)."""
    root = variant(tmp_path)
    collector = root / "module-1" / "log-collector"
    for name in ("Dockerfile", ".dockerignore", "main.py"):
        path = collector / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    run = run_grader(root, 0, tmp_path=tmp_path, extra=("-k", "line_endings"))
    assert run.outcome("test_scripts_have_unix_line_endings") == "passed", run.output
    note = next(line for line in run.output.splitlines() if line.startswith("note:"))
    assert "Windows (CRLF) line endings in" in note
    for name in ("Dockerfile", ".dockerignore", "main.py"):
        assert f"log-collector/{name}" in note
    assert "core.autocrlf input" in note


def test_git_keeps_lf_in_what_a_windows_checkout_would_break():
    """.gitattributes: LF even where core.autocrlf=true would write CRLF."""
    need(shutil.which("git") is not None, "git is not installed")
    paths = [
        "solutions/module-1/log-collector/main.py",
        "module-1/log-collector/Dockerfile",
        "module-1/log-collector/.dockerignore",
        "module-1/log-collector/requirements.txt",
        "docker-compose.yaml",
        "mkdocs.yml",
        "pyproject.toml",
        "README.md",
        "start.sh",
        ".ci/run",
    ]
    attributes = subprocess.run(
        ["git", "check-attr", "eol", "--", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert attributes.stdout.splitlines() == [f"{path}: eol: lf" for path in paths]


@pytest.mark.parametrize(
    ("machine", "usual"),
    [("x86_64", True), ("aarch64", True), ("arm64", True), ("riscv64", False)],
)
def test_cpu_architecture_is_told_and_unusual_ones_flagged(machine, usual):
    note, is_usual = machine_note(machine)
    assert machine in note
    assert is_usual is usual
