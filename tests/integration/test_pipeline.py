"""The pipeline's promises, each against real processes and services: N posts in, exactly N verdicts out,
matching `moderation scan`; redelivery changes nothing; bad messages are dead-lettered; a worker
SIGKILLed mid-batch, a PostgreSQL outage and a consumer SIGTERM lose nothing and duplicate nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition
from sqlalchemy import text

from moderation.kafka_io import make_consumer
from moderation.testing.pipeline import LocalPipeline
from tests.integration.conftest import metric_value

pytestmark = pytest.mark.integration


def stored(lp: LocalPipeline) -> dict[str, dict[str, Any]]:
    engine = lp.database()
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT v.id AS verdict_id, v.post_id, v.action, v.decided_at, p.source_partition, p.source_offset,"
                    " (SELECT count(*) FROM signals s WHERE s.verdict_id = v.id) AS signals,"
                    " (SELECT s.details FROM signals s WHERE s.verdict_id = v.id AND s.plugin = 'watermark' LIMIT 1)"
                    " AS watermark FROM verdicts v JOIN posts p USING (tenant, post_id)"
                )
            ).mappings()
            return {r["post_id"]: dict(r) for r in rows}
    finally:
        engine.dispose()


def scan(posts: list[dict[str, Any]], tmp_path: Path, config: Path) -> dict[str, dict[str, Any]]:
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in posts), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "moderation.cli", "scan", "--config", str(config), "--input", str(path)],
        capture_output=True,
        check=True,
    )
    return {line["id"]: line for line in map(json.loads, out.stdout.decode().splitlines())}


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_every_post_gets_one_verdict_matching_scan_and_redelivery_changes_nothing(
    pipeline: LocalPipeline, mixed_posts: list[dict[str, Any]], tmp_path: Path
) -> None:
    n = len(mixed_posts)
    pipeline.produce(mixed_posts)
    assert pipeline.wait_for(n) == n
    first = stored(pipeline)
    assert len(first) == n

    expected = scan(mixed_posts, tmp_path, pipeline.config_path)
    assert sum(e["action"] == "review" for e in expected.values()) >= 30  # the watermarked ones, mostly
    for post_id, row in first.items():
        want = expected[post_id]
        assert row["action"] == want["action"], post_id
        wm = next(s for s in want["signals"] if s["plugin"] == "watermark")
        for key in ("num_tokens_scored", "num_green_tokens", "z_score", "p_value", "watermarked"):
            assert row["watermark"][key] == pytest.approx(wm[key]), (post_id, key)
        assert row["signals"] == len(want["signals"])

    # The same posts again: the workers see them (redelivered counter), nothing changes in PostgreSQL.
    pipeline.produce(mixed_posts)
    wait_until(
        lambda: metric_value(pipeline.worker_port, "moderation_posts_redelivered_total") >= n,
        60,
        "the redelivered posts to be processed",
    )
    assert stored(pipeline) == first


BAD_MESSAGES: list[tuple[bytes, str]] = [
    (b"not json at all", "invalid_json"),
    (b"\xff\xfe\x00garbage", "invalid_utf8"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'{"id": "a", "tenant": "acme", "author": "u", "created_at": "2026-11-23T10:00:00Z"}', "missing_field"),
    (b'{"id": 7, "tenant": "acme", "author": "u", "text": "x", "created_at": "2026-11-23T10:00:00Z"}', "wrong_type"),
    (b'{"id": "b", "tenant": "acme", "author": "u", "text": "x", "created_at": "yesterday"}', "wrong_type"),
    (
        json.dumps(
            {"id": "c", "tenant": "acme", "author": "u", "text": "y" * 100_001, "created_at": "2026-11-23T10:00:00Z"}
        ).encode(),
        "text_too_long",
    ),
]


def read_topic(lp: LocalPipeline, topic: str, expect: int, timeout: float = 30) -> list[Any]:
    assert lp.endpoints is not None
    consumer = make_consumer(lp.endpoints, None)
    try:
        partitions = [TopicPartition(topic, p) for p in range(lp.partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < expect and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=200).values():
                got.extend(messages)
        return got
    finally:
        consumer.close()


def test_bad_messages_are_dead_lettered_with_reason_and_position(
    pipeline: LocalPipeline, mixed_posts: list[dict[str, Any]]
) -> None:
    good = mixed_posts[:20]
    pipeline.produce([raw for raw, _ in BAD_MESSAGES])
    pipeline.produce(good)
    pipeline.wait_for(len(good))

    letters = read_topic(pipeline, pipeline.settings.pipeline.dead_letter_topic, len(BAD_MESSAGES))
    assert len(letters) == len(BAD_MESSAGES)
    by_hash = {json.loads(m.value)["raw_sha256"]: json.loads(m.value) for m in letters}
    for raw, reason in BAD_MESSAGES:
        letter = by_hash[hashlib.sha256(raw).hexdigest()]
        kept = base64.b64decode(letter["raw_base64"])
        # Small messages are kept exactly; a large one as a 64 KiB prefix, with its length and hash.
        assert kept == raw if not letter["raw_truncated"] else (raw.startswith(kept) and len(kept) == 65_536)
        assert letter["raw_length"] == len(raw)
        assert len(m_value_sizes := [len(m.value) for m in letters]) and max(m_value_sizes) < 1_048_576
        assert letter["reason"] == reason
        assert letter["detail"]
        assert letter["source"]["topic"] == pipeline.settings.pipeline.input_topic
        assert 0 <= letter["source"]["partition"] < pipeline.partitions
        assert letter["source"]["offset"] >= 0
    assert pipeline.count_verdicts() == len(good)
    wait_until(
        lambda: metric_value(pipeline.consumer_port, "moderation_dead_letters_total") == len(BAD_MESSAGES),
        10,
        "the dead-letter counter",
    )
    assert metric_value(pipeline.consumer_port, "moderation_dead_letters_total", {"reason": "invalid_utf8"}) == 1


def assert_exactly_once(lp: LocalPipeline, posts: list[dict[str, Any]]) -> None:
    rows = stored(lp)
    assert sorted(rows) == sorted(p["id"] for p in posts)
    assert lp.count_verdicts() == len(posts)
    # Signals of a verdict written twice would show up as extra rows.
    assert {r["signals"] for r in rows.values()} == {2}  # watermark + spam: one signal each


def test_worker_killed_mid_batch_loses_and_duplicates_nothing(
    pipeline: LocalPipeline, many_posts: list[dict[str, Any]]
) -> None:
    pipeline.produce(many_posts)
    wait_until(lambda: pipeline.count_verdicts() > 0, 60, "the first verdicts")
    children = pipeline.worker_children()
    assert children, "the worker has a pool process"
    done_before = pipeline.count_verdicts()
    for pid in children:
        subprocess.run(["kill", "-KILL", str(pid)], check=True)
    assert done_before < len(many_posts), "the kill came after the work was done; the test proved nothing"
    pipeline.wait_for(len(many_posts), timeout=180)
    assert_exactly_once(pipeline, many_posts)
    assert "signal 9" in (pipeline.workdir / "worker.log").read_text(errors="replace")


def pg_cluster() -> list[str] | None:
    versions = sorted(Path("/etc/postgresql").glob("*/main")) if Path("/etc/postgresql").exists() else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        return None
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].parent.name, "main"]


def committed_offsets(lp: LocalPipeline) -> dict[int, int]:
    assert lp.endpoints is not None
    consumer = make_consumer(lp.endpoints, lp.settings.pipeline.group_id)
    try:
        topic = lp.settings.pipeline.input_topic
        out = {}
        for p in range(lp.partitions):
            offset = consumer.committed(TopicPartition(topic, p))
            out[p] = offset if offset is not None else 0
        return out
    finally:
        consumer.close()


@pytest.mark.skipif(pg_cluster() is None, reason="needs the local PostgreSQL cluster and pg_ctlcluster to stop it")
def test_postgres_outage_pauses_then_resumes_without_committing_past_what_was_stored(
    pipeline: LocalPipeline, many_posts: list[dict[str, Any]]
) -> None:
    cluster = pg_cluster()
    assert cluster is not None
    pipeline.produce(many_posts)
    wait_until(lambda: pipeline.count_verdicts() > 0, 60, "the first verdicts")
    outage_started = time.time()
    subprocess.run([*cluster, "stop", "-m", "fast"], check=True)
    try:
        time.sleep(8)  # workers fail and retry with backoff; the consumer must not commit what is not stored
        committed_during_outage = committed_offsets(pipeline)
    finally:
        subprocess.run([*cluster, "start"], check=True)
    pipeline.wait_for(len(many_posts), timeout=240)
    assert_exactly_once(pipeline, many_posts)
    rows = stored(pipeline)
    for row in rows.values():
        if row["source_offset"] < committed_during_outage[row["source_partition"]]:
            # Committed before or during the outage, so it must have been stored before the outage began.
            assert row["decided_at"].timestamp() <= outage_started + 1, row
    assert sum(committed_during_outage.values()) < len(many_posts)
    assert metric_value(pipeline.worker_port, "moderation_task_retries_total") > 0


def test_sigterm_to_a_busy_consumer_then_restart_gives_every_post_one_verdict(
    pipeline: LocalPipeline, many_posts: list[dict[str, Any]]
) -> None:
    pipeline.produce(many_posts)
    wait_until(lambda: pipeline.count_verdicts() > 0, 60, "the first verdicts")
    code = pipeline.stop_consumer(signal.SIGTERM)
    assert code == 0, pipeline.tail("consumer")
    assert pipeline.count_verdicts() < len(many_posts), "the consumer was not busy when stopped"
    assert "stopped: consumed" in pipeline.tail("consumer")
    pipeline.start_consumer()
    pipeline.wait_for(len(many_posts), timeout=180)
    time.sleep(2)  # anything delivered twice after the restart has had time to land
    assert_exactly_once(pipeline, many_posts)
