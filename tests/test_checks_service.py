"""The step 1 and 2 checks judge the collector for the right reasons.

Each test runs the grader on a tree (the solution, the starter, or a patched
copy of one) and reads its results file: which checks failed, and with which
hint and lesson anchor. Hostile versions prove the grader's bounds: it ends in
time, fails with a message that points at the learner's line, and leaves no
process behind.
"""

import shutil
from pathlib import Path

import pytest
from conftest import need
from grader_runs import SOLUTIONS, STARTER_TREE, GraderRun, run_grader, variant

STEP_1 = "module-1/step-1-api.md"
STEP_2 = "module-1/step-2-queue.md"
IMPORT_ERROR = "troubleshooting.md#import-error"

# Places in the solution that the variants below change.
MAIN = "main.py"
LOGGER_LINE = 'logger = logging.getLogger("log_collector")\n'
PUSH = (
    "        await request.state.redis.lpush(settings.queue_name, "
    "entry.model_dump_json())"
)
BUILD_ENTRY = "    entry = QueuedEntry(**log.model_dump())"


@pytest.fixture(autouse=True)
def redis_server_installed() -> None:
    need(shutil.which("redis-server") is not None, "redis-server is not on PATH")


def grade(target: Path, tmp_path: Path, *steps: int) -> GraderRun:
    run = run_grader(target, *steps, tmp_path=tmp_path)
    assert not run.leftovers, f"processes left behind: {run.leftovers}"
    return run


def line_of(root: Path, text: str) -> int:
    """The 1-based line of `text` in the copy's main.py, as a traceback names it."""
    lines = (root / "module-1" / "log-collector" / MAIN).read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def test_solution_passes_steps_0_to_2_with_nothing_skipped(tmp_path, port_8000):
    run = grade(SOLUTIONS, tmp_path, 0, 1, 2)
    assert run.returncode == 0, run.output
    run.assert_all("passed")
    assert {entry["step"] for entry in run.entries()} == {0, 1, 2}
    assert "Module 1: 19 of 19 checks passed" in run.output


def test_starter_fails_step_1_because_login_has_no_fields(tmp_path):
    run = grade(STARTER_TREE, tmp_path, 1)
    assert run.returncode == 1
    run.assert_all("failed", step=1)
    for check in run.outcomes(1):
        run.assert_failed(check, f"{STEP_1}#todo-1-1", "TODO 1.1")
    assert "First to fix (step 1): A valid log entry is not rejected." in run.output


def test_starter_fails_step_2_on_step_1_and_the_health_todo(tmp_path):
    run = grade(STARTER_TREE, tmp_path, 2)
    run.assert_all("failed", step=2)
    # A valid entry is still rejected 422, and the checks say why, not "queue".
    run.assert_failed(
        "test_valid_entry_is_accepted_with_id_and_timestamp",
        f"{STEP_1}#todo-1-1",
        "TODO 1.1",
    )
    run.assert_failed(
        "test_health_reports_redis_up_and_down", f"{STEP_2}#todo-2-5", "TODO 2.5"
    )


def test_starter_with_step_1_done_fails_step_2_on_its_todos(tmp_path):
    fields = (
        "    service_name: NonBlank = Field(max_length=100)\n"
        '    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]\n'
        "    message: NonBlank = Field(max_length=16_384)\n"
    )
    todo = (
        "    # TODO 1.1: Declare service_name and message as NonBlank, level as a "
        "Literal.\n"
    )
    root = variant(tmp_path, (MAIN, todo, fields), source=STARTER_TREE)
    run = grade(root, tmp_path, 1, 2)
    run.assert_all("passed", step=1)
    run.assert_all("failed", step=2)
    for check in (
        "test_redis_host_and_port_come_from_the_environment",
        "test_valid_entry_is_accepted_with_id_and_timestamp",
        "test_queue_gains_exactly_one_json_entry",
    ):
        run.assert_failed(check, f"{STEP_2}#todo-2-3", "TODO 2.3")
    run.assert_failed(
        "test_health_reports_redis_up_and_down", f"{STEP_2}#todo-2-5", "TODO 2.5"
    )


def test_redis_host_hard_coded_to_localhost_fails_the_environment_check(tmp_path):
    root = variant(
        tmp_path,
        (MAIN, "        host=settings.redis_host,", '        host="localhost",'),
    )
    run = grade(root, tmp_path, 1, 2)
    run.assert_all("passed", step=1)
    run.assert_failed(
        "test_redis_host_and_port_come_from_the_environment",
        "troubleshooting.md#redis-at-localhost",
        "REDIS_HOST=",
        "settings.redis_host",
    )
    # The service's own log line, which names the address it dialled, is shown.
    assert "connecting to localhost:" in run.output
    assert "First to fix (step 2): The service reaches the Redis" in run.output


