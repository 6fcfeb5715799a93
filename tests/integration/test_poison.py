"""Poison isolation end to end: a post that kills the worker process running it (a plugin's native code
crashing, an out-of-memory kill) arrives among ordinary posts. Real consumer, worker, RabbitMQ, Redis and
PostgreSQL; the crash is a real SIGKILL of the Celery pool process, from a third-party plugin installed the
way a platform installs one (tests/unit/plugins/test_third_party.py).

workers/isolation.py promises: the batch holding the poison post is redelivered by the broker and halved on
each redelivery (attempts counted in Redis) until the post is alone, about log2(batch size) + 1 crashes;
that post is dead-lettered once, saying its worker died; every other post gets exactly one verdict; the
consumer never crashes and never needs its own (minutes long) resend timeout. Counts before and after.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from moderation.endpoints import Endpoints
from moderation.testing.pipeline import LocalPipeline
from moderation.testing.synthetic import human_posts
from tests.integration.conftest import make_post, metric_value, pipeline_config
from tests.integration.test_pipeline import committed_offsets, read_topic, stored, wait_until
from tests.integration.test_pipeline_faults import no_tracebacks
from tests.unit.plugins.test_third_party import _write_package, install_packages
from workers.consumer import resend_after

pytestmark = pytest.mark.integration

# In no ordinary post: the plugin below crashes its process on any batch that holds it, or hangs it.
MARKER = "zz-poison-7f3a9c"
HANG_MARKER = "zz-hang-41be02"
BATCH_MAX_POSTS = 32
ORDINARY_POSTS = 150

KILLER_SOURCE = f'''
"""A third party's plugin with fatal bugs: one kind of post kills the process that evaluates it, the way a
crash in native code or the kernel's out-of-memory killer would (no exception, no cleanup); another hangs it
where Celery's soft time limit cannot interrupt it (its signal blocked, as in a long call into native code)."""
import os
import signal
import time
from typing import ClassVar

from moderation.plugins import NoDetails, Plugin

MARKER = {MARKER!r}
HANG_MARKER = {HANG_MARKER!r}


class KillerPlugin(Plugin):
    name: ClassVar[str] = "killer"
    version: ClassVar[str] = "1.0"
    Details = NoDetails
    labels: ClassVar[dict[str, bool]] = {{"fine": False}}

    def evaluate(self, posts):
        if any(MARKER in post.text for post in posts):
            os.kill(os.getpid(), signal.SIGKILL)
        if any(HANG_MARKER in post.text for post in posts):
            signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})  # Celery's soft time limit signal
            time.sleep(3600)
        return [[self.signal(score=0.0, label="fine", details=NoDetails())] for _ in posts]
