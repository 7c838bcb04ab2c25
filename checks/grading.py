"""What every check uses to tell a learner what went wrong.

A check fails through `learner_fail`, never a bare assert: the message says what
was sent, what came back, what was expected, which TODO to revisit and which
lesson section explains it, with no Python traceback. The hint and the lesson
anchor also travel with the test report, for the summary table and the results
file.
"""

from typing import NoReturn

import pytest

DOCS_URL = "http://127.0.0.1:8001/"

# Each step of the module: its title in the report, and the lesson page that
# teaches it (a passing or skipped check links to the page's check section).
STEPS = {
    0: ("environment", "setup.md#environment-check"),
    1: ("the API", "module-1/step-1-api.md#check-your-work"),
    2: ("the queue", "module-1/step-2-queue.md#check-your-work"),
    3: ("the Dockerfile", "module-1/step-3-dockerfile.md#check-your-work"),
    4: ("the image", "module-1/step-4-image.md#check-your-work"),
    5: ("the Compose stack", "module-1/step-5-compose.md#check-your-work"),
}


class LearnerFailure(pytest.fail.Exception):
    """A failed check, carrying its hint and the lesson anchor that explains it."""

    def __init__(self, msg: str, hint: str, lesson: str) -> None:
        super().__init__(msg, pytrace=False)
        self.hint = hint
        self.lesson = lesson


# The hints this run has printed in full; pytest lists failures in run order.
_HINTS_SHOWN: set[str] = set()


def learner_fail(
    problem: str,
    *,
    hint: str,
    lesson: str,
    sent: str | None = None,
    got: str | None = None,
    expected: str | None = None,
    todo: str | None = None,
) -> NoReturn:
    """Fail the current check with a message written for the learner.

    `lesson` is a page path and anchor under docs/, for example
    "module-1/step-2-queue.md#todo-2-3"; `todo` is a number such as "2.3".
    """
    lines = [problem]
    if sent is not None:
        lines.append(f"  sent:     {sent}")
    if got is not None:
        lines.append(f"  got:      {got}")
    if expected is not None:
        lines.append(f"  expected: {expected}")
    if todo is not None:
        lines.append(f"  revisit:  TODO {todo}")
    if hint in _HINTS_SHOWN:
        # Several checks often fail for one reason; say it once.
        lines.append("  hint:     the same as above")
    else:
        _HINTS_SHOWN.add(hint)
        lines.append(f"  hint:     {hint}")
        lines.append(f"  lesson:   {lesson_url(lesson)}")
    # `from None`: called while handling an error (a timeout, say), the message
    # alone is the report; the grader's own exception chain is noise to a learner.
    raise LearnerFailure("\n".join(lines), hint=hint, lesson=lesson) from None


class CheckSkipped(pytest.skip.Exception):
    """A check that could not run here, carrying the fix and the lesson anchor."""

    def __init__(self, msg: str, hint: str, lesson: str) -> None:
        super().__init__(msg)
        self.hint = hint
        self.lesson = lesson


def skip_check(reason: str, *, fix: str, lesson: str) -> NoReturn:
    """Skip the current check because this machine lacks something it needs.

    `reason` says what is missing, `fix` the command or action that provides it.
    """
    message = f"{reason}\n  fix:      {fix}\n  lesson:   {lesson_url(lesson)}"
    raise CheckSkipped(message, hint=fix, lesson=lesson) from None


# pytest names an exception by its module in its one-line summaries; shown as
# builtins, they read "LearnerFailure: ..." rather than "grading.LearnerFailure".
LearnerFailure.__module__ = CheckSkipped.__module__ = "builtins"


def lesson_url(lesson: str) -> str:
    """The address of a lesson section on the local lessons site (mkdocs serve)."""
    page, _, anchor = lesson.partition("#")
    page = page.removesuffix(".md").removesuffix("index")
    url = DOCS_URL + (page + "/" if page and not page.endswith("/") else page)
    return url + (f"#{anchor}" if anchor else "")
