"""Bad input against the finished collector: fuzzed from its schema, then by hand.

The fuzzing half runs schemathesis in-process (ASGI, no socket) against the
solution app with a real Redis behind it: nothing may answer 500, every status
must be one the OpenAPI schema documents, and the queue may grow only by the
entries the app answered 202 for.

The explicit half sends each kind of bad body over real HTTP to uvicorn, as the
image runs it, and checks that the queue is untouched afterwards. Some answers
come from the framework rather than from main.py, so what each kind gets is
written down here:

- a body that is not JSON, JSON that is not an object, or no JSON content type:
  422 with `loc` ["body"] (or ["body", <offset>] for a syntax error)
- a field that is missing, blank, too long, of the wrong type or not allowed:
  422 with `loc` ["body", "<field>"]. Extra fields are rejected, not ignored: a
  typo such as "mesage" would otherwise lose the message without a word.
- a body over 64 KiB: 413. When the client sends Content-Length, Starlette
  refuses before reading and answers in plain text ("Content Too Large"); a
  chunked body is refused while it is read, with JSON {"detail": ...}.
- bytes that are not UTF-8, or JSON nested too deep to parse: 400
  {"detail": "There was an error parsing the body"}
- control characters in a message are accepted: stack traces carry newlines
  and tabs, and the queued entry is JSON, which escapes them, so they cannot
  break the queue's format. A lone surrogate is not text at all: 422.
"""

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import redis
import schemathesis
from conftest import SOLUTION, RedisServer, free_port, need, wait_until
from schemathesis.config import SchemathesisConfig

ENTRY = {
    "service_name": "payment-service",
    "level": "ERROR",
    "message": "Transaction failed",
}
JSON = {"Content-Type": "application/json"}
MAX_BODY = 64 * 1024

# --- Fuzzing from the schema -------------------------------------------------

FUZZ_CONFIG = {
    # Both valid and invalid requests; a few hundred per operation keeps the
    # run under half a minute on a 2-core machine.
    "generation": {"mode": "all", "max-examples": 150, "database": "none"},
    "checks": {
        # 413 is how the app rejects an oversized body, so it counts as a
        # rejection. (schemathesis' own list leaves it out.)
        "negative_data_rejection": {
            "expected-statuses": ["400", "413", "422", "503"],
        },
        # The schema cannot say "not only whitespace" in a way JSON Schema and
        # Python agree on, so schemathesis would call a valid-looking "  " a
        # wrongly rejected entry. The test below checks acceptance itself.
        "positive_data_acceptance": {"enabled": False},
    },
}


def import_main(folder: Path) -> ModuleType:
    """Import main.py from `folder` as the top-level module `main`, anew."""
    for name in ("main", "config"):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("main")
    finally:
        sys.path.remove(str(folder))


@pytest.fixture
def solution_app(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch):
    """The solution's FastAPI app, configured for this test's Redis.

    main.py reads its settings from the environment when it is imported, so it
    is imported afresh; the modules it replaces are put back afterwards.
    """
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", str(redis_server.port))
    saved = {name: sys.modules.get(name) for name in ("main", "config")}
    yield import_main(SOLUTION).app
    for name, module in saved.items():
        sys.modules.pop(name, None)
        if module is not None:
            sys.modules[name] = module


@pytest.fixture
def api_schema(solution_app):
    config = SchemathesisConfig.from_dict(FUZZ_CONFIG)
    return schemathesis.openapi.from_asgi("/openapi.json", solution_app, config=config)


@pytest.fixture
def api_schema_redis_down(solution_app, redis_server):
    redis_server.stop()
    checks = FUZZ_CONFIG["checks"] | {
        # With Redis gone, a documented 503 is the right answer, not a fault.
        "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
    }
    config = SchemathesisConfig.from_dict(FUZZ_CONFIG | {"checks": checks})
    return schemathesis.openapi.from_asgi("/openapi.json", solution_app, config=config)


schema = schemathesis.pytest.from_fixture("api_schema")
schema_redis_down = schemathesis.pytest.from_fixture("api_schema_redis_down")


