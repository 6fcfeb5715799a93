"""The moderators' page in a real Chromium (Debian's, driven by Playwright): log in, open the queue, open a
flagged post, see the green tokens highlighted, decide, and see the queue change. A screenshot of the post
page is saved to artifacts/review-post.png."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from moderation.review.app import create_app
from tests.review_data import ODD_IDS, PASSWORD, review_database, running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[2] / "artifacts"
# Headless flags that keep Chromium off the (closed) network and quiet on a server.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)"
    ),
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with review_database() as (db, _tokens), running_server(create_app(db)) as url:
        yield url


@pytest.fixture(scope="module")
def foreign_site(server: str) -> Iterator[str]:
    """Another origin (another port) whose page holds a form that posts to the review service's /login."""
    page = (
        f'<!doctype html><form method="post" action="{server}/login">'
        '<input name="username" value="alice"><input name="password" value="attacker password!">'
        '<button id="go">go</button></form>'
    ).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_moderator_reviews_a_flagged_post_in_the_browser(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        refused = csp_violations(page)
        first = page.goto(f"{server}/")
        expect(page).to_have_url(f"{server}/login")
        assert first is not None
        assert_security_headers(first.all_headers())
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "not the password")
        page.click("button[type=submit]")
        expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")

        rows = page.locator("#queue tbody tr")
        expect(rows.first).to_be_visible()
        before = rows.count()
        assert before >= 4
        assert page.locator("#queue tbody tr[data-post=h0]").count() == 0  # clean posts are not queued

        page.click("#queue a:text-is('wm1')")
        expect(page.locator("h1")).to_have_text("Post wm1")
        green = page.locator("#post-text .tok-green")
        assert green.count() > 20  # the green tokens are drawn on the text
        # ... and drawn green: the stylesheet loads under the CSP (no inline style is allowed).
        assert green.first.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(183, 240, 192)"
        expect(page.locator(".signal[data-plugin=watermark]")).to_contain_text("green list")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "review-post.png"), full_page=True)

        page.click("#claim")
        page.select_option("#decide select[name=decision]", "overturn")
        page.fill("#decide input[name=reason]", "quoted from a press release")
        page.click("#decide button[type=submit]")

        expect(page).to_have_url(f"{server}/")
        expect(rows).to_have_count(before - 1)
        assert page.locator("#queue tbody tr[data-post=wm1]").count() == 0
        page.goto(f"{server}/posts/acme/wm1")
        expect(page.locator("#review-state")).to_have_text("decided")
        expect(page.locator("#history")).to_contain_text("alice decided overturn → allow: quoted from a press release")

        # Post ids that break unescaped URLs: each link leads to its own post, whose claim form works.
        page.goto(f"{server}/?author=odd")
        for odd in ODD_IDS:
            page.goto(f"{server}/?author=odd")
            page.locator(f'#queue tr[data-post="{odd}"] a').click()
            expect(page.locator("h1")).to_have_text(f"Post {odd}")
            assert page.url == f"{server}/posts/acme/{quote(odd, safe='')}"
        page.click("#claim")
        expect(page.locator("#decide")).to_be_visible()
        assert refused == [], refused  # nothing on any page was blocked by the CSP
        browser.close()


def csp_violations(page: Any) -> list[str]:
    """Console messages in which Chromium reports something the Content-Security-Policy blocked."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    return seen


def assert_security_headers(headers: dict[str, str]) -> None:
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cache-control"] == "no-store"


def test_a_viewer_sees_the_span_but_not_the_green_tokens(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        refused = csp_violations(page)
        page.goto(f"{server}/login")
        page.fill("input[name=username]", "vic")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        response = page.goto(f"{server}/posts/acme/wm2")
        assert response is not None
        assert_security_headers(response.all_headers())
        expect(page.locator("h1")).to_have_text("Post wm2")
        assert page.locator("#post-text .tok-green").count() == 0
        assert page.locator("#post-text .passage").count() == 1  # the flagged span is still shown
        expect(page.locator("#evidence-note")).to_contain_text("moderators and admins only")
        expect(page.locator(".signal[data-plugin=watermark]")).to_be_visible()
        assert refused == []
        browser.close()


def test_a_login_form_on_another_site_cannot_log_the_browser_in(server: str, foreign_site: str) -> None:
    """Login CSRF in a real browser: Chromium marks the cross-site POST (Sec-Fetch-Site) and it is refused."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context()
        page = context.new_page()
        page.goto(foreign_site)
        with page.expect_navigation() as navigation:
            page.click("#go")
        response = navigation.value
        assert response is not None and response.status == 403
        assert not [c for c in context.cookies() if "moderation_session" in c["name"]]
        browser.close()
