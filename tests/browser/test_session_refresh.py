"""The demo page refreshes its session in place (Chromium driven by Playwright).

The test configures a 6 s session (``DEMO_SESSION_MAX_AGE``); the hub closes a
connection when its credential expires. Halfway through each lifetime the page
renews its cookie (``POST /account/renew``) and hands it to the hub for its
connection (``POST /hubs/chat/refresh?id=...``), and says so ("Session refreshed
at ..."). Four refreshes take the page through two lifetimes of its first cookie on
one connection: same connection id, one negotiate, no notice of a lost
connection, and the chat still works. On one process, and on two workers on one
port, where the renewals, the refreshes and the polls land on either (the cookie's
session is checked in Redis, a refresh is forwarded to the worker holding the
connection).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Request, expect

from tests.demo_process import WORKERS, deployed_demo

from .test_chat_browser import RECORD_NOTICES, expect_messages, send, sign_in

pytestmark = pytest.mark.e2e

SESSION_SECONDS = 6
REFRESHED = re.compile(r"^Session refreshed at \S+")


@pytest.mark.parametrize("transport", [None, "LongPolling"], ids=["default", "LongPolling"])
@pytest.mark.parametrize("deployment", ["hypercorn", WORKERS])
def test_the_page_refreshes_its_session_in_place(
    tmp_path: Path, browser: Browser, transport: str | None, deployment: str
) -> None:
    env = {"DEMO_SESSION_MAX_AGE": str(SESSION_SECONDS)}
    with deployed_demo(tmp_path / "demo.log", deployment, env=env) as demo:
        context = browser.new_context()
        context.set_default_timeout(10_000)
        paths: list[str] = []

        def finished(request: Request) -> None:
            paths.append(urlsplit(request.url).path)

        context.on("requestfinished", finished)
        websockets: list[str] = []
        try:
            page = context.new_page()
            page.on("websocket", lambda socket: websockets.append(socket.url))
            query = f"?transport={transport}" if transport else ""
            sign_in(page, f"{demo.base_url}/{query}", "alice")
            expect(page.get_by_test_id("connection-state")).to_have_text("Connected")
            expect(page.get_by_test_id("whoami-name")).to_have_text("alice")
            first_id = page.get_by_test_id("whoami-connectionid").text_content()
            page.evaluate(RECORD_NOTICES)
            session = page.get_by_test_id("session-refreshed")

            # Four refreshes, one every half lifetime: the first cookie has long expired.
            expect(session).to_have_attribute(
                "data-refreshes", "4", timeout=4 * SESSION_SECONDS * 1000
            )
            expect(session).to_have_text(REFRESHED)
            expect(page.get_by_test_id("connection-state")).to_have_text("Connected")
            expect(page.get_by_test_id("whoami-connectionid")).to_have_text(first_id or "")
            assert page.evaluate("window.seenNotices") == [], "no reconnect was shown"
            signed_in = paths[paths.index("/account/login") :]
            assert signed_in.count("/hubs/chat/negotiate") == 1, paths
            assert paths.count("/hubs/chat/refresh") >= 4, paths
            assert paths.count("/account/renew") >= 4, str(paths)
            if transport is None:
                assert len(websockets) == 1, websockets
            send(page, "still the same connection")
            expect_messages(page, [("alice", "still the same connection")])
        finally:
            context.close()
