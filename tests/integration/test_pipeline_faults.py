"""Scale-out and faults against real processes: two consumers and two workers with members joining and
leaving (SIGTERM, SIGKILL), a worker host SIGKILLed (recovery time measured and printed), the Celery broker
(RabbitMQ) restarted, the Kafka-protocol broker unreachable for a while. Each test counts posts before and
after: every post ends with exactly one verdict, and no consumer crashes."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from moderation.testing.pipeline import LocalPipeline, _pids_of_children
from tests.integration.conftest import pipeline_config
from tests.integration.test_pipeline import assert_exactly_once, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def scaled(tmp_path: Path) -> Any:
    with LocalPipeline(tmp_path, pipeline_config(batch_max_posts=32)) as lp:
        lp.start_worker(extra=True)
        yield lp


def no_tracebacks(lp: LocalPipeline) -> None:
    for log in lp.workdir.glob("consumer*.log"):
        assert "Traceback" not in log.read_text(errors="replace"), log.name


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker and its pool processes at once, as a host crash would."""
    pids = [proc.pid, *_pids_of_children(proc.pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def test_consumers_join_and_leave_mid_stream_nothing_lost_or_doubled(
    scaled: LocalPipeline, many_posts: list[dict[str, Any]]
) -> None:
    lp = scaled
    before = lp.count_verdicts()
    assert before == 0
    lp.produce(many_posts)
    n = len(many_posts)
    wait_until(lambda: lp.count_verdicts() > 100, 120, "the first verdicts")
    second = lp.start_consumer(extra=True)  # joins: the cooperative assignor hands it a partition
    # Each membership change waits until the group settled: the embedded broker (tansu 0.6) never
    # completes a rebalance whose joining member died before its assignment (real Kafka expires it).
    wait_for_line(lp, "consumer-1", "partitions assigned")
    wait_until(lambda: lp.count_verdicts() > n // 4, 300, "progress with two consumers")
    assigned_before = count_lines(lp, "consumer", "partitions assigned")
    second.send_signal(signal.SIGKILL)  # leaves without a word: its partition returns after the session timeout
    second.wait()
    wait_until(lambda: count_lines(lp, "consumer", "partitions assigned") > assigned_before, 120, "the takeover")
    wait_until(lambda: lp.count_verdicts() > n // 2, 300, "progress after a consumer was killed")
    third = lp.start_consumer(extra=True)
    wait_for_line(lp, "consumer-2", "partitions assigned")
    # A second wave, so that the clean leave below happens while the first consumer is busy.
    more = [{**p, "id": f"q{p['id']}"} for p in many_posts]
    lp.produce(more)
    wait_until(lambda: lp.count_verdicts() > n + 200, 300, "the second wave to start")
    first = lp.consumer
    assert first is not None
    lp.consumer = third  # the one the harness watches from now on
    first.send_signal(signal.SIGTERM)  # leaves cleanly: drains, commits, exits 0
    assert first.wait(timeout=120) == 0
    assert lp.count_verdicts() < 2 * n, "the consumer was not busy when it left"
    lp.wait_for(2 * n, timeout=600)
    time.sleep(3)  # anything delivered twice has had time to land
    assert_exactly_once(lp, many_posts + more)
    no_tracebacks(lp)


def count_lines(lp: LocalPipeline, name: str, needle: str) -> int:
    path = lp.workdir / f"{name}.log"
    return path.read_text(errors="replace").count(needle) if path.exists() else 0


def wait_for_line(lp: LocalPipeline, name: str, needle: str, timeout: float = 120) -> None:
    wait_until(lambda: count_lines(lp, name, needle) > 0, timeout, f"{needle!r} in {name}.log")


def held_batch(log: Path) -> str | None:
    """The batch a worker had received and not finished when it died (from Celery's own log lines)."""
    body = log.read_text(errors="replace")
    received = re.findall(r"Task \S+\[([0-9a-f/]+)\] received", body)
    finished = set(re.findall(r"Task \S+\[([0-9a-f/]+)\] (?:succeeded|failed|retry)", body))
    open_ = [b for b in received if b not in finished]
    return open_[-1] if open_ else None


def receipt_time(lp: LocalPipeline, batch_id: str) -> float | None:
    engine = lp.database()
    try:
        with engine.connect() as conn:
            t = conn.execute(
                text("SELECT EXTRACT(EPOCH FROM stored_at) FROM batch_receipts WHERE batch_id = :b"), {"b": batch_id}
            ).scalar()
            return float(t) if t is not None else None
    finally:
        engine.dispose()


def test_worker_host_sigkill_recovers_in_seconds_and_loses_nothing(
    scaled: LocalPipeline, many_posts: list[dict[str, Any]]
) -> None:
    lp = scaled
    lp.produce(many_posts)
    victim = lp.workers[0]
    log = lp.workdir / "worker-1.log"
    wait_until(lambda: held_batch(log) is not None and lp.count_verdicts() > 100, 180, "the extra worker to be busy")
    batch = held_batch(log)
    assert batch is not None
    killed_at = time.time()
    kill_group(victim)
    lp.workers.remove(victim)
    wait_until(lambda: receipt_time(lp, batch) is not None, 120, f"batch {batch} to be stored by the other worker")
    stored_at = receipt_time(lp, batch)
    assert stored_at is not None
    recovery = stored_at - killed_at
    print(f"\nrecovery after SIGKILL of a worker host: batch {batch} stored {recovery:.1f} s after the kill")
    lp.wait_for(len(many_posts), timeout=600)
    assert_exactly_once(lp, many_posts)


def rabbitmqctl() -> str | None:
    return shutil.which("rabbitmqctl")


@pytest.mark.skipif(rabbitmqctl() is None, reason="needs rabbitmqctl to stop and start the local RabbitMQ")
def test_celery_broker_restart_mid_stream(scaled: LocalPipeline, many_posts: list[dict[str, Any]]) -> None:
    lp = scaled
    if not lp.endpoints or not lp.endpoints.celery_broker.startswith("amqp"):
        pytest.skip("the Celery broker under test is not RabbitMQ")
    lp.produce(many_posts)
    wait_until(lambda: lp.count_verdicts() > 100, 180, "the first verdicts")
    ctl = rabbitmqctl()
    assert ctl is not None
    subprocess.run([ctl, "stop_app"], check=True, capture_output=True)
    try:
        time.sleep(8)  # the consumer keeps polling, holds its batches unsent, pauses; workers reconnect
    finally:
        subprocess.run([ctl, "start_app"], check=True, capture_output=True)
    lp.wait_for(len(many_posts), timeout=600)
    time.sleep(3)
    assert_exactly_once(lp, many_posts)
    no_tracebacks(lp)


def test_kafka_broker_unreachable_for_a_while(scaled: LocalPipeline, many_posts: list[dict[str, Any]]) -> None:
    lp = scaled
    if lp.broker is None:
        pytest.skip("an external Kafka is configured; this test freezes the embedded broker")
    lp.produce(many_posts)
    wait_until(lambda: lp.count_verdicts() > 100, 180, "the first verdicts")
    # SIGSTOP: connections stay open and nothing answers, as with a network partition; memory is kept.
    lp.broker.process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(15)
    finally:
        lp.broker.process.send_signal(signal.SIGCONT)
    lp.wait_for(len(many_posts), timeout=600)
    time.sleep(3)
    assert_exactly_once(lp, many_posts)
    no_tracebacks(lp)
