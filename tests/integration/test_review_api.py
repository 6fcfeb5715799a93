"""The review API against a real PostgreSQL: anonymous access refused route by route, tenant isolation
route by route, roles, leases, decisions as events, bulk decisions, CSV export, CSRF, and no secrets out."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from moderation.config import load_settings
from moderation.engine import Engine as ModerationEngine
from moderation.posts import Post
from moderation.review.app import create_app
from moderation.review.settings import ReviewSettings
from moderation.storage.writes import store_batch
from moderation.testing.synthetic import watermarked_post
from tests.review_data import PASSWORD, review_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[Engine, dict[str, str]]]:
    with review_database() as (db, tokens):
        yield db, tokens


@pytest.fixture
def client(seeded: tuple[Engine, dict[str, str]]) -> TestClient:
    return TestClient(create_app(seeded[0], ReviewSettings(lease_seconds=2)))


def as_user(client: TestClient, tokens: dict[str, str], name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


def concrete(path: str, tenant: str = "acme", post_id: str = "wm0") -> str:
    return path.replace("{tenant}", tenant).replace("{post_id:path}", post_id).replace("{post_id}", post_id)


OPEN = {"/health", "/metrics", "/login", "/api/login"}


def test_every_route_but_login_health_and_metrics_refuses_anonymous_access(client: TestClient) -> None:
    checked = 0
    for route in client.app.routes:  # type: ignore[attr-defined]
        path, methods = getattr(route, "path", None), getattr(route, "methods", None) or set()
        if path is None or path in OPEN:
            continue
        for method in methods - {"HEAD"}:
            response = client.request(method, concrete(path), follow_redirects=False)
            if path.startswith("/api/") or path == "/openapi.json":
                assert response.status_code == 401, (method, path)
            else:
                assert response.status_code == 303 and response.headers["location"] == "/login", (method, path)
            checked += 1
    assert checked >= 15
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/metrics").status_code == 200


def test_a_user_of_one_tenant_can_never_reach_another_tenants_posts(
    client: TestClient, seeded: tuple[Engine, dict[str, str]]
) -> None:
    h = as_user(client, seeded[1], "bob")  # globex only
    attempts = [
        ("GET", "/api/posts/acme/wm0", None),
        ("POST", "/api/posts/acme/wm0/claim", None),
        ("POST", "/api/posts/acme/wm0/release", None),
        ("POST", "/api/posts/acme/wm0/decision", {"decision": "overturn", "reason": "x"}),
        (
            "POST",
            "/api/decisions/bulk",
            {"tenant": "acme", "ids": ["wm0"], "decision": "overturn", "reason": "x", "dry_run": False},
        ),
        ("GET", "/api/queue?tenant=acme", None),
        ("GET", "/api/decisions.csv?tenant=acme", None),
        ("GET", "/posts/acme/wm0", None),
        ("POST", "/posts/acme/wm0/claim", None),
        ("POST", "/posts/acme/wm0/decide", None),
    ]
    for method, path, body in attempts:
        if path.endswith("/decide"):
            response = client.post(path, headers=h, data={"decision": "overturn", "reason": "x"})
        else:
            response = client.request(method, path, headers=h, json=body)
        assert response.status_code == 404, (method, path, response.text)
    bulk_form = client.post(
        "/bulk", headers=h, data={"tenant": "acme", "ids": ["wm0"], "decision": "overturn", "reason": "x"}
    )
    assert bulk_form.status_code == 404
    own = client.get("/api/queue", headers=h).json()
    assert own and {item["tenant"] for item in own} == {"globex"}
    assert all(
        row["tenant"] == "globex"
        for row in csv.DictReader(io.StringIO(client.get("/api/decisions.csv", headers=h).text))
    )
    # Nothing about acme changed.
    alice = as_user(client, seeded[1], "alice")
    assert client.get("/api/posts/acme/wm0", headers=alice).json()["review_state"] == "pending"


def test_queue_orders_filters_and_explains(client: TestClient, seeded: tuple[Engine, dict[str, str]]) -> None:
    h = as_user(client, seeded[1], "vic")
    queue = client.get("/api/queue", headers=h).json()
    assert {i["id"] for i in queue} >= {"wm1", "wm2", "wm3"} and all(i["tenant"] == "acme" for i in queue)
    assert client.get("/api/queue?plugin=spam", headers=h).json() == []
    assert client.get("/api/queue?min_score=0.99&max_score=1", headers=h).json() == []  # review scores are 0.6
    assert len(client.get("/api/queue?author=writer&plugin=watermark", headers=h).json()) >= 3
    post = client.get("/api/posts/acme/wm1", headers=as_user(client, seeded[1], "alice")).json()
    wm = next(s for s in post["signals"] if s["plugin"] == "watermark")
    assert wm["evidence"]["tokens"] and "green list" in wm["explanation"]  # per-token evidence: deciders only
    assert {p["id"] for p in post["author_posts"]} >= {"wm2", "wm3"}
    assert "15485863" not in client.get("/api/posts/acme/wm1", headers=h).text  # the hashing key never leaves
    # Times are ISO 8601 as documented; a bare number (pydantic would read a Unix time) is refused.
    assert client.get("/api/queue?until=2099-01-01T00:00:00Z", headers=h).status_code == 200
    # An offset Python accepts but PostgreSQL does not (beyond 15:59) is converted, not passed through.
    assert client.get("/api/queue?since=2000-01-01T00:00:00%2B16:00", headers=h).status_code == 200
    for bad in ("-1486", "1700000000", "12.5"):
        assert client.get(f"/api/queue?until={bad}", headers=h).status_code == 422, bad


def test_roles_leases_and_decisions(client: TestClient, seeded: tuple[Engine, dict[str, str]]) -> None:
    tokens = seeded[1]
    alice, carol, vic, ada = (as_user(client, tokens, n) for n in ("alice", "carol", "vic", "ada"))
    assert client.post("/api/posts/acme/wm1/claim", headers=vic).status_code == 403  # viewers only look
    assert client.post("/api/posts/acme/wm1/claim", headers=alice).json()["claimed_by"] == "alice"
    assert client.post("/api/posts/acme/wm1/claim", headers=carol).status_code == 409
    assert (
        client.post(
            "/api/posts/acme/wm1/decision", headers=carol, json={"decision": "overturn", "reason": "no"}
        ).status_code
        == 409
    )
    missing_reason = client.post(
        "/api/posts/acme/wm1/decision", headers=alice, json={"decision": "confirm", "reason": ""}
    )
    assert missing_reason.status_code == 422
    decided = client.post(
        "/api/posts/acme/wm1/decision",
        headers=alice,
        json={"decision": "confirm", "action": "quarantine", "reason": "bot text"},
    ).json()
    assert (decided["review_state"], decided["effective_action"], decided["claimed_by"]) == (
        "decided",
        "quarantine",
        None,
    )
    assert "wm1" not in {i["id"] for i in client.get("/api/queue", headers=alice).json()}

    # Leases expire: carol's claim on wm2 lapses and alice can take it.
    assert client.post("/api/posts/acme/wm2/claim", headers=carol).status_code == 200
    time.sleep(2.2)
    assert client.post("/api/posts/acme/wm2/claim", headers=alice).status_code == 200
    # Escalated posts come first and only an admin decides them.
    client.post("/api/posts/acme/wm2/decision", headers=alice, json={"decision": "escalate", "reason": "unsure"})
    assert client.get("/api/queue", headers=alice).json()[0]["id"] == "wm2"
    assert (
        client.post(
            "/api/posts/acme/wm2/decision", headers=alice, json={"decision": "overturn", "reason": "x"}
        ).status_code
        == 403
    )
    final = client.post(
        "/api/posts/acme/wm2/decision", headers=ada, json={"decision": "overturn", "reason": "quoted text"}
    )
    assert final.json()["effective_action"] == "allow"
    history = client.get("/api/posts/acme/wm2", headers=vic).json()["events"]
    assert [e["kind"] for e in history] == ["claimed", "claimed", "decided", "decided"]
    assert [e["username"] for e in history] == ["carol", "alice", "alice", "ada"]
    assert [e["decision"] for e in history if e["decision"]] == ["escalate", "overturn"]


def test_a_decision_outranks_a_later_delivery_of_the_same_post(
    client: TestClient, seeded: tuple[Engine, dict[str, str]]
) -> None:
    db, tokens = seeded
    bob = as_user(client, tokens, "bob")
    client.post("/api/posts/globex/wm3/decision", headers=bob, json={"decision": "overturn", "reason": "satire"})
    settings = load_settings()
    again = Post(
        id="wm3", text=watermarked_post(120, settings.watermark.schemes[0], seed=53), tenant="globex", author="writer"
    )
    with db.begin() as conn:
        assert not store_batch(conn, [again], ModerationEngine(settings).moderate([again])).inserted
    post = client.get("/api/posts/globex/wm3", headers=bob).json()
    assert (post["action"], post["effective_action"], post["review_state"]) == ("review", "allow", "decided")


def test_bulk_decisions_show_the_count_first_and_export_lists_them(
    client: TestClient, seeded: tuple[Engine, dict[str, str]]
) -> None:
    bob = as_user(client, seeded[1], "bob")
    body: dict[str, Any] = {
        "tenant": "globex",
        "ids": ["wm0", "wm1", "wm2", "h0", "nope"],
        "decision": "confirm",
        "reason": "campaign",
    }
    preview = client.post("/api/decisions/bulk", headers=bob, json=body).json()
    assert (preview["count"], preview["applied"]) == (3, False)
    assert set(preview["skipped"]) == {"h0", "nope"}
    assert client.get("/api/posts/globex/wm0", headers=bob).json()["review_state"] == "pending"
    done = client.post("/api/decisions/bulk", headers=bob, json={**body, "dry_run": False}).json()
    assert (done["count"], done["applied"]) == (3, True)
    rows = list(csv.DictReader(io.StringIO(client.get("/api/decisions.csv?tenant=globex", headers=bob).text)))
    assert {r["post_id"] for r in rows if r["reason"] == "campaign"} == {"wm0", "wm1", "wm2"}
    assert all(r["moderator"] == "bob" and r["action"] == "block" for r in rows if r["reason"] == "campaign")


def test_browser_sessions_need_the_csrf_token(client: TestClient) -> None:
    bad = client.post("/api/login", json={"username": "carol", "password": "wrong password!"})
    assert bad.status_code == 401
    login = client.post("/api/login", json={"username": "carol", "password": PASSWORD})
    csrf = login.json()["csrf_token"]
    assert client.get("/api/me").json()["username"] == "carol"  # the cookie works for reads
    assert client.post("/api/posts/acme/wm3/claim").status_code == 403  # but not for writes without the token
    assert client.post("/api/posts/acme/wm3/claim", headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post("/api/posts/acme/wm3/claim", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert PASSWORD not in login.text and "mod_" not in login.text
    assert client.post("/api/logout", headers={"X-CSRF-Token": csrf}).json() == {"ok": True}
    assert client.get("/api/me").status_code == 401


def test_openapi_document_describes_the_api(client: TestClient, seeded: tuple[Engine, dict[str, str]]) -> None:
    doc = client.get("/openapi.json", headers=as_user(client, seeded[1], "vic")).json()
    assert {"/api/queue", "/api/posts/{tenant}/{post_id}/decision", "/api/decisions/bulk", "/api/decisions.csv"} <= set(
        doc["paths"]
    )


def test_verdicts_command_filters_by_review_state() -> None:
    """On its own database, with its own decision, so that it holds whatever else ran before it."""
    with review_database() as (db, tokens):
        client = TestClient(create_app(db, ReviewSettings(lease_seconds=2)))
        decided = client.post(
            "/api/posts/globex/wm3/decision",
            headers=as_user(client, tokens, "bob"),
            json={"decision": "overturn", "reason": "satire"},
        )
        assert decided.status_code == 200, decided.text
        check_verdicts_command(db)


def check_verdicts_command(db: Engine) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "MODERATION_DATABASE_URL": db.url.render_as_string(hide_password=False)}

    def verdicts(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "moderation.cli", "verdicts", *args],
            env=env,
            capture_output=True,
            check=True,
            text=True,
        ).stdout

    decided = [
        json.loads(line)
        for line in verdicts("--tenant", "globex", "--review-state", "decided", "--format", "jsonl").splitlines()
    ]
    by_id = {d["id"]: d for d in decided}
    assert by_id["wm3"]["effective_action"] == "allow" and by_id["wm3"]["action"] == "review"
    assert {d["tenant"] for d in decided} == {"globex"}
    pending = verdicts("--tenant", "acme", "--review-state", "pending", "--format", "jsonl").splitlines()
    assert pending and all(json.loads(line)["review_state"] == "pending" for line in pending)
    table = verdicts("--tenant", "globex", "--action", "review")
    assert "decided:allow" in table and table.splitlines()[0].split()[:3] == ["decided_at", "tenant", "id"]
