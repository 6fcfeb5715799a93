"""`[review]` settings (docs/review.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moderation.errors import ConfigError


class ReviewSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # A claim expires after this long, so an abandoned post returns to the queue.
    lease_seconds: Annotated[float, Field(gt=0, le=86_400)] = 300
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12
    # Set true behind HTTPS: the session cookie is then never sent over plain HTTP.
    secure_cookies: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65_535)] = 8000


def review_settings(raw: Mapping[str, Any]) -> ReviewSettings:
    try:
        return ReviewSettings.model_validate(dict(raw))
    except ValidationError as err:
        problems = "; ".join(f"review.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"invalid [review] configuration: {problems}") from None
