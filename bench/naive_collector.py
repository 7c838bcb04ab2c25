"""ANTI-PATTERN, kept only as the benchmark's point of comparison. Do not copy it.

The finished collector's models and rules with the two mistakes the lessons
warn about (troubleshooting.md#client-per-request):

- a plain `def` handler, so each request waits for Redis in a thread of
  FastAPI's thread pool instead of on the event loop;
- a new Redis client, so a new TCP connection, for every request.

bench/run.py serves it from this folder with the solution's folder on
PYTHONPATH, so `main` and `config` below are the solution's own modules and
the validation is exactly the same.
"""

import logging

import redis
from fastapi import FastAPI, HTTPException, Response, status

from config import settings
from main import MAX_BODY_BYTES, Health, LogIn, QueuedEntry

logger = logging.getLogger("naive_collector")

app = FastAPI(title="Naive log collector (anti-pattern)", max_body_size=MAX_BODY_BYTES)


def connect() -> redis.Redis:
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        socket_connect_timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
    )


@app.post("/logs", status_code=status.HTTP_202_ACCEPTED)
def queue_log(log: LogIn) -> QueuedEntry:
    """Queue one log entry, the slow way."""
    entry = QueuedEntry(**log.model_dump())
    client = connect()  # the mistake: one client, one connection, per request
    try:
        client.lpush(settings.queue_name, entry.model_dump_json())
    except redis.RedisError as exc:
        logger.warning("Could not push to %s: %s", settings.queue_name, exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "Log queue unavailable, try again"
        ) from exc
    finally:
        client.close()
    return entry


@app.get("/health")
def health(response: Response) -> Health:
    """Report whether Redis answers a PING."""
    client = connect()
    try:
        client.ping()
    except redis.RedisError:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="unavailable", redis="down")
    finally:
        client.close()
    return Health(status="ok", redis="up")
