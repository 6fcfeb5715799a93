"""The moderators' page in a real Chromium (Debian's, driven by Playwright): log in, open the queue, open a
flagged post, see the green tokens highlighted, decide, and see the queue change. A screenshot of the post
page is saved to artifacts/review-post.png."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from moderation.review.app import create_app
from tests.review_data import PASSWORD, review_database

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
    with review_database() as (db, _tokens):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = uvicorn.Config(create_app(db), host="127.0.0.1", port=port, log_level="warning")
        srv = uvicorn.Server(config)
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not srv.started:
            if time.monotonic() > deadline:
                raise RuntimeError("review server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
        srv.should_exit = True
        thread.join(timeout=10)


def test_moderator_reviews_a_flagged_post_in_the_browser(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.goto(f"{server}/")
        expect(page).to_have_url(f"{server}/login")
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
        browser.close()
