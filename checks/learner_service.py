"""The learner's collector, run for real: `python -m uvicorn main:app` in their folder.

It runs as its own process, pointed at the grader's Redis through REDIS_HOST and
REDIS_PORT, so import errors, a broken lifespan or a hard-coded host show up as
they would on the learner's machine. Every way it can misbehave ends in a
learner-facing failure within a bound:

- it crashes at start-up: the traceback is cut down to the last line of the
  learner's own code, with the error and a hint;
- it never starts answering (a loop or a wait at import, in the lifespan, or
  in a middleware): after STARTUP_TIMEOUT it is sent SIGABRT, and Python's
  faulthandler (PYTHONFAULTHANDLER=1) prints where it was stuck;
- it stops answering or dies mid-run: the same, and the checks after it fail
  with that message at once rather than waiting again;
- it answers slowly: the request times out after REQUEST_TIMEOUT;
- it prints without end: only the start and the end of its output are kept.

Checks talk to it through `request`, which raises the learner failure itself,
so a failed start-up fails each check rather than erroring it.
"""

import contextlib
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
from environment import free_port
from grading import learner_fail
from processes import Background

FIELDS = ("service_name", "level", "message")

STARTUP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 5.0
# For a route that has already timed out once in this run.
SLOW_ROUTE_TIMEOUT = 1.0

IMPORT_LESSON = "troubleshooting.md#import-error"
SLOW_HINT = (
    "Something in that route waits too long: give Redis calls a timeout "
    "(settings.redis_timeout), and never sleep or loop there."
)

_FRAME = re.compile(
    r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)(?:,? in (?P<func>.+))?'
)


@dataclass(frozen=True)
class Frame:
    path: str
    line: int
    function: str


@dataclass(frozen=True)
class Crash:
    """The part of a traceback that concerns the learner: their line, and the error."""

    frame: Frame | None  # the innermost frame in the learner's files
    code: str  # that line of their source, stripped
    error: str  # "NameError: name 'Feild' is not defined", or ""

    def where(self, root: Path) -> str:
        if self.frame is None:
            return ""
        path = Path(self.frame.path)
        with contextlib.suppress(ValueError):
            path = path.relative_to(root)
        place = f"{path} line {self.frame.line}"
        if self.frame.function and self.frame.function != "<module>":
            place += f" (in {self.frame.function})"
        return place


