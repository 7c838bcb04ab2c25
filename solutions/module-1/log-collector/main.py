"""The Sentinel log collector: takes log entries over HTTP and queues them in Redis.

`POST /logs` pushes each entry as JSON onto the Redis list `logs_queue` with
LPUSH; the analyzer takes them off the other end with BRPOP, oldest first.
"""

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from config import settings

logging.basicConfig(
    level=logging.INFO, format="%(levelname)s:     %(name)s %(message)s"
)
logger = logging.getLogger("log_collector")

MAX_BODY_BYTES = 64 * 1024


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


NonBlank = Annotated[str, AfterValidator(_not_blank)]


class LogIn(BaseModel):
    """A log entry as a service sends it."""

    # A misspelt field such as "mesage" is an error, not silently dropped.
    model_config = ConfigDict(extra="forbid")

    # Step 1.1: the three fields, each with what it accepts.
    service_name: NonBlank = Field(max_length=100, examples=["payment-service"])
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    message: NonBlank = Field(max_length=16_384, examples=["Transaction failed"])


class QueuedEntry(LogIn):
    """A log entry as it waits in the queue: what was sent, plus an id and a time."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """Open one Redis client when the app starts and close it when it stops."""
    # Step 2.2: one client for the app's lifetime, never one per request.
    pool = BlockingConnectionPool(
        host=settings.redis_host,
        port=settings.redis_port,
        socket_connect_timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
        # In a burst, a request waits for a free connection (up to the timeout)
        # rather than failing at once when all of them are busy.
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout,
        # One immediate retry replaces a connection Redis has closed (after a
        # restart, say). Only then: after a timeout the push may have landed, and
        # sending it again would queue it twice.
        retry=Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
    )
    client = Redis.from_pool(pool)
    try:
        await client.ping()
        logger.info(
            "Connected to Redis at %s:%s", settings.redis_host, settings.redis_port
        )
    except RedisError as exc:
        # Start anyway: requests answer 503 until Redis is reachable.
        logger.warning(
            "Redis at %s:%s is not reachable yet: %s",
            settings.redis_host,
            settings.redis_port,
            exc,
        )
    yield {"redis": client}
    await client.aclose()


app = FastAPI(
    title="Sentinel log collector",
    lifespan=lifespan,
    # Larger bodies are answered 413 before they are read into memory.
    max_body_size=MAX_BODY_BYTES,
)


@app.exception_handler(RequestValidationError)
async def validation_failed(
    request: Request, exc: RequestValidationError
) -> JSONResponse:
    """Answer 422 naming each bad field, without echoing the bad value back."""
    # FastAPI's own handler repeats each bad value in its answer; a value JSON
    # cannot encode (NaN, 1e999, a lone surrogate) then turns the 422 into a 500.
    errors = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


QUEUE_DOWN = {"description": "Redis did not confirm the entry in time; send it again"}


@app.post(
    "/logs",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        status.HTTP_400_BAD_REQUEST: {"description": "Body could not be parsed"},
        status.HTTP_413_CONTENT_TOO_LARGE: {"description": "Body over 64 KiB"},
        status.HTTP_503_SERVICE_UNAVAILABLE: QUEUE_DOWN,
    },
)
async def queue_log(log: LogIn, request: Request) -> QueuedEntry:
    """Queue one log entry; 202 means it is in the queue."""
    # Step 2.3: push the entry, and only then answer 202.
    entry = QueuedEntry(**log.model_dump())
    try:
        await request.state.redis.lpush(settings.queue_name, entry.model_dump_json())
    except RedisError as exc:
        # Step 2.4: Redis down is a 503 the client can retry, not a 500.
        logger.warning("Could not push to %s: %s", settings.queue_name, exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "Log queue unavailable, try again"
        ) from exc
    return entry


class Health(BaseModel):
    """Whether the collector can reach its queue."""

    status: Literal["ok", "unavailable"]
    redis: Literal["up", "down"]


@app.get(
    "/health",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Health}},
)
async def health(request: Request, response: Response) -> Health:
    """Report whether Redis answers a PING."""
    # Step 2.5: ask Redis itself, so the answer says whether entries can be queued.
    try:
        await request.state.redis.ping()
    except RedisError:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="unavailable", redis="down")
    return Health(status="ok", redis="up")
