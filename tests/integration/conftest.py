"""Integration tests: real PostgreSQL, Redis (Celery broker and results), the embedded Kafka-protocol
broker, and real `moderation worker` / `moderation consume` processes (see moderation/testing/pipeline.py)."""

from __future__ import annotations

import os
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moderation.config import default_config_path, load_settings
from moderation.testing.pipeline import LocalPipeline
from moderation.testing.synthetic import human_posts, watermarked_post

# Celery traffic of the tests goes to RabbitMQ (the default broker), each pipeline on a queue of its own
# that it deletes when it stops; results are not used; attempt counters go to a Redis database of their own.
os.environ.setdefault("MODERATION_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
os.environ.setdefault("MODERATION_CELERY_BACKEND", "redis://127.0.0.1:6379/15")
os.environ.setdefault("MODERATION_REDIS_URL", "redis://127.0.0.1:6379/14")

pytestmark = pytest.mark.integration


def pipeline_config(**pipeline: Any) -> str:
    values = {
        "batch_max_posts": 64,
        "batch_linger_ms": 50,
        "batch_timeout_s": 30,
        "drain_timeout_s": 30,
        "celery_queue": f"test-{uuid.uuid4().hex[:8]}",
        "group_id": f"test-{uuid.uuid4().hex[:8]}",
        **pipeline,
    }
    lines = [f"{k} = {v!r}".replace("'", '"') for k, v in values.items()]
    # Order-independent plugins only: posts reach the workers in partition-interleaved order, while `scan`
    # reads them in file order, and the stream-wide plugins (flood, rate) legitimately depend on order.
    base = (
        default_config_path()
        .read_text(encoding="utf-8")
        .replace('enabled = ["watermark", "spam", "flood", "rate"]', 'enabled = ["watermark", "spam"]')
    )
    return base + "\n[pipeline]\n" + "\n".join(lines) + "\n"


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[LocalPipeline]:
    with LocalPipeline(tmp_path, pipeline_config()) as lp:
        yield lp


def make_post(i: int, text: str, tenant: str = "acme") -> dict[str, Any]:
    return {
        "id": f"p{i}",
        "tenant": tenant,
        "author": f"user{i % 17}",
        "text": text,
        "created_at": "2026-11-23T10:00:00+00:00",
    }


@pytest.fixture(scope="session")
def mixed_posts() -> list[dict[str, Any]]:
    """240 posts: 40 watermarked (transformers' processor over a low-entropy LM), 200 human."""
    scheme = load_settings().watermark.schemes[0]
    texts = [watermarked_post(80, scheme, seed=1000 + i) for i in range(40)] + human_posts(200, seed=3)
    return [make_post(i, t) for i, t in enumerate(texts)]


@pytest.fixture(scope="session")
def many_posts() -> list[dict[str, Any]]:
    """3,000 human posts: enough work that a process can be interrupted in the middle of it."""
    return [make_post(i, t) for i, t in enumerate(human_posts(3000, seed=5))]


def metric_value(port: int, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of a metric's samples (matching `labels`) on a process's /metrics page."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in body.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric = head.split("{", 1)[0]
        if metric != name:
            continue
        if labels and not all(f'{k}="{v}"' in head for k, v in labels.items()):
            continue
        total += float(value)
    return total