def _in_folder(path: str, root: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return Path(path).resolve().is_relative_to(root.resolve())
    return False


def read_crash(output: str, root: Path) -> Crash:
    """Find the learner's innermost frame and the error in the last traceback.

    Reads Python's tracebacks (most recent call last: the last one printed is
    the one that ended the program) and faulthandler's dumps (most recent call
    first, one block per thread: the block that runs the learner's code is the
    stuck one).
    """
    blocks: list[list[str]] = []
    for line in output.splitlines():
        if "most recent call last" in line or "most recent call first" in line:
            blocks.append([])
        if blocks:
            blocks[-1].append(line)
    tracebacks = [block for block in blocks if "most recent call last" in block[0]]
    dumps = [block for block in blocks if "most recent call first" in block[0]]
    frame, error = None, ""
    if dumps and (not tracebacks or blocks[-1] is dumps[-1]):
        for block in dumps:
            ours = [f for _, f in _frames(block) if _in_folder(f.path, root)]
            if ours:
                frame = ours[0]
                break
    elif tracebacks:
        block = tracebacks[-1]
        frames = _frames(block)
        ours = [f for _, f in frames if _in_folder(f.path, root)]
        frame = ours[-1] if ours else None
        error = _error_line(block, frames[-1][0] if frames else 0)
    code = ""
    if frame is not None:
        with contextlib.suppress(OSError, IndexError):
            source = Path(frame.path).read_text(errors="replace").splitlines()
            code = source[frame.line - 1].strip()
    return Crash(frame, code, error)


def _frames(block: list[str]) -> list[tuple[int, Frame]]:
    """The frames of one traceback, with the index of the line naming each."""
    frames = []
    for index, line in enumerate(block):
        found = _FRAME.match(line)
        if found:
            function = (found["func"] or "").strip()
            frames.append((index, Frame(found["path"], int(found["line"]), function)))
    return frames


def _error_line(block: list[str], last_frame: int) -> str:
    """The exception line after the last frame: the first line not indented."""
    for index in range(last_frame + 1, len(block)):
        line = block[index]
        if line and not line[0].isspace():
            message = [line.strip()]
            # A pydantic ValidationError names the field on the lines below.
            for more in block[index + 1 : index + 4]:
                if more.strip() and not more.startswith(("INFO", "ERROR", "WARNING")):
                    message.append(more.strip())
            return " / ".join(message) if "validation error" in line else line.strip()
    return ""


def explain_error(error: str, where: str, function: str = "") -> tuple[str, str]:
    """A plain hint and a lesson anchor for an exception seen in the learner's code.

    `function` is the learner's function it was raised in, when known.
    """
    missing = re.search(r"No module named '([^']+)'", error)
    if missing:
        module = missing.group(1).split(".")[0]
        if module == "uvicorn":
            return (
                "uvicorn is not installed in the Python the checks run with: run "
                "`python3 scripts/bootstrap.py`, or `.venv/bin/pip install -r "
                "module-1/log-collector/requirements.txt`.",
                "troubleshooting.md#uvicorn-not-found",
            )
        if module in {"main", "config"}:
            return (
                f"The checks run uvicorn in your log-collector folder; {module}.py "
                "must be there, next to main.py.",
                IMPORT_LESSON,
            )
        return (
            f"The package {module!r} is not installed in the Python the checks "
            f"run with ({sys.executable}). Add it to requirements.txt and install "
            "it: `.venv/bin/pip install -r module-1/log-collector/requirements.txt`.",
            IMPORT_LESSON,
        )
    if error.startswith(("SyntaxError", "IndentationError", "TabError")):
        return (
            f"Python cannot read {where}: fix the line shown (a missing bracket, "
            "colon or quote is often on the line before).",
            IMPORT_LESSON,
        )
    if "validation error for Settings" in error:
        return (
            "Your settings could not be read from the environment: check the field "
            "names and types in config.py (REDIS_PORT must be a number).",
            "module-1/step-2-queue.md#todo-2-1",
        )
    if "not JSON serializable" in error:
        return (
            "json.dumps cannot write a datetime: push entry.model_dump_json(), "
            "which writes the timestamp as ISO-8601 text.",
            "troubleshooting.md#datetime-json",
        )
    if "'State' object has no attribute" in error:
        return (
            "request.state has no Redis client: the lifespan must yield "
            '{"redis": client} (TODO 2.2).',
            "module-1/step-2-queue.md#todo-2-2",
        )
    if re.search(r"Error \d+ connecting to|Connection refused", error):
        return (
            "Your code could not reach Redis: connect to settings.redis_host and "
            "settings.redis_port, and turn a RedisError into a 503 (TODO 2.4).",
            "troubleshooting.md#redis-at-localhost",
        )
    if function == "lifespan":
        return (
            f"The lifespan failed as the app started: fix {where}. Running "
            "`uvicorn main:app` in your log-collector folder shows the same error.",
            "module-1/step-2-queue.md#todo-2-2",
        )
    return (
        f"Fix the error at {where or 'the line shown'}; running `python -c "
        '"import main"` in your log-collector folder shows the same error.',
        IMPORT_LESSON,
    )


class LearnerService:
    """The learner's collector as a uvicorn process on a free port."""

    def __init__(self, folder: Path, redis_host: str, redis_port: int) -> None:
        self.folder = folder
        self.redis_host = redis_host
        self.redis_port = redis_port
        self.process: Background | None = None
        self.client: httpx.Client | None = None
        self.base_url = ""
        self.failure: dict[str, str] | None = None
        # Where the output stood when the last request was sent, so that a 500
        # is explained by the traceback that request caused, not an older one.
        self.mark = 0
        # Routes that timed out once: "POST /logs" -> the request that did.
        self.slow_routes: dict[str, str] = {}

    # Starting and stopping

    def environment(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            # The learner's own shell settings must not steer the graded run:
            # QUEUE_NAME would hide a misspelt default, PYTHONWARNINGS could
            # turn a harmless deprecation into a crash.
            if key not in {"QUEUE_NAME", "PYTHONWARNINGS", "PYTHONPATH"}
            and not key.startswith("REDIS_")
        }
        env.update(
            REDIS_HOST=self.redis_host,
            REDIS_PORT=str(self.redis_port),
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
            # On SIGABRT, Python prints every thread's stack: where a hang is.
            PYTHONFAULTHANDLER="1",
        )
        return env

    def start(self) -> None:
        """Start the service and wait for it to answer; record a failure if it won't."""
        self.stop()
        self.failure = None
        for _attempt in range(3):
            port = free_port()
            self.process = Background(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "main:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=self.folder,
                env=self.environment(),
            )
            self.base_url = f"http://127.0.0.1:{port}"
            self.client = httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT)
            outcome = self._wait_until_answering()
            if outcome != "port taken":
                return
            # Another program took the port between our pick and uvicorn's bind.
            self.stop()

    def _wait_until_answering(self) -> str:
        assert self.process is not None
        assert self.client is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            code = self.process.exited()
            if code is not None:
                output = self.process.text()
                if "address already in use" in output.lower():
                    return "port taken"
                self.failure = self._exited_failure(code, output, during="start-up")
                return "failed"
            try:
                # FastAPI's own page: any answer at all means it is up.
                self.client.get("/openapi.json", timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            return "ready"
        self.failure = self._stuck_failure(
            f"Your service did not start answering within {STARTUP_TIMEOUT:.0f} s."
        )
        return "failed"

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is not None:
            self.process.stop()

    # What went wrong, in the learner's terms

    def _tail(self, count: int = 12) -> str:
        if self.process is None:
            return ""
        lines = [line for line in self.process.text().splitlines() if line.strip()]
        shown = "\n".join("    " + line[:200] for line in lines[-count:])
        return shown

    def _exited_failure(self, code: int, output: str, during: str) -> dict[str, str]:
        crash = read_crash(output, self.folder)
        where = crash.where(self.folder)
        if crash.error and where:
            function = crash.frame.function if crash.frame else ""
            hint, lesson = explain_error(crash.error, where, function)
            got = f"{crash.error}\n    at {where}: {crash.code}"
            problem = f"Your service crashed during {during}."
        elif 'Could not import module "main"' in output:
            problem = f"uvicorn found no main.py in {self.folder}."
            got, hint, lesson = (
                self._tail(),
                "Keep the app in main.py in your log-collector folder.",
                IMPORT_LESSON,
            )
        elif "Attribute" in output and "not found in module" in output:
            problem = "uvicorn found main.py but no `app` in it."
            got, hint, lesson = (
                self._tail(),
                "Keep the FastAPI object named `app`: uvicorn runs main:app.",
                IMPORT_LESSON,
            )
        elif crash.error:
            hint, lesson = explain_error(crash.error, "")
            problem = f"Your service crashed during {during}."
            got = f"{crash.error}\n{self._tail()}"
        else:
            problem = (
                f"Your service exited during {during} (exit code {code}) without "
                "an error message."
            )
            got = self._tail() or "(no output)"
            hint = (
                "Something in your code ends the program: look for sys.exit(), "
                "exit() or os._exit() in main.py or config.py."
            )
            lesson = IMPORT_LESSON
        return {"problem": problem, "got": got, "hint": hint, "lesson": lesson}

    def _stuck_failure(self, problem: str) -> dict[str, str]:
        """Abort a hung service to learn where it was stuck, then say so."""
        assert self.process is not None
        self.process.signal(signal.SIGABRT)
        self.process.wait(3)
        self.process.stop()
        crash = read_crash(self.process.text(), self.folder)
        where = crash.where(self.folder)
        size = self.process.output.total
        if where:
            got = f"still running {where}: {crash.code}"
            function = crash.frame.function if crash.frame else ""
            if function == "<module>":
                hint = (
                    "Code at the top level of your files runs when uvicorn imports "
                    "them: it must not loop or wait. Move it into a function."
                )
                lesson = IMPORT_LESSON
            elif function == "lifespan":
                hint = (
                    "The lifespan must reach its `yield` quickly: open the client, "
                    "yield it, and close it after (TODO 2.2)."
                )
                lesson = "module-1/step-2-queue.md#todo-2-2"
            else:
                hint = (
                    "That code blocks the server: in an `async def`, wait with "
                    "`await` (asyncio.sleep, the asyncio Redis client), never with "
                    "time.sleep or a loop that never ends."
                )
                lesson = IMPORT_LESSON
        else:
            got = self._tail() or "(no output)"
            hint = "Run `uvicorn main:app` in your log-collector folder and watch it."
            lesson = IMPORT_LESSON
        if size > 1024 * 1024:
            got += f"\n    (it printed {size // (1024 * 1024)} MB of output meanwhile)"
        return {"problem": problem, "got": got, "hint": hint, "lesson": lesson}

    def fail_with(self, failure: dict[str, str], sent: str | None = None) -> NoReturn:
        learner_fail(
            failure["problem"],
            hint=failure["hint"],
            lesson=failure["lesson"],
            sent=sent,
            got=failure["got"],
        )

    # Talking to it

    def ensure_running(self) -> None:
        """Fail the check if the service died since the last one."""
        assert self.process is not None
        code = self.process.exited()
        if code is not None:
            self.failure = self._exited_failure(code, self.process.text(), "the checks")
            self.fail_with(self.failure)

    def request(
        self,
        method: str,
        path: str,
        sent: str,
        *,
        during_outage: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request; a learner failure if the service cannot answer it.

        A route that once took longer than the timeout is given only
        SLOW_ROUTE_TIMEOUT after that: answers that skip the slow part (a 422)
        still come back in time, and a slow service's run stays short. Requests
        sent `during_outage` (Redis stopped on purpose) mark nothing, since a
        slow answer then says nothing about later.
        """
        if self.failure is not None:
            self.fail_with(self.failure, sent)
        route = f"{method} {path}"
        self.ensure_running()
        assert self.client is not None
        assert self.process is not None
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        if route in self.slow_routes:
            kwargs["timeout"] = min(kwargs["timeout"], SLOW_ROUTE_TIMEOUT)
        self.mark = self.process.output.total
        try:
            return self.client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            timeout = kwargs["timeout"]
            if self._still_answers():
                earlier = self.slow_routes.get(route)
                if not during_outage and earlier is None:
                    self.slow_routes[route] = sent
                learner_fail(
                    f"Your service did not answer within {timeout:g} s.",
                    sent=sent,
                    got="no answer yet"
                    + (
                        f" (an earlier request took over {REQUEST_TIMEOUT:g} s too, "
                        f"so this one was given {timeout:g} s: {earlier})"
                        if earlier
                        else ""
                    ),
                    expected=f"an answer within {timeout:g} s",
                    hint=SLOW_HINT,
                    lesson="module-1/step-2-queue.md#todo-2-4",
                )
            failure = self._stuck_failure(
                f"Your service stopped answering (no answer within {timeout:.0f} s)."
            )
            self.failure = failure
            self.fail_with(failure, sent)
        except httpx.TransportError as exc:
            code = self.process.wait(2)
            if code is not None:
                failure = self._exited_failure(code, self.process.text(), "a request")
                self.failure = failure
                self.fail_with(failure, sent)
            learner_fail(
                "Your service dropped the connection without an answer.",
                sent=sent,
                got=f"{type(exc).__name__}: {exc}",
                expected="an HTTP answer",
                hint="Look at the service's output for an error.",
                lesson=IMPORT_LESSON,
            )

    def _still_answers(self) -> bool:
        assert self.client is not None
        try:
            self.client.get("/openapi.json", timeout=1.0)
        except httpx.TransportError:
            return False
        return True

    def output_since_request(self) -> str:
        """What the service printed since the last request was sent."""
        if self.process is None:
            return ""
        # Its output pipe is read by a thread; give it a moment to catch up.
        time.sleep(0.1)
        return self.process.output.since(self.mark)

    def explain(self, response: httpx.Response) -> tuple[str, str, str | None] | None:
        """(hint, lesson, todo) for an answer whose cause is a common mistake."""
        status = response.status_code
        if status == 501:
            todo = re.search(r"TODO (\d)\.(\d)", response.text)
            if todo:
                number = f"{todo[1]}.{todo[2]}"
                return (
                    f"That part is not written yet: do TODO {number}.",
                    todo_lesson(number),
                    number,
                )
        if status == 422:
            errors = validation_errors(response)
            if any(loc[:1] == ["query"] for loc, _ in errors):
                return (
                    "FastAPI reads plain function parameters from the query string. "
                    "Take one parameter `log: LogIn` instead: a Pydantic model is "
                    "read from the JSON body.",
                    "troubleshooting.md#query-parameters",
                    "1.1",
                )
            if any(
                kind == "extra_forbidden" and loc[-1:] and loc[-1] in FIELDS
                for loc, kind in errors
            ):
                return (
                    "LogIn declares no such fields yet: declare service_name, "
                    "level and message in it (TODO 1.1).",
                    "module-1/step-1-api.md#todo-1-1",
                    "1.1",
                )
        if status == 500:
            crash = read_crash(self.output_since_request(), self.folder)
            if crash.error:
                where = crash.where(self.folder)
                hint, lesson = explain_error(crash.error, where)
                place = f" at {where}: {crash.code}" if where else ""
                return (f"Your code raised {crash.error}{place}. {hint}", lesson, None)
        if status == 503:
            return (
                f"Your service could not reach the Redis the grader gave it in "
                f"REDIS_HOST={self.redis_host} and REDIS_PORT={self.redis_port}. "
                "Read both through settings (config.py, TODO 2.1) and open the "
                "client with settings.redis_host and settings.redis_port (TODO "
                "2.2); a hard-coded localhost or 6379 fails in Compose too.",
                "troubleshooting.md#redis-at-localhost",
                "2.1",
            )
        if status in {404, 405}:
            return (
                'Keep the route as the starter has it: @app.post("/logs") and '
                '@app.get("/health").',
                "module-1/step-1-api.md#check-your-work",
                None,
            )
        return None

    def fail_unexpected(
        self,
        problem: str,
        response: httpx.Response,
        *,
        sent: str,
        expected: str,
        hint: str,
        lesson: str,
        todo: str | None = None,
    ) -> NoReturn:
        """Fail for an unexpected answer, naming its likely cause where known."""
        known = self.explain(response)
        if known is not None:
            hint, lesson, todo = known[0], known[1], known[2] or todo
        got = describe(response)
        if response.status_code >= 500:
            printed = [
                line for line in self.output_since_request().splitlines() if line
            ]
            if printed:
                got += "\n  service printed:\n" + "\n".join(
                    "    " + line[:200] for line in printed[-8:]
                )
        learner_fail(
            problem,
            sent=sent,
            got=got,
            expected=expected,
            hint=hint,
            lesson=lesson,
            todo=todo,
        )


def todo_lesson(number: str) -> str:
    """The lesson anchor of a TODO: "2.3" → module-1/step-2-queue.md#todo-2-3."""
    pages = {"1": "step-1-api", "2": "step-2-queue", "3": "step-3-dockerfile"}
    step, _, part = number.partition(".")
    return f"module-1/{pages.get(step, 'index')}.md#todo-{step}-{part}"


def validation_errors(response: httpx.Response) -> list[tuple[list[str], str]]:
    """(location, type) of each error in a FastAPI 422 answer; [] for another shape."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return []
    if not isinstance(detail, list):
        return []
    found = []
    for error in detail:
        if isinstance(error, dict):
            loc = [str(part) for part in error.get("loc", [])]
            found.append((loc, str(error.get("type", ""))))
    return found


def describe(response: httpx.Response, limit: int = 300) -> str:
    """An answer as the learner would see it with curl: status and body."""
    body = response.text.strip()
    if len(body) > limit:
        body = body[:limit] + f"... ({len(response.content)} bytes)"
    return f"{response.status_code} {body}".rstrip()
