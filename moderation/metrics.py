"""Prometheus metrics of the consumer and the workers. Names and labels are documented in docs/metrics.md.

Conventions: prefix `moderation_`, base units (seconds), `_total` for counters. Label values are
bounded: tenants, actions, reasons, schemes, plugins — never post ids, authors or anything secret.

The Celery worker runs several processes, so it uses prometheus_client's multi-process mode: the
`moderation worker` command sets PROMETHEUS_MULTIPROC_DIR *before* this module is imported, and its
HTTP server aggregates every process's files.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

# ---- consumer -------------------------------------------------------------------------------------
POSTS_CONSUMED = Counter("moderation_posts_consumed_total", "Messages read from the input topic.", ["topic"])
DEAD_LETTERS = Counter(
    "moderation_dead_letters_total", "Messages sent to the dead-letter topic, by reason.", ["reason"]
)
CONSUMER_GROUP_LAG = Gauge(
    "moderation_consumer_group_lag_messages",
    "Committed lag: log end offset - the group's committed offset, measured from outside (moderation lag).",
    ["group", "topic", "partition"],
)
BATCHES_IN_FLIGHT = Gauge(
    "moderation_batches_in_flight", "Batches sent to workers and not yet stored.", multiprocess_mode="livesum"
)
BATCHES_SENT = Counter("moderation_batches_sent_total", "Batches sent to the workers (resends included).")
BATCH_RESENDS = Counter(
    "moderation_batch_resends_total", "Batches sent again after a failure or timeout, by cause.", ["cause"]
)
CONSUMER_PAUSES = Counter(
    "moderation_consumer_pauses_total", "Times the consumer paused its partitions because too much was in flight."
)
OFFSETS_COMMITTED = Counter(
    "moderation_offsets_committed_total", "Offset commits (each after every earlier post was stored)."
)
END_TO_END_SECONDS = Histogram(
    "moderation_end_to_end_seconds",
    "From the message's Kafka timestamp to the consumer seeing its batch stored.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)

# ---- workers --------------------------------------------------------------------------------------
VERDICTS = Counter("moderation_verdicts_total", "Verdicts stored, by tenant and action.", ["tenant", "action"])
SIGNALS = Counter(
    "moderation_plugin_signals_total",
    "Signals of stored verdicts, by plugin, label (or abstention reason) and outcome (finding, clean, abstained).",
    ["plugin", "label", "outcome"],
)
DEGRADED_VERDICTS = Counter(
    "moderation_degraded_verdicts_total",
    "Verdicts made while a plugin could not run (e.g. its shared state was down), by that plugin.",
    ["plugin"],
)
REDELIVERED = Counter(
    "moderation_posts_redelivered_total", "Posts that arrived again and already had a verdict (left unchanged)."
)
BATCH_SIZE = Histogram(
    "moderation_batch_size_posts",
    "Posts per batch processed by a worker.",
    buckets=(1, 8, 32, 64, 128, 256, 512, 1024, 4096),
)
PLUGIN_SECONDS = Histogram(
    "moderation_plugin_seconds",
    "Time one plugin took over one batch (the watermark plugin: tokenize + detect).",
    ["plugin"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
STORE_SECONDS = Histogram(
    "moderation_store_seconds",
    "Time to write one batch to PostgreSQL.",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
Z_SCORE = Histogram(
    "moderation_watermark_z_score",
    "Whole-text z-score of each scored post, by scheme.",
    ["scheme"],
    buckets=(-4, -2, 0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20),
)
TOKENS_SCORED = Counter("moderation_tokens_scored_total", "Tokens counted by the watermark detector.", ["scheme"])
ERRORS = Counter("moderation_errors_total", "Errors by component and kind (retried or not).", ["component", "kind"])
TASK_RETRIES = Counter("moderation_task_retries_total", "Batches retried by a worker, by cause.", ["cause"])
DEVICE = Gauge(
    "moderation_detector_device_info", "1 for the device the detector runs on.", ["device"], multiprocess_mode="max"
)


# ---- review service -------------------------------------------------------------------------------
REVIEW_EVIDENCE_READS = Counter(
    "moderation_review_evidence_reads_total",
    "Post reads that carried per-token watermark evidence, by the reader's role and outcome (shown, withheld_*).",
    ["role", "outcome"],
)
REVIEW_LOGINS_REFUSED = Counter(
    "moderation_review_logins_refused_total",
    "Logins refused, by reason (wrong_password, throttled_address, throttled_account, busy).",
    ["reason"],
)


# ---- outbox relay (runs beside each worker; its metrics are served with the worker's) -------------------
OUTBOX_PUBLISHED = Counter("moderation_outbox_published_total", "Outbox messages the broker acknowledged.")
OUTBOX_FAILURES = Counter(
    "moderation_outbox_failures_total", "Outbox messages not acknowledged in a round (kept, retried later)."
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "moderation_outbox_oldest_unpublished_seconds",
    "Age of the oldest outbox message not yet published (0 when none): the relay's backlog.",
    multiprocess_mode="livemax",
)


def serve_multiprocess(port: int, addr: str) -> None:
    """Serve every worker process's metrics from one port (call in the parent, after setting the env var)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=addr, registry=registry)
