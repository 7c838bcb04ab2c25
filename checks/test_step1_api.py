"""Step 1, the API: POST /logs takes a JSON body and rejects what it should.

These checks judge only validation (TODO 1.1), so a service whose queue is not
written yet (answering 501) still passes them; step 2 grades the queue.
"""

import json
from typing import Any

import httpx
import pytest
from grading import learner_fail
from learner_service import FIELDS, LearnerService, describe, validation_errors

pytestmark = [pytest.mark.step(1), pytest.mark.timeout(90)]

LESSON = "module-1/step-1-api.md#todo-1-1"
VALID = {
    "service_name": "payment-service",
    "level": "ERROR",
    "message": "Transaction failed",
}
DECLARE = (
    "Declare the three fields in LogIn: service_name and message as NonBlank, "
    "level as a Literal of the five level names."
)


def post(service: LearnerService, body: Any) -> tuple[httpx.Response, str]:
    sent = f"POST /logs {json.dumps(body)}"
    return service.request("POST", "/logs", sent, json=body), sent


def rejected(response: httpx.Response) -> bool:
    """Turned away for what was sent (4xx), rather than taken in (2xx, 5xx)."""
    return 400 <= response.status_code < 500


def names_field(response: httpx.Response, field: str) -> bool:
    """Does a 422 answer find fault with `field`'s value (or its absence)?

    An "extra inputs are not permitted" error names the field too, but only
    because LogIn does not declare it: that does not count.
    """
    errors = validation_errors(response)
    if not errors:
        # Not FastAPI's shape (a handler of the learner's own): the name will do.
        return field in response.text
    return any(kind != "extra_forbidden" for loc, kind in errors if field in loc)


def expect_rejection_naming(
    service: LearnerService, body: dict[str, Any], field: str, why: str
) -> None:
    response, sent = post(service, body)
    if response.status_code != 422:
        service.fail_unexpected(
            f"An entry with {why} was not answered 422.",
            response,
            sent=sent,
            expected=f"422, with an error about {field}",
            hint=DECLARE,
            lesson=LESSON,
            todo="1.1",
        )
    if not names_field(response, field):
        known = service.explain(response)
        learner_fail(
            f"An entry with {why} was answered 422, but the answer does not name "
            f"{field}.",
            sent=sent,
            got=describe(response),
            expected=f"422, with an error about {field}",
            hint=known[0] if known else DECLARE,
            lesson=known[1] if known else LESSON,
            todo="1.1",
        )


def test_valid_entry_is_not_rejected(service: LearnerService) -> None:
    """A valid log entry is not rejected."""
    response, sent = post(service, VALID)
    if rejected(response):
        service.fail_unexpected(
            "A valid entry was rejected.",
            response,
            sent=sent,
            expected="not a 4xx (step 1 leaves the queue to step 2: 501 is fine)",
            hint=DECLARE,
            lesson=LESSON,
            todo="1.1",
        )


def test_missing_field_is_rejected_naming_it(service: LearnerService) -> None:
    """An entry missing a field is answered 422, naming the field."""
    for field in FIELDS:
        body = {key: value for key, value in VALID.items() if key != field}
        expect_rejection_naming(service, body, field, f"no {field}")


def test_empty_text_is_rejected_naming_the_field(service: LearnerService) -> None:
    """An empty or blank service_name or message is answered 422, naming it."""
    for field in ("service_name", "message"):
        for blank in ("", "   "):
            body = {**VALID, field: blank}
            expect_rejection_naming(service, body, field, f"{field} {blank!r}")


def test_unknown_level_is_rejected_naming_it(service: LearnerService) -> None:
    """An unknown level is answered 422, naming level."""
    expect_rejection_naming(
        service, {**VALID, "level": "VERBOSE"}, "level", "level VERBOSE"
    )


def test_fields_are_read_from_the_json_body(service: LearnerService) -> None:
    """The fields are read from the JSON body, not from the query string."""
    response, sent = post(service, VALID)
    if response.status_code == 422:
        service.fail_unexpected(
            "A valid entry sent as a JSON body was rejected.",
            response,
            sent=sent,
            expected="the fields read from the body (any answer but 4xx)",
            hint=DECLARE,
            lesson=LESSON,
            todo="1.1",
        )
    sent = "POST /logs?" + str(httpx.QueryParams(VALID)) + " (no body)"
    response = service.request("POST", "/logs", sent, params=VALID)
    if not rejected(response):
        learner_fail(
            "An entry sent in the query string, with no body, was taken in.",
            sent=sent,
            got=describe(response),
            expected="422: the entry belongs in the JSON body",
            hint=(
                "Take the entry as one parameter `log: LogIn`, so FastAPI reads it "
                "from the JSON body, and nothing from the query string."
            ),
            lesson="troubleshooting.md#query-parameters",
            todo="1.1",
        )
