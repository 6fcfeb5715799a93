"""The Celery task: one batch of posts in, verdicts stored and published.

Retries: database and broker outages are retried here with exponential backoff (the batch is safe to run
again); anything else fails the task, and the consumer resends the batch a bounded number of times
before dead-lettering its posts with reason "processing_failed". Either way no post is dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.signals import worker_process_init
from kafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError, OperationalError

from moderation import metrics
from moderation.errors import RetryableError
from workers.celery_app import TASK_NAME, app
from workers.processing import process_batch
from workers.runtime import get_runtime

log = logging.getLogger(__name__)

RETRYABLE = (OperationalError, DBAPIError, KafkaError, RetryableError, ConnectionError, TimeoutError)


@worker_process_init.connect
def _load_in_child(**_: Any) -> None:
    """Load tokenizers, caches and connections in each pool process as it starts, not at its first batch."""
    runtime = get_runtime()
    for device in {str(p.device) for p in runtime.engine.plugins if hasattr(p, "device")}:
        metrics.DEVICE.labels(device).set(1)


@app.task(name=TASK_NAME, bind=True, acks_late=True)
def moderate_batch(self: Task, payload: dict[str, Any]) -> dict[str, int]:
    try:
        return process_batch(get_runtime(), payload)
    except RETRYABLE as exc:
        cause = type(exc).__name__
        metrics.ERRORS.labels("worker", cause).inc()
        settings = get_runtime().settings.pipeline
        if self.request.retries >= settings.task_max_retries:
            log.error("batch %s: giving up after %d retries (%s)", payload.get("batch_id"), self.request.retries, cause)
            raise
        metrics.TASK_RETRIES.labels(cause).inc()
        delay = min(settings.task_retry_backoff_max_s, 2**self.request.retries)
        log.warning("batch %s: %s, retrying in %d s", payload.get("batch_id"), cause, delay)
        raise self.retry(exc=exc, countdown=delay) from exc
    except Exception as exc:
        metrics.ERRORS.labels("worker", type(exc).__name__).inc()
        raise
