"""The Celery application shared by the consumer (which sends batches) and the workers (which run them).

Delivery guarantees come from three settings together: late acks (a batch is acknowledged only after its
verdicts are committed), prefetch 1 (a worker holds one batch it is not running, not a backlog), and
reject-on-worker-lost (a batch whose process died, e.g. SIGKILL or out of memory, goes back to the queue).
"""

from __future__ import annotations

from celery import Celery

from moderation.config import Settings, load_settings
from moderation.endpoints import Endpoints

TASK_NAME = "workers.tasks.moderate_batch"


def make_app(settings: Settings | None = None, endpoints: Endpoints | None = None) -> Celery:
    settings = settings or load_settings()
    endpoints = endpoints or Endpoints.from_env()
    p = settings.pipeline
    app = Celery(
        "moderation", broker=endpoints.celery_broker, backend=endpoints.celery_backend, include=["workers.tasks"]
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=p.celery_queue,
        task_soft_time_limit=p.task_soft_time_limit_s,
        task_time_limit=p.task_time_limit_s,
        # The consumer polls results; it forgets each one it has seen, these expire otherwise.
        result_expires=3600,
        # Redis: a message a dead worker held returns after this long (the consumer also resends on its timeout).
        broker_transport_options={"visibility_timeout": max(p.task_time_limit_s * 2, 600)},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Keep the model and green-list caches warm: a worker process is not recycled after N tasks.
        worker_max_tasks_per_child=None,
    )
    return app


app = make_app()