@schema.parametrize()
def test_fuzzed_requests_get_documented_answers_and_never_a_500(case, redis_server):
    queue = redis_server.client()
    before = queue.llen("logs_queue")

    # Runs schemathesis' checks: no 5xx, every status and body as documented.
    response = case.call_and_validate()

    grown = queue.llen("logs_queue") - before
    if response.status_code == 202:
        assert grown == 1
        assert json.loads(queue.lindex("logs_queue", 0)) == response.json()
    else:
        assert grown == 0, f"answered {response.status_code}, yet the queue grew"
    if case.method == "POST" and case.meta.generation.mode.is_positive:
        expect_valid_entry_accepted(case.body, response)


def expect_valid_entry_accepted(body: dict, response) -> None:
    """A schema-valid entry is queued unless a field is blank or it is too big."""
    sent = response.request.body
    size = len(sent.encode() if isinstance(sent, str) else sent)
    blank = [field for field in ("service_name", "message") if not body[field].strip()]
    if size > MAX_BODY:  # refused before it is parsed
        assert response.status_code == 413
    elif blank:
        locs = [error["loc"] for error in response.json()["detail"]]
        assert response.status_code == 422
        assert all(["body", field] in locs for field in blank), locs
    else:
        assert response.status_code == 202, response.text


@schema_redis_down.parametrize()
def test_fuzzed_requests_with_redis_down_get_documented_answers(case):
    response = case.call_and_validate()

    if (case.method, case.path) == ("POST", "/logs"):
        assert response.status_code in {400, 413, 422, 503}, response.text
    elif (case.method, case.path) == ("GET", "/health"):
        assert response.status_code == 503, response.text
    else:  # schemathesis also tries the methods a path does not offer
        assert response.status_code == 405, response.text


# --- Explicit bad bodies, over real HTTP -------------------------------------


@dataclass
class Served:
    url: str
    queue: redis.Redis  # answers str
    raw: redis.Redis  # answers bytes, as stored


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One Redis and one uvicorn for every explicit case: each case leaves the
    queue as it found it, or says so."""
    need(shutil.which("redis-server") is not None, "redis-server is not on PATH")
    folder = tmp_path_factory.mktemp("bad-input")
    server = RedisServer(folder)
    server.start()
    port = free_port()
    log_path = folder / "uvicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port)],
            cwd=SOLUTION,
            env={
                **os.environ,
                "REDIS_HOST": "127.0.0.1",
                "REDIS_PORT": str(server.port),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def listening() -> bool:
        try:
            return httpx.get(url + "/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(listening, 20, "the collector to answer /health")
        raw = redis.Redis(port=server.port, socket_timeout=5)
        yield Served(url, server.client(), raw)
    finally:
        process.terminate()
        process.wait(timeout=10)
        server.stop()


def test_every_status_these_tests_expect_is_in_the_schema(served):
    paths = httpx.get(served.url + "/openapi.json").json()["paths"]

    assert set(paths["/logs"]["post"]["responses"]) == {
        "202",
        "400",
        "413",
        "422",
        "503",
    }
    assert set(paths["/health"]["get"]["responses"]) == {"200", "503"}


@pytest.fixture
def untouched_queue(served: Served) -> Iterator[None]:
    """Fail unless the case leaves Redis exactly as it found it."""
    before = served.queue.lrange("logs_queue", 0, -1), served.queue.dbsize()
    yield
    after = served.queue.lrange("logs_queue", 0, -1), served.queue.dbsize()
    assert after == before, "a rejected request changed what is in Redis"


def body(**changes: object) -> bytes:
    """The README's entry as JSON, with some fields changed or added."""
    return json.dumps({**ENTRY, **changes}).encode()


def without(field: str) -> bytes:
    return json.dumps({k: v for k, v in ENTRY.items() if k != field}).encode()