def test_fields_as_query_parameters_fail_the_json_body_check(tmp_path):
    root = variant(
        tmp_path,
        (
            MAIN,
            "async def queue_log(log: LogIn, request: Request) -> QueuedEntry:",
            "async def queue_log(\n"
            "    service_name: str, level: str, message: str, request: Request\n"
            ") -> QueuedEntry:",
        ),
        (
            MAIN,
            BUILD_ENTRY,
            "    entry = QueuedEntry(\n"
            "        service_name=service_name, level=level, message=message\n"
            "    )",
        ),
    )
    run = grade(root, tmp_path, 1)
    run.assert_failed(
        "test_fields_are_read_from_the_json_body",
        "troubleshooting.md#query-parameters",
        "query string",
        "log: LogIn",
    )


def test_misspelt_queue_name_fails_the_queue_check(tmp_path):
    root = variant(
        tmp_path,
        (
            "config.py",
            'queue_name: str = "logs_queue"',
            'queue_name: str = "log_queue"',
        ),
    )
    run = grade(root, tmp_path, 2)
    # The entry did reach the grader's Redis, only under the wrong name.
    assert run.outcome("test_redis_host_and_port_come_from_the_environment") == "passed"
    run.assert_failed(
        "test_queue_gains_exactly_one_json_entry",
        f"{STEP_2}#todo-2-3",
        "logs_queue",
        "spelling",
    )
    assert "The entry went to another list: 'log_queue' (1), not 'logs_queue'." in (
        run.output
    )


@pytest.mark.parametrize(
    ("write", "kind"),
    [
        ("set(settings.queue_name, entry.model_dump_json())", "string"),
        ("hset(settings.queue_name, entry.id, entry.model_dump_json())", "hash"),
    ],
    ids=["set", "hset"],
)
def test_queue_of_another_type_is_named_without_a_traceback(tmp_path, write, kind):
    root = variant(
        tmp_path,
        (MAIN, PUSH, f"        await request.state.redis.{write}"),
    )
    run = grade(root, tmp_path, 2)
    # The entry did reach the grader's Redis, only not as a list.
    assert run.outcome("test_redis_host_and_port_come_from_the_environment") == "passed"
    for check in (
        "test_queue_gains_exactly_one_json_entry",
        "test_entries_come_back_oldest_first_through_brpop",
        "test_invalid_entries_queue_nothing",
    ):
        run.assert_failed(check, f"{STEP_2}#todo-2-3", "LPUSH", kind)
    assert f"logs_queue is a {kind}, not a list: use LPUSH (TODO 2.3)." in run.output
    assert "Traceback" not in run.output
    assert "WRONGTYPE" not in run.output


def test_answer_that_is_not_json_is_told_plainly(tmp_path):
    # A 202 whose body starts like a JSON object and is not one.
    root = variant(
        tmp_path,
        (
            MAIN,
            "    return entry\n",
            '    return Response("{" + entry.model_dump_json(), status_code=202)\n',
        ),
    )
    run = grade(root, tmp_path, 2)
    run.assert_failed(
        "test_valid_entry_is_accepted_with_id_and_timestamp",
        f"{STEP_2}#todo-2-3",
        "QueuedEntry",
    )
    assert "does not carry the queued entry: it is not JSON" in run.output
    run.assert_failed(
        "test_queue_gains_exactly_one_json_entry", f"{STEP_2}#todo-2-3", "QueuedEntry"
    )
    assert "the 202 answer is not a JSON object" in run.output
    assert "Traceback" not in run.output
    assert "JSONDecodeError" not in run.output


def test_client_per_request_fails_the_connections_check(tmp_path):
    root = variant(
        tmp_path,
        (
            MAIN,
            PUSH,
            "        client = Redis(\n"
            "            host=settings.redis_host, port=settings.redis_port\n"
            "        )\n"
            "        await client.lpush(settings.queue_name, entry.model_dump_json())",
        ),
    )
    run = grade(root, tmp_path, 2)
    run.assert_failed(
        "test_one_redis_client_serves_many_requests",
        "troubleshooting.md#client-per-request",
        "lifespan",
    )
    others = run.outcomes(2)
    del others["test_one_redis_client_serves_many_requests"]
    assert set(others.values()) == {"passed"}, run.output


@pytest.mark.parametrize(
    "build",
    [
        # Pydantic v2 warns that .dict() is deprecated. The warning is printed by
        # the learner's server, a process of its own; the grader's
        # filterwarnings=error must not turn it into a failed check.
        "    entry = QueuedEntry(**log.dict())",
        "    entry = QueuedEntry(**dict(log))",
    ],
    ids=["dict-method", "dict-builtin"],
)
def test_correct_but_different_entry_building_passes(tmp_path, build):
    root = variant(tmp_path, (MAIN, BUILD_ENTRY, build))
    run = grade(root, tmp_path, 1, 2)
    assert run.returncode == 0, run.output
    run.assert_all("passed")


