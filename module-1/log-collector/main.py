"""The Sentinel log collector: takes log entries over HTTP and queues them in Redis.

`POST /logs` pushes each entry as JSON onto the Redis list `logs_queue` with
LPUSH; the analyzer takes them off the other end with BRPOP, oldest first.

This is the starter: it runs as it is (try `uvicorn main:app` and open /docs),
and each part still to write answers 501 naming its TODO.
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


def not_implemented(todo: str) -> HTTPException:
    """Answer 501 for a part of the exercise that is still to write."""
    return HTTPException(
        status.HTTP_501_NOT_IMPLEMENTED,
        f"Not implemented yet: see TODO {todo} in main.py",
    )


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


NonBlank = Annotated[str, AfterValidator(_not_blank)]


class LogIn(BaseModel):
    """A log entry as a service sends it."""

    # A misspelt field such as "mesage" is an error, not silently dropped.
    model_config = ConfigDict(extra="forbid")

    # TODO 1.1: Declare service_name and message as NonBlank, level as a Literal.


class QueuedEntry(LogIn):
    """A log entry as it waits in the queue: what was sent, plus an id and a time."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """Open one Redis client when the app starts and close it when it stops."""
    # TODO 2.2: Open one Redis client from settings, yield it, aclose() it after.
    yield {}


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
    # TODO 2.3: LPUSH the entry's JSON onto settings.queue_name; return the entry.
    # TODO 2.4: Turn a RedisError from the push into an HTTPException 503.
    raise not_implemented("2.3")


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
    # TODO 2.5: PING Redis; on a RedisError set the status to 503, report "down".
    raise not_implemented("2.5")
