"""`moderation worker`: run a Celery worker that moderates batches (tokenize, detect, policy, store).

Each pool process loads the tokenizers and green-list caches once, when it starts; the parent process
only supervises and serves the metrics of all its children (Prometheus multi-process mode).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("worker", help="run a Celery worker that moderates batches", description=__doc__)
    p.add_argument("--config", help="config file (default: $MODERATION_CONFIG, else the bundled demo config)")
    p.add_argument("--concurrency", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--metrics-dir", help="folder for multi-process metric files (default: a fresh temporary folder)")
    p.add_argument("--metrics-port", type=int, help="metrics port (default: [metrics].worker_port; 0 = off)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--name", default="moderation@%h", help="Celery node name")
    p.add_argument(
        "--no-relay",
        action="store_true",
        help="do not start an outbox relay beside the worker (run `moderation relay`)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.config:
        # Child processes read the config from the environment.
        os.environ["MODERATION_CONFIG"] = str(Path(args.config).resolve())
    # Must be set before prometheus_client is imported anywhere in this process or its children.
    metrics_dir = Path(args.metrics_dir or tempfile.mkdtemp(prefix="moderation-metrics-"))
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    from moderation.config import load_settings
    from moderation.metrics import serve_multiprocess
    from workers.celery_app import app

    settings = load_settings()  # fail early, in the parent, on a bad config
    port = settings.metrics.worker_port if args.metrics_port is None else args.metrics_port
    if port:
        serve_multiprocess(port, settings.metrics.bind_address)
    # The outbox relay publishes what the pool processes store; a process of its own (no threads in a parent
    # that forks), sharing this worker's environment and metrics folder.
    relay = None if args.no_relay else start_relay(args.config, args.log_level)
    try:
        app.worker_main(
            [
                "worker",
                f"--loglevel={args.log_level}",
                f"--concurrency={args.concurrency}",
                f"--queues={settings.pipeline.celery_queue}",
                "--pool=prefork",
                f"--hostname={args.name}",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        if relay is not None:
            relay.terminate()
            try:
                relay.wait(timeout=30)
            except subprocess.TimeoutExpired:
                relay.kill()
    return 0


def start_relay(config: str | None, log_level: str) -> subprocess.Popen[bytes]:
    """`moderation relay` as a child that dies with this process (PR_SET_PDEATHSIG on Linux)."""

    def die_with_parent() -> None:
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # not Linux: the relay outlives a killed worker, which is harmless (SKIP LOCKED)

    cmd = [sys.executable, "-m", "moderation.cli", "relay", f"--log-level={log_level}"]
    if config:
        cmd.append(f"--config={config}")
    return subprocess.Popen(cmd, preexec_fn=die_with_parent)
