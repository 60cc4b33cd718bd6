"""The demo chat page in a real browser (Chromium driven by Playwright).

alice signs in in one browser context, bob in another with two tabs; the page says who may
do what; they chat (a message over 500 characters is refused with a message), alice sends
bob a direct message (by username; an unknown user is refused, and the stale refusal goes)
that reaches both his tabs, bob views alice's history by user id and is refused BanUser,
alice bans bob by user id and his tabs say that alice banned him. Run once with the client's default transport
(WebSockets) and once with ``?transport=LongPolling``, where every long-polling request
must carry the HttpOnly session cookie (the page never touches it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Route,
    WebSocketRoute,
    expect,
)

from tests.demo_process import DemoServer

pytestmark = pytest.mark.e2e

COOKIE = "triohub_demo"
BAN_DENIED = "Failed to invoke 'BanUser' because user is unauthorized"
CONNECTION_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


@dataclass
class Watched:
    """What a browser context did on the wire and in its pages' consoles."""

    hub_requests: list[Request] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("websocket", lambda socket: self.websockets.append(socket.url))
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("console", self._console)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.csp_violations.append(message.text)

    def request_finished(self, request: Request) -> None:
        if urlsplit(request.url).path.startswith("/hubs/chat"):
            self.hub_requests.append(request)


@pytest.fixture
def contexts(browser: Browser) -> Iterator[dict[str, tuple[BrowserContext, Watched]]]:
    opened: dict[str, tuple[BrowserContext, Watched]] = {}
    for user in ("alice", "bob"):
        context = browser.new_context(viewport={"width": 1200, "height": 860})
        context.set_default_timeout(10_000)
        watched = Watched()
        context.on("requestfinished", watched.request_finished)
        opened[user] = (context, watched)
    try:
        yield opened
    finally:
        for context, _ in opened.values():
            context.close()


def sign_in(page: Page, url: str, username: str) -> None:
    # Chromium runs a background tab's timers and frames slowly: act in the front tab.
    page.bring_to_front()
    page.goto(url)
    # Nobody is signed in: the hub answered 401 and the page shows the form.
    expect(page.get_by_test_id("connection-state")).to_have_text("Signed out")
    expect(page.get_by_test_id("chat")).to_be_hidden()
    page.get_by_test_id("signin-username").fill(username)
    page.get_by_test_id("signin-password").fill(f"{username}-password")
    page.get_by_test_id("signin-submit").click()


def expect_connected(page: Page, user: str, email: str, roles: str, transport: str) -> None:
    expect(page.get_by_test_id("connection-state")).to_have_text("Connected")
    expect(page.get_by_test_id("signin")).to_be_hidden()
    expect(page.get_by_test_id("whoami-name")).to_have_text(user)
    expect(page.get_by_test_id("whoami-userid")).to_have_text(email)
    expect(page.get_by_test_id("whoami-roles")).to_have_text(roles)
    expect(page.get_by_test_id("whoami-connectionid")).to_have_text(CONNECTION_ID)
    expect(page.get_by_test_id("transport")).to_have_text(transport)


def send(page: Page, message: str) -> None:
    page.bring_to_front()
    page.get_by_test_id("send-input").fill(message)
    page.get_by_test_id("send-submit").click()


def expect_messages(page: Page, messages: list[tuple[str, str]]) -> None:
    expect(page.get_by_test_id("message-from")).to_have_text([name for name, _ in messages])
    expect(page.get_by_test_id("message-text")).to_have_text([text for _, text in messages])


def submit(page: Page, form: str, **fields: str) -> None:
    page.bring_to_front()
    for name, value in fields.items():
        page.get_by_test_id(f"{form}-{name}").fill(value)
    page.get_by_test_id(f"{form}-submit").click()


