"""The grader's own machinery: targets, step selection, the report, the results file.

These run the grader as learners and instructors do and read its output; most
select one quick check with -k, since what is under test is the machinery
around the checks, not the checks.
"""

import contextlib
import json
import os
import pty
import shutil
import signal
import subprocess
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import redis
from conftest import free_port, need
from grader_runs import (
    ROOT,
    SOLUTIONS,
    STARTER_TREE,
    copy_tree,
    grader_command,
    grader_env,
    processes_marked,
    run_grader,
    temp_dir,
    variant,
)

PYTHON_CHECK = ("-k", "python_is_new_enough")


def test_report_shows_a_table_the_total_and_the_first_fix(tmp_path):
    run = run_grader(STARTER_TREE, 0, 1, tmp_path=tmp_path, extra=("-k", "not port"))
    assert run.returncode == 1
    lines = run.output.splitlines()
    table = lines.index(
        next(line for line in lines if "Sentinel checks: module-1" in line)
    )
    assert lines[table + 1].split() == ["step", "passed", "failed", "skipped"]
    assert lines[table + 2].split() == ["0", "environment", "4", "0", "0"]
    assert lines[table + 3].split() == ["1", "the", "API", "0", "5", "0"]
    assert lines[table + 4] == (
        "Module 1: 4 of 9 checks passed (step 0, 1 only; `pytest checks` runs all)"
    )
    assert (
        lines[table + 5] == "First to fix (step 1): A valid log entry is not rejected."
    )
    assert lines[table + 6].startswith("  hint:   LogIn declares no such fields yet")
    assert lines[table + 7] == (
        "  lesson: http://127.0.0.1:8001/module-1/step-1-api/#todo-1-1"
    )
    # A learner's mistake is told in words: no traceback, no grader internals.
    assert "Traceback" not in run.output
    assert "grading.py" not in run.output
    assert "raise " not in run.output


def test_results_file_follows_the_agreed_schema(tmp_path):
    run = run_grader(STARTER_TREE, 1, tmp_path=tmp_path, extra=("-k", "valid_entry"))
    assert set(run.results) == {"module", "target", "finished", "checks"}
    assert run.results["module"] == "module-1"
    assert run.results["target"] == "module-1"
    datetime.fromisoformat(run.results["finished"])
    assert run.results["checks"] == [
        {
            "step": 1,
            "check": "test_valid_entry_is_not_rejected",
            "title": "A valid log entry is not rejected.",
            "outcome": "failed",
            "hint": run.results["checks"][0]["hint"],
            "lesson": "module-1/step-1-api.md#todo-1-1",
        }
    ]
    assert "TODO 1.1" in run.results["checks"][0]["hint"]


def test_results_file_keeps_other_steps_of_the_same_target(tmp_path):
    results = tmp_path / "results.json"
    tree = copy_tree(SOLUTIONS, tmp_path)
    run_grader(tree, 0, tmp_path=tmp_path, results=results, extra=PYTHON_CHECK)
    run = run_grader(
        tree, 1, tmp_path=tmp_path, results=results, extra=("-k", "valid_entry")
    )
    assert [(e["step"], e["check"]) for e in run.entries()] == [
        (0, "test_python_is_new_enough"),
        (1, "test_valid_entry_is_not_rejected"),
    ]
    # Another tree's results replace them all.
    run = run_grader(
        SOLUTIONS, 0, tmp_path=tmp_path, results=results, extra=PYTHON_CHECK
    )
    assert run.results["target"] == "solutions/module-1"
    assert [e["check"] for e in run.entries()] == ["test_python_is_new_enough"]


def test_steps_run_in_step_order_and_combine_with_k(tmp_path):
    run = run_grader(
        SOLUTIONS,
        2,
        0,
        tmp_path=tmp_path,
        extra=("-k", "python_is_new_enough or come_from_the_environment", "-v"),
    )
    assert run.returncode == 0, run.output
    assert [(e["step"], e["check"]) for e in run.entries()] == [
        (0, "test_python_is_new_enough"),
        (2, "test_redis_host_and_port_come_from_the_environment"),
    ]
    first = run.output.index("test_step0_environment.py::test_python_is_new_enough")
    second = run.output.index("test_step2_queue.py::test_redis_host_and_port")
    assert first < second
    assert "2 selected" in run.output


