"""Run other programs from a check without letting them hang or outlive the grader.

A learner's code can loop forever, print without end, or start processes of its
own. So every program a check starts runs in its own process group, every wait
is bounded, output is kept up to a cap (its start and its end, where a traceback
is), and stopping a program kills its whole group. Whatever is still running
when the run ends is killed by `stop_all`, which conftest calls.

- `run` waits for a short command (docker, redis-cli) and never raises on a
  timeout: the result says `timed_out`.
- `Background` keeps a server running (uvicorn, redis-server) while checks talk
  to it.
"""

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Enough for any traceback and a screenful of log lines, small enough that a
# program printing megabytes cannot slow the grader down.
OUTPUT_CAP = 128 * 1024

_running: set["Background"] = set()
_running_lock = threading.Lock()


class CappedOutput:
    """The first and the last bytes a program wrote, and how many there were."""

    def __init__(self, cap: int = OUTPUT_CAP) -> None:
        self._half = cap // 2
        self._head = bytearray()
        self._tail = bytearray()
        self._lock = threading.Lock()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        with self._lock:
            self.total += len(chunk)
            room = self._half - len(self._head)
            if room > 0:
                self._head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self._tail += chunk
                # Trim in bulk rather than per chunk: cheap, and still bounded.
                if len(self._tail) > 2 * self._half:
                    del self._tail[: len(self._tail) - self._half]

    def text(self) -> str:
        """Everything kept, with a marker where bytes were left out."""
        with self._lock:
            tail = bytes(self._tail[-self._half :])
            left_out = self.total - len(self._head) - len(tail)
            parts = [bytes(self._head).decode(errors="replace")]
            if left_out > 0:
                parts.append(f"\n[... {left_out} bytes left out ...]\n")
            parts.append(tail.decode(errors="replace"))
        return "".join(parts)

    def since(self, mark: int) -> str:
        """What was written after `total` was `mark`, as far as it was kept."""
        with self._lock:
            tail_start = self.total - len(self._tail)
            if mark >= tail_start:
                kept = bytes(self._tail[mark - tail_start :])
            elif mark < len(self._head):
                gap = b"\n[...]\n" if tail_start > len(self._head) else b""
                kept = bytes(self._head[mark:]) + gap + bytes(self._tail)
            else:
                kept = b"[...]\n" + bytes(self._tail)
        return kept.decode(errors="replace")


@dataclass(frozen=True)
class Finished:
    """How a short command ended."""

    args: tuple[str, ...]
    returncode: int | None  # None when it was killed for taking too long
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


def run(
    args: Sequence[str],
    *,
    timeout: float,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
) -> Finished:
    """Run a command to its end, or kill it and its children after `timeout` s.

    A missing program raises FileNotFoundError, as subprocess does: the caller
    knows best what to tell the learner to install.
    """
    started = time.monotonic()
    process = subprocess.Popen(
        list(args),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process.pid, signal.SIGKILL)
        # The group is dead, so the pipes close and this returns promptly.
        stdout, stderr = process.communicate(timeout=10)
    except BaseException:
        # Interrupted (Ctrl-C, a check's own timeout): leave nothing behind.
        _kill_group(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)
        raise
    return Finished(
        args=tuple(args),
        returncode=None if timed_out else process.returncode,
        stdout=_cap(stdout or ""),
        stderr=_cap(stderr or ""),
        timed_out=timed_out,
        seconds=time.monotonic() - started,
    )


def _cap(text: str) -> str:
    if len(text) <= OUTPUT_CAP:
        return text
    left_out = len(text) - OUTPUT_CAP
    return f"[... {left_out} characters left out ...]\n" + text[-OUTPUT_CAP:]


class Background:
    """A program kept running while checks talk to it, in its own process group."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        cap: int = OUTPUT_CAP,
    ) -> None:
        self.args = tuple(args)
        self.output = CappedOutput(cap)
        self.process = subprocess.Popen(
            (*_dies_with_grader(), *self.args),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with _running_lock:
            _running.add(self)
        # Drain the pipe all the time: a program whose pipe fills up blocks,
        # which would look like a hang that is really the grader's doing.
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while chunk := stream.read1(65536):
            self.output.add(chunk)

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        """The exit code if the program has ended, else None."""
        return self.process.poll()

    def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` s for the program to end; its exit code or None."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.process.wait(timeout)
        return None

    def signal(self, signum: int) -> None:
        """Send a signal to the program itself (not its group)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)

    def text(self) -> str:
        """Its output so far, once the reader has caught up when it has ended."""
        if self.process.poll() is not None:
            self._reader.join(timeout=2)
        return self.output.text()

    def stop(self, grace: float = 3.0) -> int | None:
        """Ask the group to stop, kill it after `grace` s; always bounded."""
        if self.process.poll() is None:
            _kill_group(self.pid, signal.SIGTERM)
            if self.wait(grace) is None:
                _kill_group(self.pid, signal.SIGKILL)
                self.wait(5)
        # Children that ignored SIGTERM outlive their parent in its group.
        _kill_group(self.pid, signal.SIGKILL)
        self._reader.join(timeout=2)
        if self.process.stdout is not None:
            self.process.stdout.close()
        with _running_lock:
            _running.discard(self)
        return self.process.returncode


@functools.cache
def _dies_with_grader() -> tuple[str, ...]:
    """A prefix that has the kernel kill a server when the grader dies, if it can.

    `stop_all` and the signal handlers cover every end the grader sees coming;
    a SIGKILL (an IDE's stop button, the OOM killer) gives it no chance. With
    `setpriv --pdeathsig KILL` (util-linux, Linux) the server is killed the
    moment the grader is, whatever ended it. That is set in setpriv, which then
    execs the server with the same pid, rather than in a preexec_fn, which is
    unsafe in a grader with threads. Elsewhere (macOS, an older util-linux
    without --pdeathsig) there is no prefix, and the rest still applies.
    """
    setpriv = shutil.which("setpriv")
    if not sys.platform.startswith("linux") or setpriv is None:
        return ()
    prefix = (setpriv, "--pdeathsig", "KILL")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", ""], capture_output=True, timeout=10
        )
        if probe.returncode == 0:
            return prefix
    return ()


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def stop_all() -> None:
    """Stop every Background program still running: the run's last safety net."""
    with _running_lock:
        left = list(_running)
    for program in left:
        program.stop(grace=1.0)
