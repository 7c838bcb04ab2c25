"""How `pytest checks` grades: which tree, which steps, in what order, and the report.

Options:
  --target           module-1 of this repository by default; `solutions` for
                     the finished tree; or a PATH holding module-1/ (or module-1
                     itself), to grade a student's copy.
  --step N           only step N's checks (repeat for more); -k still applies.
  --redis            where steps 1-2 find Redis: auto (default), server,
                     container, or redis://HOST:PORT (also SENTINEL_REDIS_URL).
  --results PATH     where the JSON results go (default .sentinel/results.json).

Every check carries `pytest.mark.step(N)` and a timeout; checks run in step
order, so the environment doctor (step 0) reports first. With CI=true a skipped
check counts as failed: CI must prove every check, not skip past it.
"""

import atexit
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import redis
from environment import docker_status, machine_note
from grading import STEPS, skip_check
from learner_service import LearnerService
from processes import stop_all
from redis_servers import RedisServer, RedisUnavailable, provide_redis
from report import CheckResult, title_of, write_results, write_summary

REPO_ROOT = Path(__file__).resolve().parent.parent
MODULE = "module-1"

# Whatever happens to the run, no server it started outlives it: servers run in
# process groups of their own, so they do not get the terminal's signals; the
# grader stops them at exit, and treats `kill` or a closed terminal as Ctrl-C so
# that its clean-up runs then too. On Linux the kernel kills them as well when
# the grader itself is killed outright (SIGKILL; see processes.Background).
# TODO(when a run removes an earlier run's leftovers): a SIGKILLed grader still
# leaves its containers running (labels sentinel.grader=redis and
# org.sentinel-workshop.checks=step4) until they are removed by hand.
atexit.register(stop_all)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sentinel", "Sentinel checks")
    group.addoption(
        "--target",
        default=None,
        help="what to grade: `solutions`, or a PATH holding module-1/ "
        "(default: this repository's module-1/)",
    )
    group.addoption(
        "--step",
        action="append",
        type=int,
        default=[],
        metavar="N",
        help="run only step N's checks (0-5); repeat for more steps",
    )
    group.addoption(
        "--redis",
        default=None,
        help="Redis for steps 1-2: auto, server, container or redis://HOST:PORT "
        "(default: SENTINEL_REDIS_URL, else auto)",
    )
    group.addoption(
        "--results",
        default=None,
        help="where to write the results JSON (default: .sentinel/results.json)",
    )
    docker.add_options(parser)


@dataclass(frozen=True)
class Target:
    module_dir: Path  # the graded module-1 folder
    root: Path | None  # the tree that holds it, when there is one

    @property
    def collector_dir(self) -> Path:
        return self.module_dir / "log-collector"

    def shown(self) -> str:
        try:
            return str(self.module_dir.relative_to(REPO_ROOT))
        except ValueError:
            return str(self.module_dir)


TARGET = pytest.StashKey[Target]()
RESULTS = pytest.StashKey[dict[str, CheckResult]]()
NOTES = pytest.StashKey[list[str]]()


def resolve_target(value: str | None, invoked_from: Path) -> Target:
    if value is None:
        return Target(REPO_ROOT / MODULE, REPO_ROOT)
    if value == "solutions":
        return Target(REPO_ROOT / "solutions" / MODULE, REPO_ROOT / "solutions")
    # `~` first: once joined onto the folder the grader was run from, it would
    # be a folder named "~" (a shell leaves `--target=~/x` unexpanded).
    path = (invoked_from / Path(value).expanduser()).resolve()
    if (path / MODULE).is_dir():
        return Target(path / MODULE, path)
    return Target(path, path.parent if path.name == MODULE else None)


def pytest_configure(config: pytest.Config) -> None:
    target = resolve_target(config.getoption("target"), config.invocation_params.dir)
    if not target.collector_dir.is_dir():
        raise pytest.UsageError(
            f"--target: no log-collector folder in {target.module_dir}; give a "
            "tree that holds module-1/, or module-1 itself."
        )
    config.stash[TARGET] = target
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _interrupt)
    config.stash[RESULTS] = {}
    config.stash[NOTES] = []
    # A learner's mistake is reported in words (pytrace=False); any traceback
    # left is the grader's own, and the short form is enough for that.
    if config.option.tbstyle == "auto":
        config.option.tbstyle = "short"


def pytest_report_header(config: pytest.Config) -> list[str]:
    target = config.stash[TARGET]
    note, _usual = machine_note()
    return [f"grading: {target.shown()}", note]


