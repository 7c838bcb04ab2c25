"""The finished collector against a real Redis: what lands in the queue, and when."""

import asyncio
import json
import threading
import time
from datetime import datetime

import httpx
import pytest
from conftest import SOLUTION, Collector, RedisServer

ENTRY = {
    "service_name": "payment-service",
    "level": "ERROR",
    "message": "Transaction failed",
}


@pytest.fixture
def collector(redis_server: RedisServer, start_collector) -> Collector:
    return start_collector(SOLUTION, redis_server.port)


def test_posted_entry_lands_in_logs_queue(collector, redis_server):
    response = httpx.post(collector.url + "/logs", json=ENTRY)

    assert response.status_code == 202, response.text
    queued = redis_server.client().lrange("logs_queue", 0, -1)
    assert len(queued) == 1
    entry = json.loads(queued[0])
    assert entry == response.json()
    assert {key: entry[key] for key in ENTRY} == ENTRY
    assert datetime.fromisoformat(entry["timestamp"]).utcoffset().total_seconds() == 0
    assert entry["id"]


def test_brpop_reads_entries_oldest_first(collector, redis_server):
    messages = ["first", "second", "third"]
    for message in messages:
        reply = httpx.post(collector.url + "/logs", json={**ENTRY, "message": message})
        assert reply.status_code == 202, reply.text

    client = redis_server.client()
    popped = [json.loads(client.brpop(["logs_queue"], timeout=1)[1]) for _ in messages]

    assert [entry["message"] for entry in popped] == messages


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"level": "ERROR", "message": "x"}, "service_name"),
        ({**ENTRY, "service_name": ""}, "service_name"),
        ({**ENTRY, "message": "   "}, "message"),
        ({**ENTRY, "level": "LOUD"}, "level"),
        ({**ENTRY, "mesage": "typo"}, "mesage"),
    ],
)
def test_bad_entry_is_422_naming_the_field_and_queues_nothing(
    collector, redis_server, body, field
):
    response = httpx.post(collector.url + "/logs", json=body)

    assert response.status_code == 422
    assert ["body", field] in [error["loc"] for error in response.json()["detail"]]
    assert redis_server.client().llen("logs_queue") == 0


def test_fields_in_the_query_string_are_not_accepted(collector, redis_server):
    response = httpx.post(collector.url + "/logs", params=ENTRY)

    assert response.status_code == 422
    assert redis_server.client().llen("logs_queue") == 0


def test_body_that_is_not_json_is_a_client_error(collector, redis_server):
    response = httpx.post(
        collector.url + "/logs",
        content=b"service_name=payment-service",
        headers={"Content-Type": "application/json"},
    )

    assert 400 <= response.status_code < 500
    assert redis_server.client().llen("logs_queue") == 0


def test_body_over_64_kib_is_413(collector, redis_server):
    response = httpx.post(
        collector.url + "/logs", json={**ENTRY, "message": "x" * 70_000}
    )

    assert response.status_code == 413
    assert redis_server.client().llen("logs_queue") == 0


def test_redis_down_is_503_and_the_service_recovers(collector, redis_server):
    assert httpx.get(collector.url + "/health").status_code == 200

    redis_server.stop()
    down = httpx.post(collector.url + "/logs", json=ENTRY, timeout=10)
    health = httpx.get(collector.url + "/health", timeout=10)
    redis_server.start()
    back = httpx.post(collector.url + "/logs", json=ENTRY)

    assert (down.status_code, down.json()) == (
        503,
        {"detail": "Log queue unavailable, try again"},
    )
    assert health.status_code == 503
    assert health.json() == {"status": "unavailable", "redis": "down"}
    assert back.status_code == 202
    assert redis_server.client().llen("logs_queue") == 1
    assert "Traceback" not in collector.output()


def test_redis_host_and_port_come_from_the_environment(redis_server, start_collector):
    # Nothing listens on 6379 here: the collector must use REDIS_PORT to work.
    collector = start_collector(SOLUTION, redis_server.port, REDIS_HOST="127.0.0.1")

    assert httpx.post(collector.url + "/logs", json=ENTRY).status_code == 202
    assert f"Connected to Redis at 127.0.0.1:{redis_server.port}" in collector.output()


def test_one_redis_client_serves_every_request(collector, redis_server):
    for _ in range(100):
        httpx.post(collector.url + "/logs", json=ENTRY)

    clients = redis_server.client().info("clients")["connected_clients"]

    # Ours plus the collector's pool; one client per request would leave ~100.
    assert clients <= 3


def test_a_burst_of_requests_waits_for_connections_instead_of_failing(
    collector, redis_server
):
    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(base_url=collector.url, limits=limits) as client:
            posts = [client.post("/logs", json=ENTRY, timeout=30) for _ in range(300)]
            return [reply.status_code for reply in await asyncio.gather(*posts)]

    statuses = asyncio.run(burst())

    # More requests at once than the pool has connections (50): they queue up.
    assert statuses == [202] * 300
    assert redis_server.client().llen("logs_queue") == 300


def test_offer_of_an_http2_upgrade_keeps_the_body(collector, redis_server):
    # Java's HttpClient offers h2c on every plain-HTTP request by default.
    response = httpx.post(
        collector.url + "/logs",
        json=ENTRY,
        headers={
            "Connection": "Upgrade, HTTP2-Settings",
            "Upgrade": "h2c",
            "HTTP2-Settings": "AAMAAABkAAQAAP__",
        },
    )

    assert response.status_code == 202, response.text
    assert redis_server.client().llen("logs_queue") == 1


def test_push_that_times_out_is_503_and_not_sent_twice(collector, redis_server):
    slow = redis_server.client()
    blocker = threading.Thread(target=slow.execute_command, args=("DEBUG", "SLEEP", 3))
    blocker.start()
    time.sleep(0.2)  # DEBUG SLEEP has Redis itself stalled now

    started = time.monotonic()
    response = httpx.post(collector.url + "/logs", json=ENTRY, timeout=10)
    waited = time.monotonic() - started
    blocker.join()

    assert response.status_code == 503
    # One timeout (REDIS_TIMEOUT, 2 s) and no retry after it.
    assert waited < 2.9
    # Redis ran the push once it woke up: a timeout is no proof of failure,
    # which is why the collector does not send it again.
    assert redis_server.client().llen("logs_queue") == 1