def test_unknown_step_is_a_usage_error(tmp_path):
    run = run_grader(SOLUTIONS, 9, tmp_path=tmp_path)
    assert run.returncode == 4
    assert "--step: no step [9]; steps are 0-5" in run.output


@pytest.mark.parametrize("given", ["tree", "tree/module-1"])
def test_target_is_a_tree_or_its_module_folder(tmp_path, given):
    tree = copy_tree(SOLUTIONS, tmp_path)
    run = run_grader(tmp_path / given, 0, tmp_path=tmp_path, extra=PYTHON_CHECK)
    assert run.returncode == 0, run.output
    assert run.results["target"] == str(tree / "module-1")
    assert f"grading: {tree / 'module-1'}" in run.output


def test_target_without_a_collector_is_a_usage_error(tmp_path):
    run = run_grader(tmp_path, 0, tmp_path=tmp_path)
    assert run.returncode == 4
    assert f"--target: no log-collector folder in {tmp_path}" in run.output


def test_skip_shows_its_fix_and_is_never_a_pass(tmp_path):
    # No redis-server on this PATH, and the container route not allowed.
    no_redis = {"PATH": str(tmp_path / "empty-bin")}
    run = run_grader(
        SOLUTIONS,
        1,
        tmp_path=tmp_path,
        extra=("--redis", "server"),
        env=no_redis,
    )
    run.assert_all("skipped", step=1)
    assert run.returncode == 0  # pytest's own verdict: nothing failed
    assert "Module 1: 0 of 5 checks passed" in run.output
    assert "5 check(s) skipped, so not passed" in run.output
    assert "sudo apt-get install redis-server" in run.entries()[0]["hint"]


def test_under_ci_a_skip_is_a_failure(tmp_path):
    run = run_grader(
        SOLUTIONS,
        1,
        tmp_path=tmp_path,
        extra=("--redis", "server", "-k", "valid_entry"),
        env={"PATH": str(tmp_path / "empty-bin"), "CI": "true"},
    )
    assert run.returncode == 1
    run.assert_all("failed")
    assert "with CI=true a skip is a failure" in run.output


