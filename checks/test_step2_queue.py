"""Step 2, the queue: each accepted entry lands in Redis, once, as JSON.

The service runs against the grader's own Redis, on a port that is never 6379
and (on Linux) the address 127.0.0.2, given to it in REDIS_HOST and REDIS_PORT.
The grader reads the queue with its own client and decodes the bytes itself;
each check starts from an empty queue.
"""

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from grading import learner_fail, skip_check
from learner_service import FIELDS, LearnerService, describe
from processes import run
from redis_servers import RedisServer, decode, list_keys

pytestmark = [pytest.mark.step(2), pytest.mark.timeout(90)]

QUEUE = "logs_queue"
PAGE = "module-1/step-2-queue.md"
VALID = {
    "service_name": "payment-service",
    "level": "ERROR",
    "message": "Transaction failed",
}
# How many entries the connection check sends: enough that a client per
# request shows as hundreds of connections, quick enough to stay in budget.
MANY = 200
# New connections allowed for MANY posts: one client's pool may replace a
# connection or two, a client per request opens MANY.
FEW = 5
OUTAGE_SECONDS = 10.0


@pytest.fixture(autouse=True)
def empty_queue(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """Each check starts from an empty queue; the grader's own Redis is emptied."""
    try:
        if redis_server.can_stop:
            redis_client.flushdb()
        else:
            redis_client.delete(QUEUE)
    except redis.RedisError as exc:
        pytest.fail(f"The grader's Redis ({redis_server}) stopped: {exc}")


def post(
    service: LearnerService, body: Any = VALID, **kwargs: Any
) -> tuple[httpx.Response, str]:
    sent = f"POST /logs {json.dumps(body)}"
    return service.request("POST", "/logs", sent, json=body, **kwargs), sent


def env_hint(redis_server: RedisServer) -> str:
    return (
        "Read REDIS_HOST and REDIS_PORT through settings (config.py, TODO 2.1) and "
        "open the client with settings.redis_host and settings.redis_port "
        f"(TODO 2.2). The grader's Redis is at {redis_server.host}:"
        f"{redis_server.port}; in Compose it is redis-queue:6379."
    )


def post_and_expect_202(
    service: LearnerService, body: Any = VALID, **kwargs: Any
) -> tuple[httpx.Response, str]:
    response, sent = post(service, body, **kwargs)
    if response.status_code != 202:
        service.fail_unexpected(
            "A valid entry was not accepted.",
            response,
            sent=sent,
            expected="202 Accepted, with the queued entry",
            hint=(
                "Push the entry with LPUSH, then return it; the route answers 202 "
                "(TODO 2.3)."
            ),
            lesson=f"{PAGE}#todo-2-3",
            todo="2.3",
        )
    return response, sent


# The Redis command that makes each type of key, for a learner who used it
# where LPUSH belongs.
WRITTEN_BY = {
    "string": "SET",
    "hash": "HSET",
    "set": "SADD",
    "zset": "ZADD",
    "stream": "XADD",
}


def expect_list(client: redis.Redis, sent: str) -> None:
    """Fail when logs_queue holds something other than a list.

    Written with SET or HSET, it is a key of another type, which LRANGE and
    BRPOP refuse (WRONGTYPE): the learner's mistake, to be named as such.
    """
    kind = decode(client.type(QUEUE)) or "none"
    if kind in {"list", "none"}:
        return
    command = WRITTEN_BY.get(kind, "that command")
    learner_fail(
        f"{QUEUE} is a {kind}, not a list: use LPUSH (TODO 2.3).",
        sent=sent,
        got=f"TYPE {QUEUE} → {kind}",
        expected="list",
        hint=(
            f"Push each entry with LPUSH onto {QUEUE}: {command} makes a {kind}, "
            "which the analyzer cannot take entries from with BRPOP."
        ),
        lesson=f"{PAGE}#todo-2-3",
        todo="2.3",
    )


def queue(client: redis.Redis, sent: str) -> list[str]:
    """The queue's entries, newest first (LPUSH puts each at the head)."""
    expect_list(client, sent)
    return [decode(raw) or "" for raw in client.lrange(QUEUE, 0, -1)]


# What `json_of` gives for an answer that is not JSON (None is JSON's null).
NOT_JSON = object()


def json_of(response: httpx.Response) -> Any:
    """The answer's JSON, or NOT_JSON: a learner's answer may be anything."""
    try:
        return response.json()
    except ValueError:
        return NOT_JSON


def entry_problems(entry: Any, sent: dict[str, str]) -> list[str]:
    """What is wrong with a queued (or returned) entry; [] when nothing is."""
    if entry is NOT_JSON:
        return ["it is not JSON"]
    if not isinstance(entry, dict):
        return [f"it is a JSON {type(entry).__name__}, not an object"]
    problems = [
        f"{field} is {entry.get(field)!r}, not {sent[field]!r}"
        for field in FIELDS
        if entry.get(field) != sent[field]
    ]
    if not isinstance(entry.get("id"), str) or not entry["id"]:
        problems.append(f"id is {entry.get('id')!r}, not a non-empty string")
    stamp = entry.get("timestamp")
    try:
        parsed = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        problems.append(f"timestamp is {stamp!r}, not an ISO-8601 date and time")
    elif parsed.tzinfo is None:
        problems.append(f"timestamp {stamp!r} has no time zone; use datetime.now(UTC)")
    return problems


# Prints what the learner's settings make of the environment it runs in.
READ_SETTINGS = (
    "import json; from config import settings; "
    "print(json.dumps([settings.redis_host, settings.redis_port]))"
)


def test_settings_read_redis_host_and_port(collector_dir: Path) -> None:
    """config.py reads REDIS_HOST and REDIS_PORT, with localhost:6379 by default."""
    cases = [
        ({"REDIS_HOST": "redis-queue", "REDIS_PORT": "6380"}, ["redis-queue", 6380]),
        ({}, ["localhost", 6379]),
    ]
    for overrides, expected in cases:
        env = {
            k: v for k, v in os.environ.items() if k not in {"REDIS_HOST", "REDIS_PORT"}
        }
        sent = " ".join(f"{k}={v}" for k, v in overrides.items()) or "(neither set)"
        finished = run(
            [sys.executable, "-c", READ_SETTINGS],
            cwd=collector_dir,
            env={**env, **overrides},
            timeout=15,
        )
        last_line = finished.stdout.strip().splitlines()[-1:] or [""]
        try:
            got = json.loads(last_line[0])
        except ValueError:
            got = None
        if got != expected:
            error = finished.stderr.strip().splitlines()[-1:] or [finished.stdout]
            learner_fail(
                "The settings in config.py do not read where Redis is from the "
                "environment.",
                sent=f"settings.redis_host, settings.redis_port with {sent}",
                got=str(got) if got is not None else error[0][:300],
                expected=f"{expected[0]!r}, {expected[1]}",
                todo="2.1",
                hint=(
                    'Declare redis_host: str = "localhost" and redis_port: int = '
                    "6379 in Settings; pydantic-settings fills them from REDIS_HOST "
                    "and REDIS_PORT."
                ),
                lesson=f"{PAGE}#todo-2-1",
            )


def test_redis_host_and_port_come_from_the_environment(
    service: LearnerService, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """The service reaches the Redis named by REDIS_HOST and REDIS_PORT."""
    keys_before = set(redis_client.scan_iter(count=1000))
    response, sent = post(service)
    if response.status_code != 202:
        service.fail_unexpected(
            "A valid entry did not reach the Redis the grader gave your service.",
            response,
            sent=sent,
            expected=f"202, and the entry in Redis at {redis_server.host}:"
            f"{redis_server.port}",
            hint=env_hint(redis_server),
            lesson="troubleshooting.md#redis-at-localhost",
            todo="2.1",
        )
    # A new key of any type (a SET where LPUSH belongs is for the queue check
    # to name), or entries in a list: either way the entry reached this Redis.
    new_keys = set(redis_client.scan_iter(count=1000)) - keys_before
    if not new_keys and not any(list_keys(redis_client).values()):
        learner_fail(
            "Your service answered 202, but nothing arrived in the Redis the grader "
            "gave it: the entry went to some other Redis.",
            sent=sent,
            got=f"no list with entries in Redis at {redis_server.host}:"
            f"{redis_server.port}",
            expected="the entry there",
            hint=env_hint(redis_server),
            lesson="troubleshooting.md#redis-at-localhost",
            todo="2.1",
        )


def test_valid_entry_is_accepted_with_id_and_timestamp(
    service: LearnerService,
) -> None:
    """A valid entry is answered 202 with the entry, its id and its timestamp."""
    response, sent = post_and_expect_202(service)
    problems = entry_problems(json_of(response), VALID)
    if problems:
        learner_fail(
            "The 202 answer does not carry the queued entry: " + "; ".join(problems),
            sent=sent,
            got=describe(response),
            expected="the three fields, an id and an ISO-8601 timestamp",
            hint="Return the QueuedEntry you pushed; it has the id and timestamp.",
            lesson=f"{PAGE}#todo-2-3",
            todo="2.3",
        )


def test_queue_gains_exactly_one_json_entry(
    service: LearnerService, redis_client: redis.Redis
) -> None:
    """One POST adds exactly one JSON entry to logs_queue, timestamped."""
    response, sent = post_and_expect_202(service)
    entries = queue(redis_client, sent)
    if not entries:
        others = {name: size for name, size in list_keys(redis_client).items() if size}
        if others:
            names = ", ".join(f"{name!r} ({size})" for name, size in others.items())
            problem = f"The entry went to another list: {names}, not {QUEUE!r}."
            hint = (
                f"The queue is the list {QUEUE} (settings.queue_name): check its "
                "spelling in config.py and main.py."
            )
        else:
            kinds = {
                decode(key): decode(redis_client.type(key))
                for key in redis_client.scan_iter(count=1000)
            }
            problem = f"Nothing was pushed onto {QUEUE!r}."
            hint = f"LPUSH the entry's JSON onto settings.queue_name ({QUEUE})."
            if kinds:
                problem += f" Redis holds {kinds} instead."
                hint += " A queue is a Redis list: SET writes a string."
        learner_fail(
            problem,
            sent=sent,
            got=f"LRANGE {QUEUE} 0 -1 → (empty)",
            expected=f"one entry in {QUEUE}",
            hint=hint,
            lesson=f"{PAGE}#todo-2-3",
            todo="2.3",
        )
    if len(entries) != 1:
        learner_fail(
            f"One POST added {len(entries)} entries to {QUEUE}.",
            sent=sent,
            got=f"{len(entries)} entries: {entries[:3]}",
            expected="exactly one",
            hint="Push once per request, after the entry is built.",
            lesson=f"{PAGE}#todo-2-3",
            todo="2.3",
        )
    raw = entries[0]
    try:
        entry = json.loads(raw)
    except ValueError:
        python_repr = raw.startswith("{'") or "datetime.datetime(" in raw
        learner_fail(
            f"The entry in {QUEUE} is not JSON.",
            sent=sent,
            got=raw[:300],
            expected="a JSON object",
            hint=(
                "That is Python's str() of a dict, not JSON: push "
                "entry.model_dump_json()."
                if python_repr
                else "Push entry.model_dump_json(): the analyzer reads JSON."
            ),
            lesson="troubleshooting.md#datetime-json" if python_repr else PAGE,
            todo="2.3",
        )
    problems = entry_problems(entry, VALID)
    answered = json_of(response)
    if not isinstance(answered, dict):
        problems.append("the 202 answer is not a JSON object, so its id is unknown")
    elif isinstance(entry, dict) and entry.get("id") != answered.get("id"):
        problems.append("its id is not the id in the 202 answer")
    if problems:
        learner_fail(
            f"The entry in {QUEUE} is not right: " + "; ".join(problems),
            sent=sent,
            got=raw[:300],
            expected="the three fields as sent, the answer's id, an ISO-8601 "
            "timestamp with a time zone",
            hint="Push the same QueuedEntry you return: entry.model_dump_json().",
            lesson=f"{PAGE}#todo-2-3",
            todo="2.3",
        )


def test_entries_come_back_oldest_first_through_brpop(
    service: LearnerService, redis_client: redis.Redis
) -> None:
    """Three entries come back through BRPOP oldest first."""
    sent_order = ["first", "second", "third"]
    for message in sent_order:
        post_and_expect_202(service, {**VALID, "message": message})
    sent = "three POSTs: messages first, second, third"
    expect_list(redis_client, sent)
    taken = []
    for _ in sent_order:
        popped = redis_client.brpop([QUEUE], timeout=1)
        if popped is None:
            break
        try:
            taken.append(json.loads(decode(popped[1]) or "").get("message"))
        except (ValueError, AttributeError):
            taken.append(decode(popped[1]))
    if taken != sent_order:
        reversed_order = taken == sent_order[::-1]
        learner_fail(
            "Entries did not come back through BRPOP in the order they were sent.",
            sent=sent,
            got=f"BRPOP gave {taken}",
            expected=f"{sent_order}",
            hint=(
                "BRPOP takes from the tail, so entries must go on at the head: "
                "push with LPUSH, not RPUSH."
                if reversed_order
                else f"Push each entry once onto {QUEUE} with LPUSH."
            ),
            lesson=f"{PAGE}#todo-2-3",
            todo="2.3",
        )


def test_invalid_entries_queue_nothing(
    service: LearnerService, redis_client: redis.Redis
) -> None:
    """Entries that fail validation are not queued."""
    # First show that a valid entry is queued: a service that queues nothing at
    # all must not pass this check.
    _, sent = post_and_expect_202(service)
    if not queue(redis_client, sent):
        learner_fail(
            f"A valid entry was answered 202 but not pushed onto {QUEUE}.",
            sent=sent,
            got=f"LRANGE {QUEUE} 0 -1 → (empty)",
            expected="one entry",
            hint=f"LPUSH the entry's JSON onto settings.queue_name ({QUEUE}).",
            lesson=f"{PAGE}#todo-2-3",
            todo="2.3",
        )
    redis_client.delete(QUEUE)
    invalid: list[tuple[str, dict[str, Any]]] = [
        ("no message", {"json": {k: v for k, v in VALID.items() if k != "message"}}),
        ("level VERBOSE", {"json": {**VALID, "level": "VERBOSE"}}),
        ("an empty service_name", {"json": {**VALID, "service_name": ""}}),
        (
            "a body that is not JSON",
            {
                "content": b"{not json",
                "headers": {"content-type": "application/json"},
            },
        ),
    ]
    for why, request in invalid:
        sent = f"POST /logs with {why}"
        response = service.request("POST", "/logs", sent, **request)
        if not 400 <= response.status_code < 500:
            service.fail_unexpected(
                f"An entry with {why} was not rejected.",
                response,
                sent=sent,
                expected="a 4xx answer (422), and nothing queued",
                hint="Take the body as `log: LogIn`, so FastAPI validates it first.",
                lesson="module-1/step-1-api.md#todo-1-1",
                todo="1.1",
            )
    queued = {name: size for name, size in list_keys(redis_client).items() if size}
    if queued:
        learner_fail(
            "Entries that were rejected were queued anyway.",
            sent="four invalid entries",
            got=f"lists in Redis: {queued}",
            expected="nothing queued",
            hint="Push only a validated LogIn; never push the raw body.",
            lesson=f"{PAGE}#todo-2-3",
            todo="2.3",
        )


def need_stoppable(redis_server: RedisServer) -> None:
    if not redis_server.can_stop:
        skip_check(
            f"This check stops Redis, and the grader never stops {redis_server}.",
            fix="Leave out --redis and SENTINEL_REDIS_URL: the grader then starts "
            "a Redis of its own.",
            lesson="setup.md#environment-check",
        )


def test_redis_down_gives_503_and_service_recovers(
    service: LearnerService, redis_server: RedisServer
) -> None:
    """With Redis stopped a POST gets 503, not 500; once it is back, 202 again."""
    need_stoppable(redis_server)
    post_and_expect_202(service)
    redis_server.stop()
    try:
        response, sent = post(service, timeout=OUTAGE_SECONDS, during_outage=True)
        if response.status_code != 503:
            if response.status_code == 500:
                hint = (
                    "Catch RedisError around the push and raise HTTPException "
                    "with status 503, so clients know to retry (TODO 2.4)."
                )
            elif response.status_code < 300:
                hint = "Answer 202 only after the push has succeeded (TODO 2.3)."
            else:
                hint = "Turn a RedisError from the push into a 503 (TODO 2.4)."
            learner_fail(
                "With Redis stopped, a POST was not answered 503.",
                sent=sent + " (Redis stopped)",
                got=describe(response),
                expected="503 Service Unavailable",
                hint=hint,
                lesson=f"{PAGE}#todo-2-4",
                todo="2.4",
            )
    finally:
        redis_server.start()
    deadline = time.monotonic() + OUTAGE_SECONDS
    while True:
        response, sent = post(service)
        if response.status_code == 202:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    learner_fail(
        f"Redis was back, but {OUTAGE_SECONDS:.0f} s later POSTs still failed.",
        sent=sent + " (Redis started again on the same port)",
        got=describe(response),
        expected="202 once Redis answers again",
        hint=(
            "Keep one client for the app's lifetime and let it reconnect: a "
            "redis.asyncio.Redis made with host and port does so by itself; a "
            "connection you opened once yourself does not."
        ),
        lesson=f"{PAGE}#todo-2-4",
        todo="2.2",
    )


def test_health_reports_redis_up_and_down(
    service: LearnerService, redis_server: RedisServer
) -> None:
    """GET /health answers 200 while Redis answers, 503 while it is stopped."""
    sent = "GET /health"
    response = service.request("GET", "/health", sent)
    if response.status_code != 200 or _redis_field(response) != "up":
        service.fail_unexpected(
            "With Redis up, /health did not report it up.",
            response,
            sent=sent,
            expected='200 {"status": "ok", "redis": "up"}',
            hint="PING Redis in /health and report what it answers (TODO 2.5).",
            lesson=f"{PAGE}#todo-2-5",
            todo="2.5",
        )
    need_stoppable(redis_server)
    redis_server.stop()
    try:
        response = service.request(
            "GET", "/health", sent, timeout=OUTAGE_SECONDS, during_outage=True
        )
    finally:
        redis_server.start()
    if response.status_code != 503 or _redis_field(response) != "down":
        learner_fail(
            "With Redis stopped, /health did not report it down.",
            sent=sent + " (Redis stopped)",
            got=describe(response),
            expected='503 {"status": "unavailable", "redis": "down"}',
            hint=(
                "On a RedisError from the PING, set response.status_code to 503 "
                'and report "down" (TODO 2.5).'
            ),
            lesson=f"{PAGE}#todo-2-5",
            todo="2.5",
        )


def _redis_field(response: httpx.Response) -> Any:
    answer = json_of(response)
    return answer.get("redis") if isinstance(answer, dict) else None


def test_one_redis_client_serves_many_requests(
    service: LearnerService, redis_client: redis.Redis
) -> None:
    """Hundreds of POSTs share one Redis client, not one connection each."""
    received_before = redis_client.info("stats")["total_connections_received"]
    clients_before = {client["id"] for client in redis_client.client_list()}
    for number in range(MANY):
        post_and_expect_202(service, {**VALID, "message": f"entry {number}"})
    received = redis_client.info("stats")["total_connections_received"]
    opened = received - received_before
    clients_after = {client["id"] for client in redis_client.client_list()}
    still_open = len(clients_after - clients_before)
    if opened > FEW or still_open > FEW:
        learner_fail(
            f"{MANY} POSTs opened {opened} new connections to Redis "
            f"({still_open} still open).",
            sent=f"{MANY} valid POSTs, one after another",
            got=f"{opened} connections opened, {still_open} left open",
            expected=f"at most {FEW}: one client, opened once, reused",
            hint=(
                "Open one client in the lifespan, yield it as app state, and use "
                "request.state.redis in the route; a client made per request "
                "opens a connection each time (TODO 2.2)."
            ),
            lesson="troubleshooting.md#client-per-request",
            todo="2.2",
        )
