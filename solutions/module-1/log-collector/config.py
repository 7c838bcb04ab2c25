"""Settings of the log collector, read from the environment in this one place."""

from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    """Each field is read from the environment variable of the same name in capitals.

    For example `REDIS_HOST=redis-queue` sets `redis_host`. Inside Compose the
    collector reaches Redis by its service name, so the default `localhost`
    only suits running the collector straight on your machine.
    """

    # Step 2.1: where Redis is, with defaults for running on your machine.
    redis_host: str = "localhost"
    redis_port: int = 6379
    queue_name: str = "logs_queue"
    # Seconds to wait for Redis before answering 503; keeps an outage from
    # turning into requests that hang.
    redis_timeout: float = 2.0
    # Connections to Redis at most; more requests at once wait their turn.
    redis_max_connections: int = 50


settings = Settings()