def run_on_terminal(tmp_path: Path, env: dict[str, str | None]) -> str:
    """The grader's output as a terminal receives it (through a pseudo-terminal)."""
    command = grader_command(
        SOLUTIONS, (0,), tmp_path / "results.json", ("-k", "python_is_new_enough")
    )
    leader, follower = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the grader has ended
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    process = subprocess.run(
        command,
        cwd=ROOT,
        env=grader_env(env, uuid.uuid4().hex, tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        timeout=120,
        check=False,
    )
    os.close(follower)
    reader.join(timeout=10)
    os.close(leader)
    assert process.returncode == 0
    return b"".join(chunks).decode(errors="replace")


def test_colour_only_on_a_terminal_and_never_with_no_color(tmp_path):
    plain = {"NO_COLOR": None, "PY_COLORS": None, "FORCE_COLOR": None, "TERM": "xterm"}
    on_terminal = run_on_terminal(tmp_path, plain)
    assert "\x1b[32m" in on_terminal
    assert "Module 1: 1 of 1" in on_terminal
    assert "\x1b[" not in run_on_terminal(tmp_path, {**plain, "NO_COLOR": "1"})
    piped = run_grader(SOLUTIONS, 0, tmp_path=tmp_path, extra=PYTHON_CHECK, env=plain)
    assert "\x1b[" not in piped.output


def test_given_redis_is_used_and_never_stopped(tmp_path, redis_server):
    url = f"redis://127.0.0.1:{redis_server.port}"
    run = run_grader(SOLUTIONS, 2, tmp_path=tmp_path, extra=("--redis", url))
    outcomes = run.outcomes(2)
    stops_redis = {
        "test_redis_down_gives_503_and_service_recovers",
        "test_health_reports_redis_up_and_down",
    }
    assert {outcomes.pop(name) for name in stops_redis} == {"skipped"}, run.output
    assert set(outcomes.values()) == {"passed"}, run.output
    entry = run.entry("test_redis_down_gives_503_and_service_recovers")
    assert "Leave out --redis" in entry["hint"]
    assert redis_server.client().ping()
    assert not run.leftovers


def test_redis_container_is_used_when_asked_and_removed_after(tmp_path, docker):
    image = subprocess.run(
        ["docker", "image", "inspect", "redis:7.4-alpine"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    need(image.returncode == 0, "the redis:7.4-alpine image is not on this machine")
    run = run_grader(SOLUTIONS, 2, tmp_path=tmp_path, extra=("--redis", "container"))
    assert run.returncode == 0, run.output
    run.assert_all("passed")
    left = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", "label=sentinel.grader=redis"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert left.stdout.strip() == ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP, signal.SIGTERM])
def test_no_process_outlives_an_interrupted_run(tmp_path, signum):
    """Ctrl-C, a closed terminal or `kill` mid-run: the grader stops its servers."""
    need(shutil.which("redis-server") is not None, "redis-server is not on PATH")
    tree = copy_tree(SOLUTIONS, tmp_path)
    main = tree / "module-1" / "log-collector" / "main.py"
    main.write_text(main.read_text() + "\nwhile True:\n    pass\n")
    marker = uuid.uuid4().hex
    output = tmp_path / "output.txt"
    with output.open("w") as sink:
        grader = subprocess.Popen(
            grader_command(tree, (1,), tmp_path / "results.json", ()),
            cwd=ROOT,
            env=grader_env(None, marker, tmp_path),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        started: list[str] = []
        # Wait until the hanging server and the grader's Redis are both up.
        while time.monotonic() < deadline:
            started = processes_marked(marker, tmp_path)
            if sum("uvicorn" in p or "redis-server" in p for p in started) == 2:
                break
            time.sleep(0.2)
        assert len(started) == 3, started
        grader.send_signal(signum)
        assert grader.wait(timeout=30) != 0, output.read_text()
    finally:
        if grader.poll() is None:
            grader.kill()
            grader.wait()
    assert processes_marked(marker, tmp_path) == [], output.read_text()


def test_leftover_finder_sees_a_live_process(tmp_path):
    """The no-leftovers assertions can fail: a live process is found both ways."""
    marker = uuid.uuid4().hex
    folder = temp_dir(tmp_path) / "work"
    folder.mkdir()
    marked = subprocess.Popen(["sleep", "30"], env=grader_env(None, marker, tmp_path))
    # redis-server hides its environment; it is found by its working folder.
    port = str(free_port())
    server = subprocess.Popen(
        ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", ""],
        cwd=folder,
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        found = sorted(line.split()[0] for line in processes_marked(marker, tmp_path))
        assert found == sorted([str(marked.pid), str(server.pid)])
    finally:
        for process in (marked, server):
            process.kill()
            process.wait()
    assert processes_marked(marker, tmp_path) == []


def test_given_redis_keeps_its_data_apart_from_the_queue(tmp_path, redis_server):
    """On a Redis the learner gave, the grader deletes logs_queue and nothing else."""
    client: redis.Redis = redis_server.client()
    client.set("learners-own-key", "kept")
    url = f"redis://127.0.0.1:{redis_server.port}"
    run_grader(
        SOLUTIONS, 2, tmp_path=tmp_path, extra=("--redis", url, "-k", "one_json_entry")
    )
    assert client.get("learners-own-key") == "kept"
    assert json.loads(client.lpop("logs_queue"))["message"] == "Transaction failed"


def test_check_cut_off_by_kill_is_not_passed(tmp_path):
    """`kill` while a check waits for an answer: that check did not pass."""
    need(shutil.which("redis-server") is not None, "redis-server is not on PATH")
    arrived = tmp_path / "request-arrived"
    tree = variant(
        tmp_path,
        ("main.py", "import logging\n", "import asyncio\nimport logging\n"),
        (
            "main.py",
            "    entry = QueuedEntry(**log.model_dump())",
            f"    open({str(arrived)!r}, 'w').close()\n"
            "    await asyncio.sleep(4)\n"
            "    entry = QueuedEntry(**log.model_dump())",
        ),
    )
    results = tmp_path / "results.json"
    output = tmp_path / "output.txt"
    marker = uuid.uuid4().hex
    with output.open("w") as sink:
        grader = subprocess.Popen(
            grader_command(tree, (1,), results, ("-k", "valid_entry")),
            cwd=ROOT,
            env=grader_env(None, marker, tmp_path),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        # The check has sent its POST and waits for the slow answer.
        deadline = time.monotonic() + 60
        while not arrived.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert arrived.exists(), output.read_text()
        grader.send_signal(signal.SIGTERM)
        assert grader.wait(timeout=30) != 0
    finally:
        if grader.poll() is None:
            grader.kill()
            grader.wait()
    printed = output.read_text()
    assert "Module 1: 0 of 1 checks passed" in printed, printed
    assert "Interrupted before it finished" in printed
    [entry] = json.loads(results.read_text())["checks"]
    assert entry["check"] == "test_valid_entry_is_not_rejected"
    assert entry["outcome"] == "failed"
    assert entry["hint"].startswith("Interrupted before it finished")
    assert processes_marked(marker, tmp_path) == []


@pytest.mark.parametrize(
    "earlier",
    [
        "[]",
        "{not json",
        '{"target": "module-1", "checks": {}}',
        '{"target": "module-1", "checks": [{"step": "0", "check": "x", "title": "",'
        ' "outcome": "passed", "hint": "", "lesson": ""}]}',
        '{"target": "module-1", "checks": [{"step": 0, "check": "x"}]}',
    ],
    ids=["list", "not-json", "checks-not-a-list", "step-a-string", "entry-short"],
)
def test_unsound_results_file_is_replaced(tmp_path, earlier):
    results = tmp_path / "results.json"
    results.write_text(earlier)
    run = run_grader(
        STARTER_TREE, 0, tmp_path=tmp_path, results=results, extra=PYTHON_CHECK
    )
    assert run.returncode == 0, run.output
    assert "INTERNALERROR" not in run.output
    assert [e["check"] for e in run.entries()] == ["test_python_is_new_enough"]


def test_target_may_start_with_a_tilde(tmp_path):
    """`--target=~/x`: a shell leaves the `~` there, so the grader expands it."""
    home = tmp_path / "home"
    tree = copy_tree(SOLUTIONS, home, "course")
    run = run_grader(
        "~/course", 0, tmp_path=tmp_path, extra=PYTHON_CHECK, env={"HOME": str(home)}
    )
    assert run.returncode == 0, run.output
    assert run.results["target"] == str(tree / "module-1")


def test_no_process_outlives_a_killed_grader(tmp_path):
    """SIGKILL gives the grader no clean-up; on Linux the kernel stops its servers."""
    need(shutil.which("redis-server") is not None, "redis-server is not on PATH")
    need(shutil.which("setpriv") is not None, "setpriv (util-linux) is not installed")
    tree = copy_tree(SOLUTIONS, tmp_path)
    main = tree / "module-1" / "log-collector" / "main.py"
    main.write_text(main.read_text() + "\nwhile True:\n    pass\n")
    marker = uuid.uuid4().hex
    grader = subprocess.Popen(
        grader_command(tree, (1,), tmp_path / "results.json", ()),
        cwd=ROOT,
        env=grader_env(None, marker, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        servers: list[str] = []
        while time.monotonic() < deadline:
            started = processes_marked(marker, tmp_path)
            servers = [p for p in started if "uvicorn" in p or "redis-server" in p]
            if len(servers) == 2:
                break
            time.sleep(0.2)
        assert len(servers) == 2, servers
    finally:
        grader.kill()
        grader.wait()
    deadline = time.monotonic() + 10
    while (left := processes_marked(marker, tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Were any left, they would spin for good: end them before failing.
    for process in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(process.split()[0]), signal.SIGKILL)
    assert left == []
