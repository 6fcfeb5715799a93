"""The Celery task: one batch of posts in; verdicts, outbox rows and the batch's receipt stored in one
transaction by workers/processing.py. Verdicts reach Kafka through the outbox relay, not from here.

Failures, each bounded:
- transient (database or Redis unreachable, statement timeout): retried here with exponential backoff
  and jitter, at most `task_max_retries` times; the batch is safe to run again;
- permanent (a row PostgreSQL refuses, a plugin bug) and crashes (the worker died while running it; the
  broker redelivers it): the batch is split until the post responsible is alone, which is dead-lettered
  with its reason while the others are stored (workers/isolation.py);
- a batch the broker lost, or one whose retries ran out: the consumer sends it again after its resend
  time, a bounded number of times, then dead-letters its posts.
The task's return value is ignored (`ignore_result`): the consumer reads receipts from PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from celery import Task
from celery.signals import task_retry, worker_process_init
from sqlalchemy.dialects.postgresql import insert

from moderation import metrics
from moderation.config import load_settings
from moderation.errors import RetryableError
from moderation.storage.database import translate_errors
from moderation.storage.models import BatchReceiptRow, OutboxRow
from moderation.storage.queries import completed_batches
from workers.celery_app import TASK_NAME, app
from workers.isolation import Isolator, Poisoned, RedisAttempts
from workers.processing import process_batch
from workers.runtime import Runtime, get_runtime
from workers.steps.dead_letter import dead_letter_value

log = logging.getLogger(__name__)

# Transient by type. Driver errors are translated where they arise (moderation.storage.database.translate_errors
# for PostgreSQL, workers.isolation for Redis), so only this package's RetryableError (and the builtins a
# socket raises) mean "the same batch will succeed later". Everything else is the batch's own problem.
RETRYABLE: tuple[type[BaseException], ...] = (RetryableError, ConnectionError, TimeoutError)
PIPELINE = load_settings().pipeline


@worker_process_init.connect
def _load_in_child(**_: Any) -> None:
    """Load tokenizers, caches and connections in each pool process as it starts, not at its first batch."""
    runtime = get_runtime()
    for device in {str(p.device) for p in runtime.engine.plugins if hasattr(p, "device")}:
        metrics.DEVICE.labels(device).set(1)


_attempts: RedisAttempts | None = None


def isolator(runtime: Runtime) -> Isolator:
    global _attempts
    if _attempts is None:
        _attempts = RedisAttempts(runtime.endpoints.redis_url)

    def process(batch_id: str, posts: list[dict[str, Any]]) -> dict[str, int]:
        return process_batch(runtime, {"v": 1, "batch_id": batch_id, "posts": posts})

    def completed(batch_ids: Sequence[str]) -> set[str]:
        with translate_errors(), runtime.db.connect() as conn:
            return completed_batches(conn, batch_ids)

    def dead_letter(poisoned: Poisoned) -> None:
        post = {k: v for k, v in poisoned.post.items() if k != "_source"}
        source = poisoned.post.get("_source") or ["", -1, -1]
        value = dead_letter_value(
            json.dumps(post, ensure_ascii=False).encode("utf-8", "surrogatepass"),
            (str(source[0]), int(source[1]), int(source[2])),
            None,
            poisoned.reason,
            poisoned.detail,
        )
        key = f"{post.get('tenant')}/{post.get('author')}".encode("utf-8", "surrogatepass")
        with translate_errors(), runtime.db.begin() as conn:
            conn.execute(
                insert(OutboxRow).values(topic=runtime.settings.pipeline.dead_letter_topic, key=key, value=value)
            )
            _receipt(conn, poisoned.batch_id, posts=1, dead_lettered=1)

    def finish(batch_id: str, posts: int) -> None:
        with translate_errors(), runtime.db.begin() as conn:
            _receipt(conn, batch_id, posts=posts, dead_lettered=0)

    return Isolator(process, completed, dead_letter, finish, _attempts, RETRYABLE)


def _receipt(conn: Any, batch_id: str, *, posts: int, dead_lettered: int) -> None:
    conn.execute(
        insert(BatchReceiptRow)
        .values(batch_id=batch_id, posts=posts, stored=0, redelivered=0, dead_lettered=dead_lettered)
        .on_conflict_do_nothing(index_elements=["batch_id"])
    )


@task_retry.connect
def _count_retry(reason: Any = None, **_: Any) -> None:
    """Celery retries the task itself (autoretry_for); this counts and logs each retry by its cause."""
    cause = type(reason).__name__
    metrics.ERRORS.labels("worker", cause).inc()
    metrics.TASK_RETRIES.labels(cause).inc()
    log.warning("batch retried after %s: %s", cause, reason)


# Bounded retries with exponential backoff and full jitter (Celery's own), so workers do not all come back at
# once after an outage. After the last one the batch fails; the consumer sends it again after its resend time,
# so nothing is lost.
@app.task(
    name=TASK_NAME,
    bind=True,
    acks_late=True,
    ignore_result=True,
    autoretry_for=RETRYABLE,
    max_retries=PIPELINE.task_max_retries,
    retry_backoff=True,
    retry_backoff_max=PIPELINE.task_retry_backoff_max_s,
    retry_jitter=True,
)
def moderate_batch(self: Task, payload: dict[str, Any]) -> None:
    runtime = get_runtime()
    batch_id = str(payload.get("batch_id") or "")
    posts = payload.get("posts")
    if payload.get("v") != 1 or not batch_id or not isinstance(posts, list):
        # Not from our consumer (or a newer one): nothing to store, nothing to retry.
        metrics.ERRORS.labels("worker", "bad_batch").inc()
        log.error("batch message without version 1, batch_id and posts; dropped")
        return
    isolator(runtime).run(batch_id, posts)