# (body, headers, the field the answer must name, or None for the body itself)
UNPROCESSABLE = {
    "malformed JSON": (b'{"service_name": "payment-service", "level"', JSON, None),
    "text/plain content type": (body(), {"Content-Type": "text/plain"}, None),
    "form content type": (
        b"service_name=payment-service&level=ERROR&message=Transaction+failed",
        {"Content-Type": "application/x-www-form-urlencoded"},
        None,
    ),
    "no content type": (body(), {}, None),
    "empty body": (b"", JSON, None),
    "JSON null": (b"null", JSON, None),
    "JSON array": (json.dumps([ENTRY]).encode(), JSON, None),
    "JSON string": (b'"Transaction failed"', JSON, None),
    "JSON number": (b"42", JSON, None),
    "NaN as the body": (b"NaN", JSON, None),
    "missing service_name": (without("service_name"), JSON, "service_name"),
    "missing level": (without("level"), JSON, "level"),
    "missing message": (without("message"), JSON, "message"),
    "empty service_name": (body(service_name=""), JSON, "service_name"),
    "empty message": (body(message=""), JSON, "message"),
    "whitespace-only message": (body(message=" \t\r\n "), JSON, "message"),
    "ideographic-space service_name": (
        body(service_name="\u3000"),
        JSON,
        "service_name",
    ),
    "unknown level": (body(level="LOUD"), JSON, "level"),
    "lowercase level": (body(level="error"), JSON, "level"),
    "level with a trailing space": (body(level="ERROR "), JSON, "level"),
    "extra field": (body(mesage="typo"), JSON, "mesage"),
    "extra nested field": (body(context={"user": 1}), JSON, "context"),
    "number as service_name": (body(service_name=5), JSON, "service_name"),
    "true as message": (body(message=True), JSON, "message"),
    "null as level": (body(level=None), JSON, "level"),
    "object as message": (body(message={"text": "x"}), JSON, "message"),
    "nested arrays as message": (
        body(message=[[[[[[[[["deep"]]]]]]]]]),
        JSON,
        "message",
    ),
    "200-deep object as message": (
        b'{"service_name": "p", "level": "ERROR", "message": '
        + b'{"a": ' * 200
        + b"1"
        + b"}" * 201,
        JSON,
        "message",
    ),
    "message of 16385 characters": (body(message="m" * 16_385), JSON, "message"),
    "service_name of 101 characters": (
        body(service_name="s" * 101),
        JSON,
        "service_name",
    ),
    "NaN as message": (
        b'{"service_name": "p", "level": "ERROR", "message": NaN}',
        JSON,
        "message",
    ),
    "1e999 as message": (
        b'{"service_name": "p", "level": "ERROR", "message": 1e999}',
        JSON,
        "message",
    ),
    "lone surrogate in message": (
        b'{"service_name": "p", "level": "ERROR", "message": "\\ud800"}',
        JSON,
        "message",
    ),
}


@pytest.mark.usefixtures("untouched_queue")
@pytest.mark.parametrize(
    ("content", "headers", "field"), UNPROCESSABLE.values(), ids=UNPROCESSABLE.keys()
)
def test_bad_body_is_422_naming_the_field(served, content, headers, field):
    response = httpx.post(served.url + "/logs", content=content, headers=headers)

    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in response.json()["detail"]]
    if field is None:
        assert all(loc[:1] == ["body"] and len(loc) <= 2 for loc in locs), locs
    else:
        assert ["body", field] in locs, locs


UNPARSEABLE = {
    "latin-1 bytes": b'{"service_name": "p", "level": "ERROR", "message": "caf\xe9"}',
    "invalid UTF-8": b'{"service_name": "p", "level": "ERROR", "message": "\xff\xfe"}',
    "arrays nested 30000 deep": b"[" * 30_000 + b"]" * 30_000,
}


@pytest.mark.usefixtures("untouched_queue")
@pytest.mark.parametrize("content", UNPARSEABLE.values(), ids=UNPARSEABLE.keys())
def test_body_that_cannot_be_parsed_is_400(served, content):
    response = httpx.post(served.url + "/logs", content=content, headers=JSON)

    assert response.status_code == 400, response.text
    assert response.json() == {"detail": "There was an error parsing the body"}


