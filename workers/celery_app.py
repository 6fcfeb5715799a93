"""The Celery application shared by the consumer (which sends batches) and the workers (which run them).

Broker: RabbitMQ by default (docs/pipeline.md, "Why RabbitMQ"). A task a worker holds unacknowledged
goes back to the queue as soon as that worker's connection drops — a SIGKILLed worker costs seconds, not
a visibility timeout — and AMQP heartbeats every `broker_heartbeat` seconds notice a host that vanished
without closing its connection. Redis still works as a broker (MODERATION_CELERY_BROKER) with the
visibility-timeout caveat.

Delivery: late acks (a batch is acknowledged only after its receipt is committed), prefetch 1 (a worker
holds one batch it is not running, not a backlog), reject-on-worker-lost (a batch whose pool process
died goes back to the queue; workers/isolation.py bounds how often by splitting it). Results are not
stored: the consumer reads batch receipts from PostgreSQL.
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
    app = Celery("moderation", broker=endpoints.celery_broker, include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A batch killed at the hard time limit (a hang the soft limit could not interrupt, e.g. in native code)
        # goes back to the broker at once, like one whose worker died: its next run counts the lost attempt and
        # starts halving it (workers/isolation.py), instead of waiting minutes for the consumer's resend.
        task_acks_on_timeout=False,
        worker_prefetch_multiplier=1,
        task_default_queue=p.celery_queue,
        task_soft_time_limit=p.task_soft_time_limit_s,
        task_time_limit=p.task_time_limit_s,
        # AMQP heartbeats: a worker host that vanished is noticed within about two intervals.
        broker_heartbeat=5,
        broker_connection_timeout=4,
        # Redis as the broker: a message a dead worker held returns only after this long.
        broker_transport_options={"visibility_timeout": max(p.task_time_limit_s * 2, 600)},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Keep the model and green-list caches warm: a worker process is not recycled after N tasks.
        worker_max_tasks_per_child=None,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # A pool process loads tokenizers and caches before it reports up (workers/tasks.py); on a busy
        # machine that takes longer than Celery's 4 s default, which then kills and replaces it forever.
        worker_proc_alive_timeout=180,
    )
    return app


app = make_app()
