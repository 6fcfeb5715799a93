"""Where the services are: environment variables, with defaults that work on a development machine.

The config file says *what* the pipeline does; these say *where* its services run, so the same config
file serves every environment. Documented in docs/pipeline.md ("Environment").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from moderation.errors import ConfigError, format_validation_error

DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/moderation"
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
# RabbitMQ: a task held by a worker whose connection drops (SIGKILL, host crash) is queued again at once.
DEFAULT_CELERY_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_STATE_URL = "redis://127.0.0.1:6379/2"


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


class Endpoints(BaseSettings):
    """Read from MODERATION_* environment variables (an empty one counts as unset); pass fields to override."""

    model_config = SettingsConfigDict(env_prefix="MODERATION_", env_ignore_empty=True, frozen=True, extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    # "2.5.0" or unset; real Kafka needs none, the embedded tansu broker needs 2.5.0 for consumer groups.
    kafka_api_version: Annotated[tuple[int, ...] | None, NoDecode] = None
    # "cooperative" (incremental rebalances, the default) or "eager" for brokers that lack them.
    kafka_rebalance: Literal["cooperative", "eager"] = "cooperative"
    celery_broker: str = DEFAULT_CELERY_BROKER
    # Task results are not used (the consumer reads batch receipts from PostgreSQL); kept for tools.
    # Unset: Redis database 1 next to a Redis broker, else the local Redis.
    celery_backend: str = ""
    # Workers count each batch's runs here, to tell a batch that killed its worker (workers/isolation.py).
    redis_url: str = DEFAULT_REDIS_URL
    # Where the flood and rate plugins keep their windows in the workers (`state = "auto"`).
    state_url: str = DEFAULT_STATE_URL
    # Prefixes every state key of plugins that set no `state_prefix` of their own: deployments (or test runs)
    # sharing one Redis keep apart by giving each its own.
    state_prefix: str = "moderation:"

    @field_validator("kafka_api_version", mode="before")
    @classmethod
    def _api_version(cls, raw: object) -> object:
        return parse_api_version(raw) if isinstance(raw, str) else raw

    @model_validator(mode="after")
    def _backend(self) -> Endpoints:
        if not self.celery_backend:
            object.__setattr__(self, "celery_backend", _default_backend(self.celery_broker))
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A URL may carry a password: never print one, even in a debug log of this object.
        for name, value in super().__repr_args__():
            yield name, redacted(value) if isinstance(value, str) and "://" in value else value

    @classmethod
    def from_env(cls) -> Endpoints:
        try:
            return cls()
        except ValidationError as err:
            raise ConfigError(
                format_validation_error("invalid MODERATION_* environment:", err, "MODERATION_")
            ) from None


def _default_backend(broker: str) -> str:
    if broker.startswith("redis://"):
        return broker.rsplit("/", 1)[0] + "/1" if broker.count("/") >= 3 else broker.rstrip("/") + "/1"
    return "redis://127.0.0.1:6379/1"