def step_of(item: pytest.Item) -> int:
    marker = item.get_closest_marker("step")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{item.nodeid} has no step marker: add step(N)")
    return int(marker.args[0])


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    wanted = set(config.getoption("step"))
    unknown = wanted - set(STEPS)
    if unknown:
        raise pytest.UsageError(f"--step: no step {sorted(unknown)}; steps are 0-5")
    if wanted:
        deselected = [item for item in items if step_of(item) not in wanted]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if step_of(item) in wanted]
    # Step order, whatever the file order: the doctor speaks first.
    items.sort(key=step_of)


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1", "yes"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    error = call.excinfo.value if call.excinfo is not None else None
    hint = getattr(error, "hint", "")
    lesson = getattr(error, "lesson", "")
    if report.skipped and _ci():
        # CI must prove the checks, so a check that could not run is a failure.
        report.outcome = "failed"
        report.skip_under_ci = True
        reason = getattr(error, "msg", None) or (
            report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        )
        report.longrepr = f"Skipped, and with CI=true a skip is a failure:\n{reason}"
    if report.failed and not hint:
        hint = (
            str(error).splitlines()[0]
            if error is not None and str(error)
            else "The check itself failed; see the message above."
        )
    if report.skipped and not hint and isinstance(report.longrepr, tuple):
        hint = report.longrepr[2]
    results = item.config.stash[RESULTS]
    step = step_of(item)
    result = results.get(item.nodeid)
    if result is None:
        doc = getattr(getattr(item, "obj", None), "__doc__", None)
        name = getattr(item, "originalname", item.name)
        result = results[item.nodeid] = CheckResult(step, name, title_of(name, doc))
    if report.failed or report.skipped:
        result.record(report.outcome, hint, lesson or STEPS[step][1])
        return report
    result.lesson = result.lesson or STEPS[step][1]
    # Only the call phase passes a check: a run stopped (Ctrl-C, `kill`) after
    # set-up but before the check's end gets no call report at all.
    if report.when == "call":
        result.record("passed", "", result.lesson)
    return report


def pytest_report_teststatus(
    report: pytest.TestReport,
) -> tuple[str, str, str] | None:
    # A skip turned into a failure happens, like most skips, while a fixture is
    # set up; pytest would call that an "error". It is a failed check.
    if getattr(report, "skip_under_ci", False):
        return "failed", "F", "FAILED"
    return None


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    results = list(config.stash[RESULTS].values())
    for result in results:
        result.finish()
    target = config.stash[TARGET]
    notes = []
    note, usual = machine_note()
    if not usual:
        notes.append("warning: " + note)
    notes += config.stash[NOTES]
    write_summary(terminalreporter, results, MODULE, notes)
    if not results:
        return
    chosen = config.getoption("results")
    path = Path(chosen) if chosen else REPO_ROOT / ".sentinel" / "results.json"
    try:
        write_results(path, results, MODULE, target.shown())
    except OSError as exc:
        terminalreporter.write_line(f"Results not saved to {path}: {exc}", yellow=True)
    else:
        terminalreporter.write_line(f"Results saved to {path}")


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_all()


# Fixtures the checks share


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def module_dir(pytestconfig: pytest.Config) -> Path:
    """The graded module-1 folder."""
    return pytestconfig.stash[TARGET].module_dir


@pytest.fixture(scope="session")
def target_root(pytestconfig: pytest.Config) -> Path | None:
    """The tree holding the graded module-1/; None when module-1 itself was given."""
    return pytestconfig.stash[TARGET].root


@pytest.fixture(scope="session")
def collector_dir(pytestconfig: pytest.Config) -> Path:
    """The graded log-collector folder: main.py, config.py, Dockerfile."""
    return pytestconfig.stash[TARGET].collector_dir


@pytest.fixture(scope="session")
def compose_file(target_root: Path | None) -> Path:
    """The target's own docker-compose.yaml if it has one, else this repository's."""
    if target_root is not None and (target_root / "docker-compose.yaml").is_file():
        return target_root / "docker-compose.yaml"
    return REPO_ROOT / "docker-compose.yaml"


@pytest.fixture
def note(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Add a line to the end-of-run report: worth knowing, yet failing nothing."""
    return pytestconfig.stash[NOTES].append


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """A Docker engine this user may talk to, or steps 4-5 are skipped with the fix."""
    found = docker_status()
    if not found.ok:
        skip_check(
            f"This step needs Docker. {found.problem}",
            fix=found.fix,
            lesson=found.lesson,
        )


@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    """A real Redis for steps 1-2, or the checks are skipped with the fix."""
    choice = (
        pytestconfig.getoption("redis")
        or os.environ.get("SENTINEL_REDIS_URL")
        or "auto"
    )
    with tempfile.TemporaryDirectory(prefix="sentinel-redis-") as workdir:
        try:
            server = provide_redis(choice, Path(workdir))
        except RedisUnavailable as exc:
            skip_check(
                f"Steps 1-2 need a Redis to test against. {exc}",
                fix=exc.fix,
                lesson="setup.md#environment-check",
            )
        try:
            yield server
        finally:
            server.close()


@pytest.fixture(scope="session")
def service(redis_server: RedisServer, collector_dir: Path) -> Iterator[LearnerService]:
    """The learner's collector running under uvicorn, pointed at `redis_server`."""
    service = LearnerService(collector_dir, redis_server.host, redis_server.port)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """The grader's own connection to that Redis (raw bytes; decode them yourself)."""
    client = redis_server.connect()
    try:
        yield client
    finally:
        client.close()
