"""The metric names are a public interface: code, docs/metrics.md, alert rules and dashboard must agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

from moderation import metrics

ROOT = Path(__file__).parents[2]
NAME = re.compile(r"\bmoderation_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def defined() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name  # counters are registered without their _total suffix
            names.add(name + "_total" if value._type == "counter" else name)
    return names


def referenced(text: str) -> set[str]:
    out = set()
    for name in NAME.findall(text):
        for suffix in SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in defined():
                name = name.removesuffix(suffix)
        out.add(name)
    return out


def test_every_metric_is_documented_and_follows_conventions() -> None:
    documented = set(re.findall(r"^\| `(moderation_[a-z_]+)`", (ROOT / "docs" / "metrics.md").read_text(), re.M))
    assert documented == defined()
    for name in defined():
        assert not name.endswith("_ms") and not name.endswith("_milliseconds"), "base units: seconds"


def test_alert_rules_and_dashboard_only_use_real_metrics() -> None:
    alerts_text = (ROOT / "deploy" / "alerts.yml").read_text()
    rules = yaml.safe_load(alerts_text)["groups"][0]["rules"]
    assert rules and all({"alert", "expr", "labels", "annotations"} <= set(r) for r in rules)
    assert all(r["labels"]["severity"] in {"page", "ticket"} for r in rules)
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert referenced(alerts_text) <= defined()
    assert referenced(exprs) <= defined()
    assert defined() - referenced(exprs) == set(), "every metric has a dashboard panel"


def test_deploy_files_parse() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    assert {"kafka", "postgres", "redis", "consumer", "worker", "migrate", "prometheus"} <= set(compose["services"])
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert {j["job_name"] for j in scrape["scrape_configs"]} == {
        "moderation-consumer",
        "moderation-worker",
        "moderation-lag",
    }
