"""`moderation lag`: export the committed lag of consumer groups as a Prometheus gauge, from outside the
consumers (log end offset minus committed offset, per partition), so dead consumers and stuck commits show.

Run one next to the consumers (it joins no group). Metric: moderation_consumer_group_lag_messages
{group, topic, partition}; alert rules in deploy/alerts.yml."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("lag", help="export consumer-group lag (end offset - committed offset)", description=__doc__)
    p.add_argument("--config", help="config file (default: $MODERATION_CONFIG, else the bundled demo config)")
    p.add_argument("--group", action="append", help="consumer group (repeatable; default: [pipeline].group_id)")
    p.add_argument("--topic", action="append", help="topic (repeatable; default: [pipeline].input_topic)")
    p.add_argument("--port", type=int, default=9103, help="metrics port (default 9103)")
    p.add_argument("--bind", default="127.0.0.1", help="metrics address")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between readings")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    from prometheus_client import start_http_server

    from moderation.config import load_settings
    from moderation.endpoints import Endpoints
    from workers.lag import run_exporter

    settings = load_settings(args.config)
    groups = args.group or [settings.pipeline.group_id]
    topics = args.topic or [settings.pipeline.input_topic]
    start_http_server(args.port, addr=args.bind)
    logging.getLogger(__name__).info("lag of %s on %s: http://%s:%d/metrics", groups, topics, args.bind, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_exporter(Endpoints.from_env(), {g: topics for g in groups}, args.interval, stop)
    return 0
