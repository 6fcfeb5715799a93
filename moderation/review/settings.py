"""`[review]` settings (docs/review.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from limits import parse_many
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from moderation.errors import ConfigError, format_validation_error


def _limits(value: str) -> str:
    """A `limits` rate string such as "5/minute;30/hour", checked at once."""
    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"not a rate limit such as '5/minute;30/hour': {value!r}") from None
    return value


RateLimits = Annotated[str, AfterValidator(_limits)]


class ReviewSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # A claim expires after this long, so an abandoned post returns to the queue.
    lease_seconds: Annotated[float, Field(gt=0, le=86_400)] = 300
    # Renewals never extend a lease past this long after the holder's claim; an admin can take it over at once.
    lease_max_seconds: Annotated[float, Field(gt=0, le=7 * 86_400)] = 1800
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12
    # A session unused for this long is over (and purged with the expired ones at the next login).
    session_idle_minutes: Annotated[float, Field(gt=0, le=24 * 60 * 30)] = 30
    # Cookies are Secure, with the __Host- prefix, whenever the request came over HTTPS (behind a proxy:
    # run uvicorn with --proxy-headers). true forces that also for plain HTTP requests.
    secure_cookies: bool = False
    # Origins besides the server's own that may send unsafe requests (e.g. "https://review.example.com" when a
    # proxy rewrites the Host header). Browsers from any other origin are refused (403).
    trusted_origins: tuple[str, ...] = ()
    # Login throttling (the `limits` library): every attempt counts against the client address, every failed
    # one against the account; over either limit the answer is 429 with Retry-After and no password is checked.
    login_limits_per_address: RateLimits = "10/minute;100/hour"
    login_limits_per_account: RateLimits = "5/minute;30/hour"
    # Where the counters live: "memory://" (one process) or "redis://host:6379/N" (shared by every process).
    login_limits_storage: str = "memory://"
    # Password checks (argon2id, 64 MiB, ~0.2 s each) running at once; more logins wait, and beyond
    # login_queue waiting ones the answer is 503 with Retry-After.
    login_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    login_queue: Annotated[int, Field(ge=0, le=10_000)] = 16
    # Per-token watermark evidence one account may read per tenant and day (posts); beyond it the post is
    # shown with the statistic and flagged span only. Evidence collected over many posts reveals green lists.
    evidence_posts_per_day: Annotated[int, Field(ge=0)] = 500
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65_535)] = 8000
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's forwarded_allow_ips): the
    # client address is what login throttling counts, so list only your reverse proxy here ("" for none).
    forwarded_allow_ips: str = "127.0.0.1"


def review_settings(raw: Mapping[str, Any]) -> ReviewSettings:
    try:
        return ReviewSettings.model_validate(dict(raw))
    except ValidationError as err:
        raise ConfigError(format_validation_error("invalid [review] configuration:", err, "review.")) from None
