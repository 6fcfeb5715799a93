"""A whole pipeline on one machine — broker, database, worker, consumer as real processes — for `make demo`,
the integration tests and the pipeline benchmark.

It uses the Kafka named by MODERATION_KAFKA_BOOTSTRAP when set, else starts the embedded broker; it makes
its own database on the PostgreSQL of MODERATION_DATABASE_URL and migrates it; it starts `moderation
worker` and `moderation consume` as child processes, and stops everything it started on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import make_url

from moderation.endpoints import Endpoints
from moderation.kafka_io import ensure_topics, make_producer
from moderation.storage import migrate
from moderation.storage.database import create_database_if_missing, drop_database, make_engine
from moderation.storage.queries import verdict_count
from moderation.testing.broker import EmbeddedBroker, free_port, start_embedded_broker


def _pids_of_children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    if proc.poll() is not None:
        return
    children = _pids_of_children(proc.pid)
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# The checkout this module was imported from. Its processes run in a temporary folder, where `python -m` would
# otherwise import whatever the environment has installed: from another checkout (a git worktree sharing the
# virtual environment), a benchmark of old code would time the current code's workers.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalPipeline:
    """Start with `with LocalPipeline(workdir, config_text) as lp:`; `lp.produce(...)`, `lp.wait_for(n)`."""

    workdir: Path
    config_text: str
    database_name: str = field(default_factory=lambda: f"moderation_local_{uuid.uuid4().hex[:8]}")
    # The plugins' shared state (flood buckets, rate windows) under a prefix of this pipeline's own, deleted at
    # stop: a run must not see an earlier run's posts as near-duplicates of its own.
    state_prefix: str = field(default_factory=lambda: f"moderation-local-{uuid.uuid4().hex[:8]}:")
    keep_database: bool = False
    worker_concurrency: int = 1
    partitions: int = 3
    quiet: bool = True
    # Set by start()
    endpoints: Endpoints | None = None
    broker: EmbeddedBroker | None = None
    worker: subprocess.Popen[bytes] | None = None
    consumer: subprocess.Popen[bytes] | None = None
    # More consumers and workers (scale-out tests), started by start_consumer()/start_worker(extra=True).
    consumers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    consumer_port: int = 0
    worker_port: int = 0
    _logs: list[IO[bytes]] = field(default_factory=list)
    _log_sizes: dict[str, int] = field(default_factory=dict)

    # ---- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> LocalPipeline:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.toml"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.consumer_port, self.worker_port = free_port(), free_port()
        text = self.config_text
        if "[metrics]" not in text:
            text += f"\n[metrics]\nconsumer_port = {self.consumer_port}\nworker_port = {self.worker_port}\n"
        self.config_path.write_text(text, encoding="utf-8")
        base = Endpoints.from_env()
        url = make_url(base.database_url)
        database_url = url.set(database=self.database_name).render_as_string(hide_password=False)
        if "kafka_bootstrap" in base.model_fields_set:  # MODERATION_KAFKA_BOOTSTRAP names a real Kafka
            kafka, api = base.kafka_bootstrap, base.kafka_api_version
        else:
            self.broker = start_embedded_broker()
            kafka, api = self.broker.bootstrap, self.broker.endpoints().kafka_api_version
        self.endpoints = base.model_copy(
            update={"database_url": database_url, "kafka_bootstrap": kafka, "kafka_api_version": api}
        )
        drop_database(database_url) if not self.keep_database else None
        create_database_if_missing(database_url)
        migrate.upgrade(database_url)
        from moderation.config import load_settings

        settings = load_settings(self.config_path)
        p = settings.pipeline
        ensure_topics(self.endpoints, [p.input_topic, p.output_topic, p.dead_letter_topic], self.partitions)
        self.settings = settings
        self.start_worker()
        self.start_consumer()

    def env(self) -> dict[str, str]:
        assert self.endpoints is not None
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        env.update(
            MODERATION_CONFIG=str(self.config_path),
            MODERATION_DATABASE_URL=self.endpoints.database_url,
            MODERATION_KAFKA_BOOTSTRAP=self.endpoints.kafka_bootstrap,
            MODERATION_KAFKA_API_VERSION=".".join(map(str, self.endpoints.kafka_api_version or ())),
            MODERATION_CELERY_BROKER=self.endpoints.celery_broker,
            MODERATION_CELERY_BACKEND=self.endpoints.celery_backend,
            MODERATION_REDIS_URL=self.endpoints.redis_url,
            MODERATION_STATE_PREFIX=self.state_prefix,
            PYTHONPATH=os.pathsep.join([str(SOURCE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        )
        return env

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        path = self.workdir / f"{name}.log"
        self._log_sizes[name] = path.stat().st_size if path.exists() else 0  # a restart waits for new lines
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", "moderation.cli", *args],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )

    def start_worker(self, wait: float = 120.0, *, extra: bool = False) -> subprocess.Popen[bytes]:
        """Start `moderation worker` (another one with `extra`, logging to worker-N.log); wait until it is ready."""
        name = f"worker-{len(self.workers) + 1}" if extra else "worker"
        metrics_dir = self.workdir / f"{name}-metrics"
        proc = self._spawn(
            name,
            [
                "worker",
                f"--concurrency={self.worker_concurrency}",
                f"--metrics-dir={metrics_dir}",
                "--log-level=INFO",
                f"--name=local-{uuid.uuid4().hex[:6]}@%h",
                *(["--metrics-port=0"] if extra else []),
            ],
        )
        # The pool process logs this once its tokenizers and caches are loaded.
        self._wait_for_log(name, "ready: plugins", wait, proc)
        if extra:
            self.workers.append(proc)
        else:
            self.worker = proc
        return proc

    def start_consumer(self, wait: float = 60.0, *, extra: bool = False) -> subprocess.Popen[bytes]:
        """Start `moderation consume` (another group member with `extra`, logging to consumer-N.log)."""
        name = f"consumer-{len(self.consumers) + 1}" if extra else "consumer"
        proc = self._spawn(
            name, ["consume", "--log-level=INFO", "--metrics-port=0"] if extra else ["consume", "--log-level=INFO"]
        )
        # The first member gets partitions at once; a later one may wait for a rebalance.
        self._wait_for_log(name, "consuming" if extra else "partitions assigned", wait, proc)
        if extra:
            self.consumers.append(proc)
        else:
            self.consumer = proc
        return proc

    def _wait_for_log(self, name: str, needle: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
        path = self.workdir / f"{name}.log"
        start_size = self._log_sizes.get(name, 0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {path}:\n{self.tail(name)}")
            data = path.read_bytes()[start_size:] if path.exists() else b""
            if needle.encode() in data:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready after {timeout:.0f} s; see {path}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop_consumer(self, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int | None:
        proc, self.consumer = self.consumer, None
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def stop_worker(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        proc, self.worker = self.worker, None
        if proc is None or proc.poll() is not None:
            return
        children = _pids_of_children(proc.pid)
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in children:  # a pool process must not outlive its parent
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def worker_children(self) -> list[int]:
        return _pids_of_children(self.worker.pid) if self.worker else []

    def stop(self) -> None:
        for proc in self.consumers + self.workers:
            _terminate(proc)
        self.consumers.clear()
        self.workers.clear()
        self.stop_consumer()
        self.stop_worker()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        self._delete_celery_queue()
        self._delete_state()
        if self.endpoints is not None and not self.keep_database:
            # PostgreSQL may be what a test stopped; then there is nothing to clean.
            with contextlib.suppress(Exception):
                drop_database(self.endpoints.database_url)
        for log in self._logs:
            log.close()
        self._logs.clear()

    def _delete_celery_queue(self) -> None:
        """RabbitMQ keeps a durable queue after its last worker left: remove this pipeline's."""
        if self.endpoints is None or not self.endpoints.celery_broker.startswith("amqp"):
            return
        from kombu import Connection

        with contextlib.suppress(Exception), Connection(self.endpoints.celery_broker, connect_timeout=5) as conn:
            conn.default_channel.queue_delete(self.settings.pipeline.celery_queue)

    def _delete_state(self) -> None:
        if self.endpoints is None or self.keep_database:
            return
        import redis

        with contextlib.suppress(Exception):  # Redis may be what a test stopped
            client = redis.Redis.from_url(self.endpoints.state_url, socket_connect_timeout=5, socket_timeout=10)
            keys = list(client.scan_iter(match=f"{self.state_prefix}*", count=10_000))
            for start in range(0, len(keys), 10_000):
                client.delete(*keys[start : start + 10_000])
            client.close()

    # ---- using it ---------------------------------------------------------------------------------
    def produce(self, posts: Iterable[dict[str, Any] | bytes], topic: str | None = None) -> int:
        assert self.endpoints is not None
        producer = make_producer(self.endpoints)
        n = 0
        for post in posts:
            value = post if isinstance(post, bytes) else json.dumps(post).encode()
            producer.send(topic or self.settings.pipeline.input_topic, value)
            n += 1
        producer.flush()
        producer.close()
        return n

    def database(self) -> Any:
        assert self.endpoints is not None
        return make_engine(self.endpoints.database_url, 1)

    def count_verdicts(self) -> int:
        engine = self.database()
        try:
            with engine.connect() as conn:
                return verdict_count(conn)
        finally:
            engine.dispose()

    def wait_for(self, n: int, timeout: float = 120.0) -> int:
        """Wait until at least n verdicts are stored; returns the count (raises on timeout)."""
        deadline = time.monotonic() + timeout
        count = 0
        # One connection pool for the whole wait: a new connection per check forks a PostgreSQL backend, CPU
        # that a benchmark would count against the pipeline.
        engine = self.database()
        try:
            while time.monotonic() < deadline:
                try:
                    with engine.connect() as conn:
                        count = verdict_count(conn)
                except Exception:  # database briefly unreachable (a test may have stopped it)
                    count = -1
                if count >= n:
                    return count
                for name, proc in (("consumer", self.consumer), ("worker", self.worker)):
                    # Extra processes may be stopped on purpose by a test; the main ones must stay up.
                    if proc is not None and proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
                time.sleep(0.2)
        finally:
            engine.dispose()
        raise TimeoutError(
            f"{count} of {n} verdicts after {timeout:.0f} s\nconsumer:\n{self.tail('consumer')}\nworker:\n{self.tail('worker')}"
        )