'''


@pytest.fixture(scope="module")
def killer_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin package, built and installed by pip into a folder of its own, outside the project."""
    root = tmp_path_factory.mktemp("poison_plugin")
    package = _write_package(
        root, "killer-plugin", "killer_plugin", KILLER_SOURCE, {"killer": "killer_plugin:KillerPlugin"}
    )
    return install_packages([package], root / "site")


@pytest.fixture
def poison_pipeline(tmp_path: Path, killer_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalPipeline]:
    on_pythonpath(killer_site, monkeypatch)
    with LocalPipeline(tmp_path, killer_config(batch_max_posts=BATCH_MAX_POSTS)) as lp:
        yield lp


def on_pythonpath(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LocalPipeline's processes inherit this process's environment (LocalPipeline.env): the plugin's folder on
    PYTHONPATH is how its entry point is found, as on a platform that installed it beside the project."""
    paths = [str(site), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))


def the_one_dead_letter(lp: LocalPipeline, post: dict[str, Any]) -> dict[str, Any]:
    """The dead-letter topic holds exactly one message, for this post, saying its worker was lost."""
    letters = dead_letters(lp, expect=2, timeout=3)
    assert len(letters) == 1, letters
    assert letters[0]["reason"] == "worker_lost"
    assert json.loads(letters[0]["raw"])["id"] == post["id"]
    return letters[0]


def run_to_the_end(lp: LocalPipeline, stream: list[dict[str, Any]], ordinary: int) -> float:
    """Produce the stream; wait for the ordinary posts' verdicts, a dead letter and every offset committed.
    Returns the seconds that took."""
    started = time.monotonic()
    lp.produce(stream)
    # wait_for raises at once if the consumer or the worker's main process exits.
    lp.wait_for(ordinary, timeout=150)
    assert dead_letters(lp, expect=1, timeout=60), "the bad post was not dead-lettered within 60 s"
    # Every offset committed: the consumer saw every batch durable, the poisoned one included.
    wait_until(lambda: sum(committed_offsets(lp).values()) == len(stream), 30, "every offset to be committed")
    elapsed = time.monotonic() - started
    time.sleep(2)  # a second dead letter or a late duplicate verdict would have landed by now
    return elapsed


def killer_config(**pipeline: Any) -> str:
    config = pipeline_config(**pipeline)
    return config + '\n[plugins.tenants.acme]\nenabled = ["watermark", "spam", "killer"]\n'


def dead_letters(lp: LocalPipeline, expect: int, timeout: float) -> list[dict[str, Any]]:
    messages = read_topic(lp, lp.settings.pipeline.dead_letter_topic, expect, timeout)
    return [json.loads(m.value) for m in messages]


# Celery's main process logs each pool process it saw die: "[<time>: ERROR/MainProcess] Process
# 'ForkPoolWorker-1' pid:9014 exited with 'signal 9 (SIGKILL)'"; workers/isolation.py logs the end.
CRASH = re.compile(r"^\[([\d-]+ [\d:,]+): ERROR/MainProcess\] Process '[^']+' pid:\d+ exited with 'signal 9", re.M)
ISOLATED = re.compile(r"^\[([\d-]+ [\d:,]+): ERROR/[^\]]+\] batch \S+: isolated a poison post", re.M)


def log_times(lp: LocalPipeline, pattern: re.Pattern[str]) -> list[datetime]:
    log = (lp.workdir / "worker.log").read_text(errors="replace")
    return [datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f") for t in pattern.findall(log)]


def receipts(lp: LocalPipeline) -> list[dict[str, Any]]:
    engine = lp.database()
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(text("SELECT * FROM batch_receipts")).mappings()]
    finally:
        engine.dispose()


def runs_counted(batch_ids: list[str]) -> dict[str, int]:
    """How many runs of each batch started, as workers/isolation.RedisAttempts counted them."""
    client = redis.Redis.from_url(Endpoints.from_env().redis_url)
    try:
        values = client.mget([f"moderation:attempts:{b}" for b in batch_ids])
        return {b: int(v or 0) for b, v in zip(batch_ids, values, strict=True)}
    finally:
        client.close()


def test_a_post_that_kills_its_worker_is_isolated_and_dead_lettered_once_the_rest_stored_once(
    poison_pipeline: LocalPipeline,
) -> None:
    lp = poison_pipeline
    texts = human_posts(ORDINARY_POSTS + 1, seed=17)
    ordinary = [make_post(i, t) for i, t in enumerate(texts[:ORDINARY_POSTS])]
    poison = make_post(ORDINARY_POSTS, f"{texts[-1]} {MARKER}")
    stream = [*ordinary[: ORDINARY_POSTS // 2], poison, *ordinary[ORDINARY_POSTS // 2 :]]

    assert lp.count_verdicts() == 0
    assert dead_letters(lp, expect=1, timeout=1) == []
    assert log_times(lp, CRASH) == []

    end_to_end_s = run_to_the_end(lp, stream, len(ordinary))

    # The poison post: dead-lettered exactly once, saying its worker died, with where it came from.
    letter = the_one_dead_letter(lp, poison)
    assert "worker process died" in letter["detail"]
    assert letter["source"]["topic"] == lp.settings.pipeline.input_topic
    assert 0 <= letter["source"]["partition"] < lp.partitions and letter["source"]["offset"] >= 0

    # Every other post: exactly one verdict, with all three plugins' signals (written once each); nothing lost.
    rows = stored(lp)
    assert sorted(rows) == sorted(p["id"] for p in ordinary)
    assert lp.count_verdicts() == len(ordinary)
    assert {r["signals"] for r in rows.values()} == {3}

    # Redeliveries: the poison's batch ran once per crash plus once more, halved down to one post, one
    # halving per crash after the first: about log2(batch size) + 1 crashes.
    receipted = receipts(lp)
    (poisoned,) = [r for r in receipted if r["dead_lettered"]]
    top = poisoned["batch_id"].split("/")[0]
    top_posts = next(r["posts"] for r in receipted if r["batch_id"] == top)
    halvings = poisoned["batch_id"].count("/")
    crashes, (isolated,) = log_times(lp, CRASH), log_times(lp, ISOLATED)
    assert crashes, "no pool process death in worker.log (has Celery's message changed?)"
    runs = runs_counted([r["batch_id"] for r in receipted if "/" not in r["batch_id"]])
    isolation_s = (isolated - crashes[0]).total_seconds()
    print(
        f"\npoison isolation: batch of {top_posts} posts, {len(crashes)} worker crashes, {runs[top] - 1} "
        f"redeliveries, {halvings} halvings ({poisoned['batch_id']}); {isolation_s:.1f} s from the first crash "
        f"to the post isolated; all {len(stream)} posts done {end_to_end_s:.1f} s after they were produced"
    )
    assert len(crashes) == halvings + 1
    # The dead letter tells the whole story: one death alone, after one in each larger batch that held it.
    assert "1 time(s) running it alone" in letter["detail"]
    assert f"the {halvings} larger batch(es)" in letter["detail"]
    assert runs[top] == len(crashes) + 1
    assert halvings == math.ceil(math.log2(top_posts)) or halvings == math.floor(math.log2(top_posts))
    assert all(n == 1 for b, n in runs.items() if b != top), runs  # no other batch ran twice
    assert metric_value(lp.worker_port, "moderation_errors_total", {"kind": "poison_worker_lost"}) == 1

    # Bounded: the broker's redelivery drove it, not the consumer's resend after a batch's time limit.
    assert end_to_end_s < resend_after(lp.settings)
    assert lp.consumer is not None and lp.consumer.poll() is None
    assert lp.worker is not None and lp.worker.poll() is None
    no_tracebacks(lp)


HANG_BATCH_POSTS = 16
# Soft limit 2 s (blocked by the hanging plugin), hard limit 4 s: each run of a batch holding the post is killed.
HANG_LIMITS = {"task_soft_time_limit_s": 2, "task_time_limit_s": 4}
HARD_LIMIT = re.compile(r"^\[([\d-]+ [\d:,]+): ERROR/MainProcess\] Hard time limit \(4s\) exceeded", re.M)


def test_a_post_that_hangs_past_the_hard_time_limit_is_isolated_by_the_brokers_requeue(
    tmp_path: Path, killer_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hang is killed at the hard time limit; the batch goes straight back to RabbitMQ (task_acks_on_timeout
    off) and is halved like a crash. Acknowledged instead, it would wait for the consumer's resend
    (`resend_after`, 30 s here and minutes by default) at every halving."""
    on_pythonpath(killer_site, monkeypatch)
    config = killer_config(batch_max_posts=HANG_BATCH_POSTS, **HANG_LIMITS)
    with LocalPipeline(tmp_path, config) as lp:
        texts = human_posts(41, seed=23)
        ordinary = [make_post(i, t) for i, t in enumerate(texts[:40])]
        hang = make_post(40, f"{texts[-1]} {HANG_MARKER}")
        stream = [*ordinary[:20], hang, *ordinary[20:]]
        assert lp.count_verdicts() == 0

        elapsed = run_to_the_end(lp, stream, len(ordinary))

        assert "killed at the time limit" in the_one_dead_letter(lp, hang)["detail"]
        assert sorted(stored(lp)) == sorted(p["id"] for p in ordinary)
        assert lp.count_verdicts() == len(ordinary)

        kills = log_times(lp, HARD_LIMIT)
        (isolated,) = [r for r in receipts(lp) if r["dead_lettered"]]
        halvings = isolated["batch_id"].count("/")
        print(
            f"\nhang isolation: {len(kills)} hard time-limit kills, {halvings} halvings ({isolated['batch_id']}); "
            f"all {len(stream)} posts done in {elapsed:.1f} s"
        )
        assert len(kills) == halvings + 1  # one kill per halving, plus the run alone
        # Every halving waited only for the kill and a redelivery, never for the consumer's resend.
        assert elapsed < (len(kills) + 1) * resend_after(lp.settings) / 2
        assert lp.consumer is not None and lp.consumer.poll() is None
        no_tracebacks(lp)
