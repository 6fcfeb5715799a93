"""Every error the moderation library raises, in one place.

    ModerationError                  base of everything below
    ├── ConfigError                  the config file or an environment variable is unusable; fix it and restart
    ├── PluginError                  a plugin failed to load or broke its contract (names the plugin)
    ├── DeviceUnavailable            a scheme needs a device this machine does not have (e.g. CUDA)
    ├── TorchMismatch                the installed torch draws green lists other than the ones reproduced here
    ├── InvalidPost                  one input message is unusable: dead-letter it, never retry it
    │   └── StorageRejected          PostgreSQL refused a post's content (a data or constraint error)
    ├── RetryableError               a dependency is down; the same work will succeed later
    │   ├── StorageUnavailable       PostgreSQL cannot be reached or refused the transaction
    │   ├── BrokerUnavailable        Kafka or the Celery broker cannot be reached
    │   └── StateStoreError          the plugins' shared state (Redis) cannot be reached
    ├── AuthError                    a login, a user or a role could not be created, found or checked
    └── ReviewError                  a review-service request that cannot be honoured
        ├── NotFound                 no such post, or not visible to this principal (404, on purpose the same)
        ├── Forbidden                the principal's role does not allow it (403)
        ├── Conflict                 the post is leased by someone else or already decided (409)
        ├── Invalid                  the request's content is unusable (422)
        ├── Throttled                over a login limit for an address or account (429, Retry-After)
        └── Busy                     too many password checks running and waiting already (503)

Errors from libraries underneath (psycopg2, kafka-python, pydantic) are translated into these at one
boundary each, so callers decide "dead-letter" versus "retry" by type alone.

No message built here may contain a secret: watermark keys and passwords are never formatted into them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

# Fields whose values are secrets: a validation message names them but never repeats what was given.
SECRET_FIELDS = frozenset({"hashing_key", "password", "secret", "token", "state"})  # state: a Redis URL


class ModerationError(Exception):
    """Base class of every error raised by this package."""


class ConfigError(ModerationError):
    """The configuration is unusable. The message names the field, the bad value and what was expected."""


def format_validation_error(heading: str, err: ValidationError, prefix: str = "") -> str:
    """The one way a pydantic ValidationError becomes a message: a heading, then one line per problem naming
    the field (with `prefix`, e.g. "plugins.spam."), what is wrong, and the value given unless it is a secret
    or a whole table."""
    lines = [heading]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        field = str(e["loc"][-1]) if e["loc"] else ""
        shown = "input" in e and field not in SECRET_FIELDS and not isinstance(e["input"], dict)
        got = f" (got {e['input']!r})" if shown else ""
        lines.append(f"  {prefix}{loc}: {e['msg'].removeprefix('Value error, ')}{got}")
    return "\n".join(lines)


class PluginError(ModerationError):
    """A plugin could not be loaded or returned something that breaks the plugin contract."""

    def __init__(self, plugin: str, problem: str) -> None:
        super().__init__(f"plugin {plugin!r}: {problem}")
        self.plugin = plugin
        self.problem = problem


class DeviceUnavailable(ModerationError):
    """A watermark scheme or setting needs a device (a CUDA GPU) that is not present."""


class TorchMismatch(ModerationError):
    """The installed torch's randperm no longer draws what the green-list kernels reproduce (checked at start)."""


class InvalidPost(ModerationError):
    """An input message cannot be processed as a post. `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StorageRejected(InvalidPost):
    """PostgreSQL refused the content of a write (SQLSTATE class 22 or 23): the same rows will fail again.

    Raised by moderation.storage.database.translate_errors; `sqlstate` is PostgreSQL's code."""

    def __init__(self, detail: str, sqlstate: str | None = None) -> None:
        super().__init__("storage_rejected", detail)
        self.sqlstate = sqlstate


class RetryableError(ModerationError):
    """A dependency failed in a way that retrying later can fix."""


class StorageUnavailable(RetryableError):
    """The database could not be reached or the transaction failed for a transient reason."""


class BrokerUnavailable(RetryableError):
    """Kafka or the Celery broker could not be reached."""


class StateStoreError(RetryableError):
    """The shared state backend (Redis) could not be reached or failed; the same call may succeed later."""


class AuthError(ModerationError):
    """A user-administration or authentication step failed (weak password, unknown user or role)."""


class ReviewError(ModerationError):
    """A review-service request that cannot be honoured; the subclass says which HTTP answer it maps to."""


class NotFound(ReviewError):
    """The post does not exist, or the principal may not see it (the two are indistinguishable on purpose)."""


class Forbidden(ReviewError):
    """The principal is known but its role does not allow the action."""


class Conflict(ReviewError):
    """The action clashes with the post's state: leased by someone else, or already decided."""


class Invalid(ReviewError):
    """The request's content is unusable (a reason too long, an unknown action)."""


class Throttled(ReviewError):
    """Over a login limit: try again after `retry_after` seconds. `scope` is "address" or "account"."""

    def __init__(self, scope: str, retry_after: int, first: bool) -> None:
        super().__init__(f"too many logins for this {scope}; retry after {retry_after} s")
        # first: the first refusal for this address or account this minute (log it; the rest are counted).
        self.scope, self.retry_after, self.first = scope, retry_after, first


class Busy(ReviewError):
    """Too many password checks are running and waiting already."""
