"""`moderation relay`: publish the outbox (verdicts, worker-side dead letters) to Kafka.

`moderation worker` starts one beside itself unless given --no-relay; run more anywhere, they share the
outbox (FOR UPDATE SKIP LOCKED). See workers/outbox.py for the guarantees.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from types import FrameType
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("relay", help="publish stored verdicts and dead letters to Kafka", description=__doc__)
    p.add_argument("--config", help="config file (default: $MODERATION_CONFIG, else the bundled demo config)")
    p.add_argument("--batch-size", type=int, default=500, help="outbox rows per round (default 500)")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve metrics here (0: off; under a worker they are served with its own)",
    )
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s relay[%(process)d] %(message)s")
    from prometheus_client import start_http_server

    from moderation.config import load_settings
    from moderation.endpoints import Endpoints
    from moderation.kafka_io import make_producer
    from moderation.storage.database import make_engine
    from workers.outbox import OutboxRelay

    settings = load_settings(args.config)
    endpoints = Endpoints.from_env()
    db = make_engine(endpoints.database_url, 2)
    relay = OutboxRelay(
        db,
        # Fail a round in seconds, not minutes, when the broker is gone: the round is retried with backoff.
        lambda: make_producer(endpoints, max_block_ms=10_000, request_timeout_ms=10_000, delivery_timeout_ms=30_000),
        batch_size=args.batch_size,
    )
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    if args.metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        start_http_server(args.metrics_port, addr=settings.metrics.bind_address)
    logging.getLogger(__name__).info("outbox relay ready (pid %d)", os.getpid())
    try:
        relay.run(stop)
    finally:
        db.dispose()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())
    return 0
