"""`moderation consume`: run the Kafka consumer that feeds posts to the workers (until SIGTERM/Ctrl-C)."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("consume", help="run the Kafka consumer (posts topic -> Celery workers)", description=__doc__)
    p.add_argument("--config", help="config file (default: $MODERATION_CONFIG, else the bundled demo config)")
    p.add_argument(
        "--create-topics", action="store_true", help="create the input, output and dead-letter topics if missing"
    )
    p.add_argument("--partitions", type=int, default=3, help="partitions of topics created by --create-topics")
    p.add_argument("--metrics-port", type=int, help="metrics port (default: [metrics].consumer_port; 0 = off)")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO lines are per connection
    from prometheus_client import start_http_server

    from moderation.config import load_settings
    from moderation.endpoints import Endpoints
    from moderation.kafka_io import ensure_topics
    from workers.consumer import PostConsumer

    settings = load_settings(args.config)
    endpoints = Endpoints.from_env()
    p = settings.pipeline
    if args.create_topics:
        ensure_topics(endpoints, [p.input_topic, p.output_topic, p.dead_letter_topic], args.partitions)
    port = settings.metrics.consumer_port if args.metrics_port is None else args.metrics_port
    if port:
        start_http_server(port, addr=settings.metrics.bind_address)
        logging.getLogger(__name__).info("metrics on http://%s:%d/metrics", settings.metrics.bind_address, port)
    consumer = PostConsumer(settings, endpoints)
    consumer.install_signal_handlers()
    consumer.run()
    return 0