def padded(size: int) -> bytes:
    """A valid entry padded with JSON whitespace to exactly `size` bytes."""
    content = body()
    return content[:-1] + b" " * (size - len(content)) + b"}"


@pytest.mark.usefixtures("untouched_queue")
def test_body_over_64_kib_with_content_length_is_a_plain_413(served):
    response = httpx.post(
        served.url + "/logs", content=padded(MAX_BODY + 1), headers=JSON
    )

    assert response.status_code == 413
    assert response.request.headers["Content-Length"] == str(MAX_BODY + 1)
    # Refused from the header alone, before the body is read: plain text.
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "Content Too Large"


@pytest.mark.usefixtures("untouched_queue")
def test_chunked_body_over_64_kib_is_a_json_413(served):
    content = padded(MAX_BODY + 1)
    chunks = (content[i : i + 4096] for i in range(0, len(content), 4096))

    response = httpx.post(served.url + "/logs", content=chunks, headers=JSON)

    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 413
    assert response.json() == {"detail": "Content Too Large"}


@pytest.mark.usefixtures("untouched_queue")
def test_16384_emoji_fit_the_field_but_not_the_body_limit(served):
    # Four bytes each in UTF-8: 64 KiB of message alone, so the body is over.
    content = json.dumps(
        {**ENTRY, "message": "\U0001f600" * 16_384}, ensure_ascii=False
    )

    response = httpx.post(served.url + "/logs", content=content.encode(), headers=JSON)

    assert response.status_code == 413


def test_body_of_exactly_64_kib_is_accepted(served):
    response = httpx.post(served.url + "/logs", content=padded(MAX_BODY), headers=JSON)

    assert response.status_code == 202, response.text
    assert json.loads(served.queue.lindex("logs_queue", 0)) == response.json()


def test_message_of_exactly_16384_characters_is_accepted(served):
    response = httpx.post(
        served.url + "/logs", content=body(message="m" * 16_384), headers=JSON
    )

    assert response.status_code == 202, response.text
    assert json.loads(served.queue.lindex("logs_queue", 0))["message"] == "m" * 16_384


# Each is text a real service may log; none may be changed on the way through.
ROUND_TRIPS = {
    "emoji and a ZWJ sequence": "failed \U0001f4a5 for \U0001f469\u200d\U0001f4bb",
    "CJK": "支払いに失敗しました 결제 실패 支付失败",
    "right-to-left with an override": "فشل الدفع \u202eabc\u202c תשלום נכשל",
    "combining marks, not normalised": "e\u0301 a\u0308 \u1100\u1161 Z\u0351\u0346",
    "outside the BMP": "\U0001d11e \U00010348 \U0001f9ea",
    "control characters": "line 1\nline 2\r\n\ttab \x07bell \x1b[31mred\x1b[0m \x7f",
    "NUL": "before\x00after",
    "line and paragraph separators": "a\u2028b\u2029c",
    "byte order mark and zero-width space": "\ufeffstart\u200bend",
    "JSON-looking text": '{"level": "DEBUG"}\\"',
}


@pytest.mark.parametrize("message", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_unicode_message_round_trips_through_redis_byte_for_byte(served, message):
    sent = json.dumps({**ENTRY, "message": message}, ensure_ascii=False).encode()

    response = httpx.post(served.url + "/logs", content=sent, headers=JSON)

    assert response.status_code == 202, response.text
    stored_bytes = served.raw.lindex("logs_queue", 0)
    stored = json.loads(stored_bytes)
    assert stored["id"] == response.json()["id"]
    assert stored["message"].encode("utf-8") == message.encode("utf-8")
    assert response.json()["message"] == message
    # What JSON need not escape is stored as the same UTF-8 bytes that were sent.
    printable = "".join(ch for ch in message if ch.isprintable() and ch not in '"\\')
    for ch in printable:
        assert ch.encode("utf-8") in stored_bytes, repr(ch)