@pytest.mark.parametrize("transport", [None, "LongPolling"], ids=["default", "LongPolling"])
def test_chat_page(
    demo: DemoServer,
    contexts: dict[str, tuple[BrowserContext, Watched]],
    artifacts: Path,
    transport: str | None,
) -> None:
    url = demo.base_url + (f"/?transport={transport}" if transport else "/")
    in_use = transport or "WebSockets"  # Chromium's first choice
    alice_context, alice_watched = contexts["alice"]
    bob_context, bob_watched = contexts["bob"]

    alice = alice_watched.watch(alice_context.new_page())
    sign_in(alice, url, "alice")
    expect_connected(alice, "alice", "alice@contoso.example", "Administrators", in_use)
    # The sign-in redirect goes to "/": the page puts the chosen transport back.
    expect(alice).to_have_url(url)

    bob_tabs = [bob_watched.watch(bob_context.new_page()) for _ in range(2)]
    sign_in(bob_tabs[0], url, "bob")
    bob_tabs[1].goto(url)  # the same browser context: already signed in by the cookie
    for tab in bob_tabs:
        expect_connected(tab, "bob", "bob@contoso.example", "(none)", in_use)
    bob_ids = [tab.get_by_test_id("whoami-connectionid").text_content() for tab in bob_tabs]
    assert bob_ids[0] != bob_ids[1], "each tab has its own connection"

    # The page says who may do what, and that users are named either way.
    rules = alice.get_by_test_id("rules")
    for words in ("ChatUser", "DomainRestricted", "Administrators", "500 characters"):
        expect(rules).to_contain_text(words)
    expect(rules).to_contain_text("username (bob) or user id (bob@contoso.example)")

    # Everybody sees everybody's messages, each exactly once.
    send(alice, "Hello from Alice")
    for page in (alice, *bob_tabs):
        expect_messages(page, [("alice", "Hello from Alice")])
    send(bob_tabs[0], "Hi Alice, <b>Bob</b> here")  # text, never markup
    for page in (alice, *bob_tabs):
        expect_messages(page, [("alice", "Hello from Alice"), ("bob", "Hi Alice, <b>Bob</b> here")])

    # Too long: refused in the hub's words, and nobody receives it.
    send(alice, "x" * 501)
    too_long = alice.get_by_test_id("send-result")
    expect(too_long).to_have_text("Messages may have at most 500 characters; this one has 501.")
    expect(too_long).to_have_attribute("data-outcome", "error")
    send(alice, "y" * 500)  # at the limit: sent, and the stale refusal is gone
    expect(alice.get_by_test_id("message-text").last).to_have_text("y" * 500)
    expect(too_long).to_be_hidden()
    expect_messages(
        bob_tabs[0],
        [("alice", "Hello from Alice"), ("bob", "Hi Alice, <b>Bob</b> here"), ("alice", "y" * 500)],
    )

    # An unknown user is an expected refusal, said as the hub says it.
    submit(alice, "dm", to="zed", input="Anyone?")
    dm_status = alice.get_by_test_id("dm-status")
    expect(dm_status).to_have_text("Unknown user 'zed'.")
    expect(dm_status).to_have_attribute("data-outcome", "error")
    alice.screenshot(path=artifacts / f"chat-alice-unknown-user-{transport or 'default'}.png")
    # A direct message to a username reaches every connection of that user, and only those;
    # the page names the user id the hub found.
    submit(alice, "dm", to="bob", input="Psst, Bob")
    expect(dm_status).to_have_text("Sent to bob@contoso.example.")
    expect(dm_status).to_have_attribute("data-outcome", "ok")
    for tab in bob_tabs:
        expect(tab.get_by_test_id("direct-message-from")).to_have_text(["alice@contoso.example"])
        expect(tab.get_by_test_id("direct-message-text")).to_have_text(["Psst, Bob"])
    expect(alice.get_by_test_id("direct-messages-empty")).to_be_visible()
    expect(alice.get_by_test_id("direct-message")).to_have_count(0)

    # bob is in the domain (ViewUserHistory) but no administrator (BanUser).
    submit(bob_tabs[0], "history", user="alice@contoso.example")
    expect(bob_tabs[0].get_by_test_id("history-result")).to_have_text(
        "2 messages from alice@contoso.example."
    )
    expect(bob_tabs[0].get_by_test_id("history-item-text")).to_have_text(
        ["Hello from Alice", "y" * 500]
    )
    submit(bob_tabs[0], "ban", user="mallory")
    denied = bob_tabs[0].get_by_test_id("ban-result")
    expect(denied).to_have_text(BAN_DENIED)
    expect(denied).to_have_attribute("data-outcome", "error")
    expect(bob_tabs[0].get_by_test_id("connection-state")).to_have_text("Connected")

    # alice may ban, by user id: bob's connections are closed by the server, which tells
    # him who banned him; they are not reconnected.
    submit(alice, "ban", user="bob@contoso.example")
    allowed = alice.get_by_test_id("ban-result")
    expect(allowed).to_have_text(
        "Banned bob@contoso.example: their connections were closed and new ones are refused."
    )
    expect(allowed).to_have_attribute("data-outcome", "ok")
    for tab in bob_tabs:
        expect(tab.get_by_test_id("connection-state")).to_have_text("Disconnected")
        expect(tab.get_by_test_id("connection-notice")).to_be_visible()
        expect(tab.get_by_test_id("connection-notice-text")).to_have_text(
            "Disconnected: You were banned from the chat by alice."
        )
    bob_tabs[0].screenshot(
        path=artifacts / f"chat-bob-ban-notice-{transport or 'default'}.png", full_page=True
    )
    # A new connection of a banned user is refused with 403.
    bob_tabs[1].get_by_test_id("reconnect").click()
    expect(bob_tabs[1].get_by_test_id("connection-state")).to_have_text("Access denied")
    expect(bob_tabs[1].get_by_test_id("connection-notice-text")).to_contain_text("403")

    send(alice, "Bob is gone")
    expect(alice.get_by_test_id("message-text").last).to_have_text("Bob is gone")
    expect(alice.get_by_test_id("connection-state")).to_have_text("Connected")
    name = transport or "default"
    alice.screenshot(path=artifacts / f"chat-alice-{name}.png", full_page=True)
    bob_tabs[0].screenshot(path=artifacts / f"chat-bob-banned-{name}.png", full_page=True)

    # The demo logged each connection with its user id and transport (opened before the
    # page could call WhoAmI), never the session cookie.
    log = demo.text()
    for user in ("alice", "bob"):
        opened = (
            rf"connection \S+ opened: hub=ChatHub user={user}@contoso\.example transport={in_use}"
        )
        assert re.search(opened, log), log
    cookie = alice_context.cookies()[0]["value"]
    assert cookie not in log

    for watched in (alice_watched, bob_watched):
        assert watched.page_errors == [], "uncaught errors in the page"
        assert watched.csp_violations == [], "the page broke its own Content-Security-Policy"
        assert_cookie_on_every_hub_request(watched.hub_requests)
    if transport == "LongPolling":
        assert alice_watched.websockets == bob_watched.websockets == [], "WebSockets were off"
        polls = [
            r
            for r in alice_watched.hub_requests
            if r.method == "GET" and urlsplit(r.url).path == "/hubs/chat"
        ]
        assert len(polls) >= 3, f"alice's page long-polled {len(polls)} times"
    else:
        assert len(alice_watched.websockets) == 1, alice_watched.websockets
        # One connection per bob tab. The page opts in to stateful reconnect, and the
        # client (10.0) tries its one resume even after the server's Close (the ban):
        # the same id again, refused with 403 (bob is banned), so the tab stays closed.
        assert len(set(bob_watched.websockets)) == 2, bob_watched.websockets
        assert len(bob_watched.websockets) <= 4, bob_watched.websockets


