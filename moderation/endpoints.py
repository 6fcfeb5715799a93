"""Where the services are: environment variables, with defaults that work on a development machine.

The config file says *what* the pipeline does; these say *where* its services run, so the same config
file serves every environment. Documented in docs/pipeline.md ("Environment").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from moderation.errors import ConfigError

DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/moderation"
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
# RabbitMQ: a task held by a worker whose connection drops (SIGKILL, host crash) is queued again at once.
DEFAULT_CELERY_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def parse_api_version(raw: str | None) -> tuple[int, ...] | None:
    """ "2.5.0" -> (2, 5, 0); empty or unset -> None (kafka-python then asks the broker)."""
    if raw is None or not raw.strip():
        return None
    try:
        parts = tuple(int(p) for p in raw.strip().split("."))
    except ValueError:
        raise ConfigError(f"MODERATION_KAFKA_API_VERSION must look like 2.5.0, got {raw!r}") from None
    if not 2 <= len(parts) <= 3:
        raise ConfigError(f"MODERATION_KAFKA_API_VERSION must look like 2.5.0, got {raw!r}")
    return parts


def redacted(url: str) -> str:
    """A URL (database, broker, Redis) with its password hidden, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<a URL that could not be parsed>"  # never echo it: it may hold a password


@dataclass(frozen=True)
class Endpoints:
    database_url: str
    kafka_bootstrap: str
    kafka_api_version: tuple[int, ...] | None
    celery_broker: str
    celery_backend: str
    # Workers count each batch's runs here, to tell a batch that killed its worker (workers/isolation.py).
    redis_url: str = DEFAULT_REDIS_URL

    @classmethod
    def from_env(cls) -> Endpoints:
        broker = os.environ.get("MODERATION_CELERY_BROKER") or DEFAULT_CELERY_BROKER
        return cls(
            database_url=os.environ.get("MODERATION_DATABASE_URL") or DEFAULT_DATABASE_URL,
            kafka_bootstrap=os.environ.get("MODERATION_KAFKA_BOOTSTRAP") or DEFAULT_KAFKA_BOOTSTRAP,
            kafka_api_version=parse_api_version(os.environ.get("MODERATION_KAFKA_API_VERSION")),
            celery_broker=broker,
            # Task results are not used (the consumer reads batch receipts from PostgreSQL); kept for tools.
            celery_backend=os.environ.get("MODERATION_CELERY_BACKEND") or _default_backend(broker),
            redis_url=os.environ.get("MODERATION_REDIS_URL") or DEFAULT_REDIS_URL,
        )


def _default_backend(broker: str) -> str:
    if broker.startswith("redis://"):
        return broker.rsplit("/", 1)[0] + "/1" if broker.count("/") >= 3 else broker.rstrip("/") + "/1"
    return "redis://127.0.0.1:6379/1"
