"""Settings of the log collector, read from the environment in this one place."""

from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    """Each field is read from the environment variable of the same name in capitals.

    For example `QUEUE_NAME=test_queue` sets `queue_name`.
    """

    # TODO 2.1: Declare redis_host (default "localhost") and redis_port (6379).
    queue_name: str = "logs_queue"
    # Seconds to wait for Redis before answering 503; keeps an outage from
    # turning into requests that hang.
    redis_timeout: float = 2.0
    # Connections to Redis at most; more requests at once wait their turn.
    redis_max_connections: int = 50


settings = Settings()