def assert_cookie_on_every_hub_request(requests: list[Request]) -> None:
    """After sign-in, negotiate, every poll and every send carried the session cookie, sent
    by the browser alone (the page cannot read an HttpOnly cookie). Before sign-in there is
    one cookie-less negotiate, answered 401."""
    signed_in = [request for request in requests if _status(request) != 401]
    assert signed_in, "no hub requests after sign-in"
    for request in requests:
        cookie = request.all_headers().get("cookie", "")
        if request in signed_in:
            assert f"{COOKIE}=" in cookie, f"{request.method} {request.url} had no session cookie"
        else:
            assert urlsplit(request.url).path == "/hubs/chat/negotiate", request.url
            assert COOKIE not in cookie, f"a 401 for a request with the cookie: {request.url}"


def _status(request: Request) -> int | None:
    response = request.response()
    return None if response is None else response.status


def test_wrong_password_and_sign_out(demo: DemoServer, browser: Browser) -> None:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.goto(demo.base_url + "/")
        page.get_by_test_id("signin-username").fill("alice")
        page.get_by_test_id("signin-password").fill("wrong")
        page.get_by_test_id("signin-submit").click()
        expect(page.get_by_test_id("signin-failed")).to_contain_text("Wrong username or password.")
        page.get_by_role("link", name="Try again").click()
        sign_in(page, demo.base_url + "/", "asdf42")
        expect(page.get_by_test_id("whoami-name")).to_have_text("asdf42")
        # asdf42 is an administrator in the domain, yet DomainRestricted refuses BanUser.
        submit(page, "ban", user="mallory")
        expect(page.get_by_test_id("ban-result")).to_have_text(BAN_DENIED)
        page.get_by_test_id("signout-submit").click()
        expect(page.get_by_test_id("signin")).to_be_visible()
        expect(page.get_by_test_id("connection-state")).to_have_text("Signed out")
        assert context.cookies() == [], "signing out cleared the session cookie"
    finally:
        context.close()


# The Close record a connection gets when its credential expires (design: expiry).
EXPIRED_CLOSE = '{"type":7,"error":"Authentication expired.","allowReconnect":true}\x1e'
# Test-side observer (evaluate runs outside the page's CSP): every notice the page shows.
RECORD_NOTICES = """() => {
    window.seenNotices = [];
    const text = document.querySelector('[data-testid="connection-notice-text"]');
    new MutationObserver(() => window.seenNotices.push(text.textContent))
        .observe(text, {childList: true, characterData: true, subtree: true});
}"""