def test_import_error_names_the_learners_file_and_line(tmp_path):
    root = variant(tmp_path, (MAIN, LOGGER_LINE, LOGGER_LINE + "settings.redis_hots\n"))
    run = grade(root, tmp_path, 1)
    run.assert_all("failed")
    line = line_of(root, "settings.redis_hots")
    assert f"at main.py line {line}: settings.redis_hots" in run.output
    assert "AttributeError: 'Settings' object has no attribute 'redis_hots'" in (
        run.output
    )
    run.assert_failed("test_valid_entry_is_not_rejected", IMPORT_ERROR, "main.py")
    # The grader's own machinery stays out of the learner's view.
    assert "Traceback" not in run.output
    assert "site-packages" not in run.output


def test_missing_package_says_how_to_install_it(tmp_path):
    root = variant(
        tmp_path,
        (MAIN, "import logging\n", "import logging\n\nimport sentinel_extra\n"),
    )
    run = grade(root, tmp_path, 1)
    run.assert_failed(
        "test_valid_entry_is_not_rejected",
        IMPORT_ERROR,
        "'sentinel_extra' is not installed",
        "pip install -r",
    )


# Hostile code: each run must end within its bound, fail with a message that
# helps, and leave nothing running (grade() checks the last).


def test_endless_printing_loop_at_import_is_stopped_and_located(tmp_path):
    root = variant(
        tmp_path,
        (MAIN, LOGGER_LINE, LOGGER_LINE + "while True:\n    print('x' * 1000)\n"),
    )
    run = grade(root, tmp_path, 1)
    assert run.seconds < 45, run.output
    run.assert_all("failed")
    line = line_of(root, "print('x' * 1000)")
    assert "did not start answering within 15 s" in run.output
    assert f"still running main.py line {line}: print('x' * 1000)" in run.output
    assert "MB of output meanwhile" in run.output
    # Megabytes were printed; the report shows none of them.
    assert len(run.output) < 100_000
    run.assert_failed("test_valid_entry_is_not_rejected", IMPORT_ERROR, "top level")


def test_sys_exit_at_import_is_reported_as_an_exit(tmp_path):
    root = variant(
        tmp_path, (MAIN, LOGGER_LINE, LOGGER_LINE + "import sys\n\nsys.exit(0)\n")
    )
    run = grade(root, tmp_path, 1)
    assert run.seconds < 30, run.output
    run.assert_all("failed")
    assert "exited during start-up (exit code 0)" in run.output
    run.assert_failed("test_valid_entry_is_not_rejected", IMPORT_ERROR, "sys.exit()")


def test_server_that_never_answers_is_stopped_and_located(tmp_path):
    # uvicorn binds the port, then a middleware blocks the event loop for good.
    root = variant(
        tmp_path,
        (MAIN, "app = FastAPI(", "import time\n\napp = FastAPI("),
        (
            MAIN,
            "QUEUE_DOWN = {",
            '@app.middleware("http")\n'
            "async def stall(request, call_next):\n"
            "    time.sleep(3600)\n\n\n"
            "QUEUE_DOWN = {",
        ),
    )
    run = grade(root, tmp_path, 1)
    assert run.seconds < 45, run.output
    run.assert_all("failed")
    line = line_of(root, "time.sleep(3600)")
    assert f"still running main.py line {line} (in stall): time.sleep(3600)" in (
        run.output
    )
    run.assert_failed("test_valid_entry_is_not_rejected", IMPORT_ERROR, "await")


def test_slow_route_times_out_within_bounds(tmp_path):
    root = variant(
        tmp_path,
        (MAIN, BUILD_ENTRY, "    await asyncio.sleep(60)\n" + BUILD_ENTRY),
        (MAIN, "import logging\n", "import asyncio\nimport logging\n"),
    )
    run = grade(root, tmp_path, 1)
    assert run.seconds < 30, run.output
    run.assert_failed(
        "test_valid_entry_is_not_rejected",
        f"{STEP_2}#todo-2-4",
        "waits too long",
    )
    assert "did not answer within 5 s" in run.output
    # Validation answers 422 before the slow part: those checks still pass.
    assert run.outcome("test_missing_field_is_rejected_naming_it") == "passed"


def test_crash_after_megabytes_of_output_is_still_located(tmp_path):
    noise = "for _ in range(200_000):\n    print('y' * 100)\n"
    root = variant(
        tmp_path,
        (MAIN, LOGGER_LINE, LOGGER_LINE + noise + "raise RuntimeError('late')\n"),
    )
    run = grade(root, tmp_path, 1)
    assert run.seconds < 30, run.output
    line = line_of(root, "raise RuntimeError('late')")
    assert f"at main.py line {line}: raise RuntimeError('late')" in run.output
    assert len(run.output) < 100_000
