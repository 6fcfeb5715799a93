"""Every error the moderation library raises, in one place.

    ModerationError                  base of everything below
    ├── ConfigError                  the config file or an environment variable is unusable; fix it and restart
    ├── PluginError                  a plugin failed to load or broke its contract (names the plugin)
    ├── DeviceUnavailable            a scheme needs a device this machine does not have (e.g. CUDA)
    ├── InvalidPost                  one input message is unusable: dead-letter it, never retry it
    └── RetryableError               a dependency is down; the same work will succeed later
        ├── StorageUnavailable       PostgreSQL cannot be reached or refused the transaction
        └── BrokerUnavailable        Kafka or the Celery broker cannot be reached

Errors from libraries underneath (psycopg2, kafka-python, pydantic) are translated into these at one
boundary each, so callers decide "dead-letter" versus "retry" by type alone.

No message built here may contain a secret: watermark keys and passwords are never formatted into them.
"""

from __future__ import annotations


class ModerationError(Exception):
    """Base class of every error raised by this package."""


class ConfigError(ModerationError):
    """The configuration is unusable. The message names the field, the bad value and what was expected."""


class PluginError(ModerationError):
    """A plugin could not be loaded or returned something that breaks the plugin contract."""

    def __init__(self, plugin: str, problem: str) -> None:
        super().__init__(f"plugin {plugin!r}: {problem}")
        self.plugin = plugin
        self.problem = problem


class DeviceUnavailable(ModerationError):
    """A watermark scheme or setting needs a device (a CUDA GPU) that is not present."""


class InvalidPost(ModerationError):
    """An input message cannot be processed as a post. `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RetryableError(ModerationError):
    """A dependency failed in a way that retrying later can fix."""


class StorageUnavailable(RetryableError):
    """The database could not be reached or the transaction failed for a transient reason."""


class BrokerUnavailable(RetryableError):
    """Kafka or the Celery broker could not be reached."""