def test_authentication_expired(demo: DemoServer, browser: Browser) -> None:
    """The session cookie lasts hours, so the server's expiry Close record is put into the
    real WebSocket by the test; everything else is the official client and the server.

    The page's negotiate goes without ``useStatefulReconnect`` here: the server never
    sent that Close and keeps the connection, and a stateful-reconnect client tries its
    one resume even after a Close, which would find it (the real expiry ends the
    connection on the server first; ``tests/auth/test_resume.py`` covers resumes)."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    sockets: list[WebSocketRoute] = []

    def through_to_server(socket: WebSocketRoute) -> None:
        socket.connect_to_server()
        sockets.append(socket)

    rewritten: list[str] = []

    def without_stateful_reconnect(route: Route) -> None:
        url = route.request.url.replace("&useStatefulReconnect=true", "")
        if url != route.request.url:
            rewritten.append(url)
        route.continue_(url=url)

    try:
        page = context.new_page()
        page.route(re.compile(r"/hubs/chat/negotiate\?"), without_stateful_reconnect)
        page.route_web_socket(re.compile(r"/hubs/chat\?id="), through_to_server)
        sign_in(page, demo.base_url + "/", "alice")
        expect_connected(page, "alice", "alice@contoso.example", "Administrators", "WebSockets")
        first_id = page.get_by_test_id("whoami-connectionid").text_content()
        assert rewritten, "the page asked for stateful reconnect"
        page.evaluate(RECORD_NOTICES)

        # Still signed in: withAutomaticReconnect comes back with a new connection.
        sockets[-1].send(EXPIRED_CLOSE)
        expect(page.get_by_test_id("connection-notice-text")).to_have_text("Reconnected.")
        expect(page.get_by_test_id("connection-state")).to_have_text("Connected")
        expect(page.get_by_test_id("whoami-connectionid")).not_to_have_text(first_id or "")
        assert page.evaluate("window.seenNotices") == [
            "Connection lost: Authentication expired. Reconnecting…",
            "Reconnected.",
        ]
        send(page, "still here")
        expect_messages(page, [("alice", "still here")])

        # The session is gone too (the browser dropped the expired cookie): the reconnect
        # gets 401, so the page stops retrying and asks to sign in again.
        context.clear_cookies()
        sockets[-1].send(EXPIRED_CLOSE)
        expect(page.get_by_test_id("signin")).to_be_visible()
        expect(page.get_by_test_id("connection-state")).to_have_text("Signed out")
        expect(page.get_by_test_id("connection-notice-text")).to_have_text(
            "Your session has ended. Please sign in again."
        )
        expect(page.get_by_test_id("chat")).to_be_hidden()
    finally:
        context.close()


def test_sign_out_ends_the_session_in_every_tab_and_copy(
    demo: DemoServer, browser: Browser
) -> None:
    """Sign-out revokes the session: the other tab of the same browser is disconnected by
    the server and cannot reconnect, and a copy of the cookie taken before the sign-out
    (another browser holding it) is refused."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    thief = browser.new_context()
    thief.set_default_timeout(10_000)
    try:
        first = context.new_page()
        sign_in(first, demo.base_url + "/", "alice")
        expect(first.get_by_test_id("connection-state")).to_have_text("Connected")
        second = context.new_page()
        second.goto(demo.base_url + "/")
        expect(second.get_by_test_id("connection-state")).to_have_text("Connected")
        (copied,) = [c for c in context.cookies() if c["name"] == COOKIE]

        first.bring_to_front()
        first.get_by_test_id("signout-submit").click()
        expect(first.get_by_test_id("connection-state")).to_have_text("Signed out")
        expect(second.get_by_test_id("connection-state")).to_have_text("Disconnected")
        expect(second.get_by_test_id("connection-notice-text")).to_have_text(
            "Disconnected: the server ended the connection."
        )
        second.bring_to_front()
        second.get_by_test_id("reconnect").click()
        expect(second.get_by_test_id("connection-state")).to_have_text("Signed out")
        expect(second.get_by_test_id("signin")).to_be_visible()

        thief.add_cookies([copied])
        stolen = thief.new_page()
        stolen.goto(demo.base_url + "/")
        expect(stolen.get_by_test_id("connection-state")).to_have_text("Signed out")
        expect(stolen.get_by_test_id("chat")).to_be_hidden()
    finally:
        thief.close()
        context.close()
