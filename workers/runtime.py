"""What one worker process holds for its whole life: the moderation engine (tokenizers, green-list
caches), a database engine and a Kafka producer. Built lazily in the process that uses them — never in
a parent that forks, whose copies would share sockets and waste memory."""

from __future__ import annotations

import gc
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy

from moderation.config import Settings, load_settings
from moderation.endpoints import Endpoints
from moderation.engine import Engine
from moderation.plugins.state import require_shared_state
from moderation.storage.database import make_engine

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    endpoints: Endpoints
    engine: Engine
    db: sqlalchemy.Engine
    _producer: Any = field(default=None, repr=False)
    pid: int = field(default_factory=os.getpid)
    # When this process last checked that the written tables have planner statistics (monotonic seconds).
    statistics_checked_at: float = float("-inf")

    def producer(self) -> Any:
        if self._producer is None:
            from moderation.kafka_io import make_producer

            self._producer = make_producer(self.endpoints)
        return self._producer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
        self.db.dispose()


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None or _runtime.pid != os.getpid():
            settings = load_settings()
            endpoints = Endpoints.from_env()
            # One of many processes moderating one stream: flood and rate windows must live in Redis.
            require_shared_state()
            _runtime = Runtime(
                settings=settings,
                endpoints=endpoints,
                engine=Engine(settings),
                db=make_engine(endpoints.database_url, settings.storage.pool_size),
            )
            # Long-lived from here on: keep full garbage collections from traversing them again and again.
            gc.freeze()
            log.info("worker process %d ready: plugins %s", os.getpid(), [p.name for p in _runtime.engine.plugins])
        return _runtime
