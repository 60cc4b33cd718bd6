"""Authentication on the wire: the demo app (``build_app``) served in-process by hypercorn,
driven with real HTTP (httpx in worker threads) and real WebSockets (trio-websocket).

Negotiate answers 401 with a ``WWW-Authenticate`` challenge or 403; the later requests of
a long-polling or SSE connection must come from the connection's own user with a valid
credential, and a refused request changes nothing on the connection.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from demo.users import USERS, issue_token

from .conftest import Demo
from .support import (
    HANDSHAKE,
    HUB,
    SECRET,
    HubSocket,
    bad_tokens,
    bearer,
    invocation,
    records,
    refused_upgrade,
)

NEGOTIATE = HUB + "/negotiate?negotiateVersion=1"
MATRIX = bad_tokens()


def token_for(username: str, lifetime: int = 3600, *, now: float | None = None) -> str:
    return issue_token(USERS[username], SECRET, lifetime, now=now)


def expired_token(username: str) -> str:
    return token_for(username, 60, now=time.time() - 3600)


def q(url: str, **params: str) -> str:
    """``url`` with more query parameters (httpx's ``params=`` replaces the URL's query)."""
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def challenge(response: httpx.Response) -> list[str]:
    return response.headers.get_list("www-authenticate")


async def negotiate(demo: Demo, **kwargs: Any) -> str:
    response = await demo.http.post(NEGOTIATE, **kwargs)
    assert response.status_code == 200, (response.status_code, response.headers)
    body = response.json()
    assert {t["transport"] for t in body["availableTransports"]} == {
        "WebSockets",
        "ServerSentEvents",
        "LongPolling",
    }
    token: str = body["connectionToken"]
    return token


# -- negotiate --------------------------------------------------------------------------


async def test_negotiate_without_credential_is_401_bearer(demo: Demo) -> None:
    response = await demo.http.post(NEGOTIATE)
    assert response.status_code == 401
    assert challenge(response) == ["Bearer"]
    assert response.content == b""


async def test_negotiate_with_header_token(demo: Demo) -> None:
    await negotiate(demo, headers=bearer(token_for("alice")))


@pytest.mark.parametrize("case", list(MATRIX))
async def test_negotiate_with_a_bad_token_is_401_invalid_token(demo: Demo, case: str) -> None:
    token, description = MATRIX[case]
    response = await demo.http.post(NEGOTIATE, headers=bearer(token))
    assert response.status_code == 401
    assert challenge(response) == [
        f'Bearer error="invalid_token", error_description="{description}"'
    ]
    assert token not in response.text


@pytest.mark.parametrize("case", ["expired", "alg-none", "wrong-audience"])
async def test_negotiate_with_a_bad_query_token_is_401_invalid_token(demo: Demo, case: str) -> None:
    token, description = MATRIX[case]
    response = await demo.http.post(q(NEGOTIATE, access_token=token))
    assert response.status_code == 401
    assert challenge(response) == [
        f'Bearer error="invalid_token", error_description="{description}"'
    ]


TWO_HEADERS = (
    'Bearer error="invalid_request", '
    'error_description="The request has more than one Authorization header."'
)


async def test_negotiate_with_two_authorization_headers_is_401(demo: Demo) -> None:
    """Two valid tokens of different users, then with a valid cookie as well: the request
    is ambiguous, so nobody is authenticated (the first header used to win)."""
    alice, bob = token_for("alice"), token_for("bob")
    headers = [("Authorization", f"Bearer {alice}"), ("Authorization", f"Bearer {bob}")]
    response = await demo.http.post(NEGOTIATE, headers=headers)
    assert response.status_code == 401
    assert challenge(response) == [TWO_HEADERS]
    assert alice not in response.text
    assert bob not in response.text
    cookie = await demo.http.login_cookie("alice")
    response = await demo.http.post(
        NEGOTIATE, headers=[*headers, ("Cookie", f"triohub_demo={cookie}")]
    )
    assert response.status_code == 401
    assert challenge(response) == [TWO_HEADERS]
    # One of them alone is fine.
    await negotiate(demo, headers=headers[:1])


async def test_negotiate_with_two_query_tokens_is_401(demo: Demo) -> None:
    url = f"{NEGOTIATE}&access_token={token_for('alice')}&access_token={token_for('bob')}"
    response = await demo.http.post(url)
    assert response.status_code == 401
    assert challenge(response) == [
        'Bearer error="invalid_request", '
        "error_description=\"The request has more than one 'access_token' parameter.\""
    ]


async def test_negotiate_with_query_token_on_the_hub_path(demo: Demo) -> None:
    # The JS client uses the header for negotiate; browsers need the query for WS/SSE,
    # and the query works on every request of a hub path.
    response = await demo.http.post(q(NEGOTIATE, access_token=token_for("alice")))
    assert response.status_code == 200
    assert "connectionToken" in response.json()


async def test_negotiate_with_the_login_cookie(demo: Demo) -> None:
    cookie = await demo.http.login_cookie("alice")
    await negotiate(demo, headers={"Cookie": f"triohub_demo={cookie}"})
    # Same origin (as a browser on the demo page sends it) is fine too.
    await negotiate(demo, headers={"Cookie": f"triohub_demo={cookie}", "Origin": demo.base_url})


async def test_wrong_password_sets_no_cookie(demo: Demo) -> None:
    response = await demo.http.post(
        "/account/login", data={"username": "alice", "password": "bob-password"}
    )
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


async def test_negotiate_with_a_tampered_cookie_is_401(demo: Demo) -> None:
    cookie = await demo.http.login_cookie("alice")
    tampered = cookie[:-3] + ("AAA" if not cookie.endswith("AAA") else "BBB")
    response = await demo.http.post(NEGOTIATE, headers={"Cookie": f"triohub_demo={tampered}"})
    assert response.status_code == 401


async def test_a_bad_cookie_is_not_reported_as_an_invalid_bearer_token(demo: Demo) -> None:
    """RFC 6750 section 3.1: ``error="invalid_token"`` describes the *access token* the
    request carried. A request with no bearer token and a tampered session cookie must
    get the bare ``Bearer`` challenge, not ``invalid_token`` with the cookie's failure
    text (which also tells a prober how the cookie check failed)."""
    cookie = await demo.http.login_cookie("alice")
    tampered = cookie[:-3] + ("AAA" if not cookie.endswith("AAA") else "BBB")
    response = await demo.http.post(NEGOTIATE, headers={"Cookie": f"triohub_demo={tampered}"})
    assert response.status_code == 401
    assert challenge(response) == ["Bearer"]


async def test_cookie_with_a_foreign_origin_is_403(demo: Demo) -> None:
    cookie = await demo.http.login_cookie("alice")
    for origin in ("https://evil.example", "null", f"http://{demo.host}:{demo.port + 1}"):
        response = await demo.http.post(
            NEGOTIATE, headers={"Cookie": f"triohub_demo={cookie}", "Origin": origin}
        )
        assert response.status_code == 403, origin
        assert not challenge(response)


async def test_bearer_token_with_a_foreign_origin_is_fine(demo: Demo) -> None:
    # A token is not ambient: a cross-origin page that holds one was given it.
    await negotiate(demo, headers={**bearer(token_for("alice")), "Origin": "https://other.example"})


async def test_invalid_bearer_with_a_valid_cookie_uses_the_cookie(demo: Demo) -> None:
    cookie = await demo.http.login_cookie("bob")
    expired, _ = MATRIX["expired"]
    await negotiate(demo, headers={**bearer(expired), "Cookie": f"triohub_demo={cookie}"})


async def test_echo_hub_stays_anonymous(demo: Demo) -> None:
    response = await demo.http.post("/hubs/echo/negotiate?negotiateVersion=1")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", HUB),
        ("GET", HUB + "?id=no-such-connection"),
        ("POST", HUB + "?id=no-such-connection"),
        ("DELETE", HUB + "?id=no-such-connection"),
    ],
)
async def test_unauthenticated_transport_requests_are_challenged_first(
    demo: Demo, method: str, url: str
) -> None:
    """signalr-protocol.md section 10: on a hub that requires an authenticated user,
    authorization runs before SignalR on *every* request, so a request with no
    credential gets the 401 challenge before the 400 (no id) / 404 (unknown id) that
    only the hub's own users should be able to observe."""
    response = await demo.http.request(method, url)
    assert (response.status_code, challenge(response)) == (401, ["Bearer"])


# -- long polling: the connection belongs to the user who started it --------------------


class LongPolling:
    def __init__(self, demo: Demo, connection_token: str, token: str) -> None:
        self.demo = demo
        self.connection_token = connection_token
        self.url = f"{HUB}?id={connection_token}"
        self.token = token

    def transport(self) -> Any:
        """The server's ``LongPollingTransport`` of this connection."""
        connection = self.demo.app.connections.get(self.connection_token)
        assert connection is not None
        return connection.channel

    async def wait_polling(self) -> None:
        """Until the server holds a poll of this connection open."""
        transport = self.transport()
        while not transport.polling:
            await transport.wait_change()

    def auth(self, token: str | None) -> dict[str, str]:
        """The connection's own token by default; ``""`` sends no credential."""
        token = self.token if token is None else token
        return bearer(token) if token else {}

    async def poll(self, token: str | None = None) -> httpx.Response:
        return await self.demo.http.get(self.url, headers=self.auth(token))

    async def post(self, body: str, token: str | None = None) -> httpx.Response:
        return await self.demo.http.post(
            self.url,
            content=body.encode(),
            headers={**self.auth(token), "Content-Type": "text/plain;charset=UTF-8"},
        )

    async def delete(self, token: str | None = None) -> httpx.Response:
        return await self.demo.http.request("DELETE", self.url, headers=self.auth(token))


async def start_long_polling(demo: Demo, token: str) -> LongPolling:
    connection = LongPolling(demo, await negotiate(demo, headers=bearer(token)), token)
    first = await connection.poll()
    assert first.status_code == 200
    assert first.content == b""
    assert (await connection.post(HANDSHAKE)).status_code == 200
    reply = await connection.poll()
    assert reply.status_code == 200
    assert reply.content == b"{}\x1e"
    return connection


async def test_long_polling_refuses_another_user_and_expired_tokens(demo: Demo) -> None:
    alice = token_for("alice")
    connection = await start_long_polling(demo, alice)
    bob = token_for("bob")
    alice_expired = expired_token("alice")

    # Alice's poll waits for data while the others try their luck.
    pending: list[httpx.Response] = []
    async with trio.open_nursery() as nursery:

        async def alice_polls() -> None:
            pending.append(await connection.poll())

        nursery.start_soon(alice_polls)
        await connection.wait_polling()

        poll = await connection.poll(bob)
        assert poll.status_code == 403, "a poll with another user's token"
        assert not challenge(poll)
        sneaky = invocation(None, "SendMessage", "sent by bob on alice's connection")
        post = await connection.post(sneaky, bob)
        assert post.status_code == 403, "a send with another user's token"
        assert (await connection.delete(bob)).status_code == 403, "a DELETE by another user"

        poll = await connection.poll(alice_expired)
        assert poll.status_code == 401, "a poll with an expired token"
        assert challenge(poll) == [
            'Bearer error="invalid_token", error_description="The token expired."'
        ]
        post = await connection.post(sneaky, alice_expired)
        assert post.status_code == 401, "a send with an expired token"
        poll = await connection.poll("")
        assert poll.status_code == 401, "a poll with no token"
        assert challenge(poll) == ["Bearer"]

        # None of that touched the connection: alice's poll is still held (a poll that
        # was let through would have superseded it with 204), and her invocation
        # answers on it.
        assert connection.transport().polling
        assert (await connection.post(invocation("1", "WhoAmI"))).status_code == 200
    (answer,) = pending
    assert answer.status_code == 200
    (completion,) = records(answer.content)
    assert completion["type"] == 3
    assert completion["invocationId"] == "1"
    assert completion["result"]["userId"] == "alice@contoso.example"
    assert completion["result"]["name"] == "alice"

    # Bob's SendMessage was never delivered: the next poll sees only what alice asks for.
    assert (await connection.post(invocation("2", "WhoAmI"))).status_code == 200
    later = await connection.poll()
    assert [r.get("invocationId") for r in records(later.content)] == ["2"]
    assert (await connection.delete()).status_code == 202


async def test_long_polling_a_fresh_token_of_the_same_user_is_fine(demo: Demo) -> None:
    connection = await start_long_polling(demo, token_for("alice"))
    fresher = token_for("alice", lifetime=7200)
    assert fresher != connection.token
    assert (await connection.post(invocation("1", "WhoAmI"), fresher)).status_code == 200
    answer = await connection.poll(fresher)
    assert records(answer.content)[0]["result"]["userId"] == "alice@contoso.example"


async def test_long_polling_with_the_cookie_then_another_users_token(demo: Demo) -> None:
    cookie = {"Cookie": f"triohub_demo={await demo.http.login_cookie('alice')}"}
    url = f"{HUB}?id={await negotiate(demo, headers=cookie)}"
    assert (await demo.http.get(url, headers=cookie)).status_code == 200
    assert (await demo.http.post(url, content=HANDSHAKE.encode(), headers=cookie)).status_code == (
        200
    )
    assert (await demo.http.get(url, headers=cookie)).content == b"{}\x1e"
    bob = await demo.http.get(url, headers=bearer(token_for("bob")))
    assert bob.status_code == 403


# -- server-sent events -----------------------------------------------------------------


class SseLines:
    """Lines of an SSE response (split on CRLF only: records end with 0x1E, which
    ``str.splitlines`` and so httpx's ``iter_lines`` would also split on)."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.iter_raw()
        self._buffer = b""

    def _line(self) -> str:
        while b"\r\n" not in self._buffer:
            self._buffer += next(self._chunks)
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line.decode()

    async def line(self) -> str:
        return await trio.to_thread.run_sync(self._line, abandon_on_cancel=True)

    async def data(self) -> str:
        """The next ``data:`` payload."""
        while True:
            line = await self.line()
            if line.startswith("data: "):
                return line.removeprefix("data: ")


async def test_sse_query_token_and_same_user_rule(demo: Demo) -> None:
    alice = token_for("alice")
    connection_token = await negotiate(demo, headers=bearer(alice))
    url = f"{HUB}?id={connection_token}"
    stream = demo.http.client.stream(
        "GET", q(url, access_token=alice), headers={"Accept": "text/event-stream"}
    )
    response = await trio.to_thread.run_sync(stream.__enter__)
    try:
        assert response.status_code == 200
        events = SseLines(response)
        assert await events.line() == ":"

        sent = await demo.http.post(url, content=HANDSHAKE.encode(), headers=bearer(alice))
        assert sent.status_code == 200
        assert await events.data() == "{}\x1e"

        # Bob, or alice with an expired token, cannot write into alice's stream.
        sneaky = invocation("9", "WhoAmI").encode()
        bob_post = await demo.http.post(url, content=sneaky, headers=bearer(token_for("bob")))
        assert bob_post.status_code == 403
        expired = await demo.http.post(q(url, access_token=expired_token("alice")), content=sneaky)
        assert expired.status_code == 401
        # A second SSE GET by bob is refused before anything else.
        second = await demo.http.get(
            q(url, access_token=token_for("bob")), headers={"Accept": "text/event-stream"}
        )
        assert second.status_code == 403

        asked = invocation("1", "WhoAmI").encode()
        sent = await demo.http.post(q(url, access_token=alice), content=asked)
        assert sent.status_code == 200
        (completion,) = records(await events.data())
        assert completion["invocationId"] == "1", "bob's invocation 9 never ran"
        assert completion["result"]["userId"] == "alice@contoso.example"
    finally:
        await trio.to_thread.run_sync(stream.__exit__, None, None, None)


async def test_sse_without_credential_is_401(demo: Demo) -> None:
    connection_token = await negotiate(demo, headers=bearer(token_for("alice")))
    response = await demo.http.get(
        f"{HUB}?id={connection_token}", headers={"Accept": "text/event-stream"}
    )
    assert response.status_code == 401
    assert challenge(response) == ["Bearer"]


# -- WebSockets -------------------------------------------------------------------------


async def test_websocket_with_query_token(demo: Demo) -> None:
    alice = token_for("alice")
    connection_token = await negotiate(demo, headers=bearer(alice))
    url = f"{demo.ws_url}{HUB}?id={connection_token}&access_token={alice}"
    async with open_websocket_url(url) as ws:
        hub = HubSocket(ws)
        await hub.handshake()
        completion = await hub.invoke("WhoAmI")
        assert completion["result"]["userId"] == "alice@contoso.example"


def invalid(case: str) -> bytes:
    return f'Bearer error="invalid_token", error_description="{MATRIX[case][1]}"'.encode()


@pytest.mark.parametrize(
    ("query", "headers", "expected"),
    [
        pytest.param("", [], b"Bearer", id="no-credential"),
        pytest.param(
            f"access_token={MATRIX['expired'][0]}", [], invalid("expired"), id="expired-query"
        ),
        pytest.param(
            "",
            [(b"authorization", f"Bearer {MATRIX['alg-none'][0]}".encode())],
            invalid("alg-none"),
            id="alg-none-header",
        ),
        pytest.param(
            "",
            [(b"authorization", f"Bearer {MATRIX['string-exp'][0]}".encode())],
            invalid("string-exp"),
            id="string-exp-header",
        ),
        pytest.param(
            "",
            [
                (b"authorization", f"Bearer {token_for('alice')}".encode()),
                (b"authorization", f"Bearer {token_for('bob')}".encode()),
            ],
            TWO_HEADERS.encode(),
            id="two-authorization-headers",
        ),
    ],
)
async def test_websocket_upgrade_refused_with_401(
    demo: Demo, query: str, headers: list[tuple[bytes, bytes]], expected: bytes
) -> None:
    refused = await refused_upgrade(f"{demo.ws_url}{HUB}?{query}", headers)
    assert refused.status_code == 401
    challenges = [v for k, v in refused.headers if k.lower() == b"www-authenticate"]
    assert challenges == [expected]


async def test_websocket_cookie_from_a_foreign_origin_is_403(demo: Demo) -> None:
    """Cross-site WebSocket hijacking: the browser attaches the cookie to an upgrade
    started by any page; the Origin header says which."""
    cookie = await demo.http.login_cookie("alice")
    headers = [(b"cookie", f"triohub_demo={cookie}".encode())]
    refused = await refused_upgrade(
        f"{demo.ws_url}{HUB}", [*headers, (b"origin", b"https://evil.example")]
    )
    assert refused.status_code == 403
    async with open_websocket_url(
        f"{demo.ws_url}{HUB}", extra_headers=[*headers, (b"origin", demo.base_url.encode())]
    ) as ws:
        hub = HubSocket(ws)
        await hub.handshake()
        assert (await hub.invoke("WhoAmI"))["result"]["userId"] == "alice@contoso.example"


# -- a banned user ----------------------------------------------------------------------


async def read_until_closed(ws: Any) -> None:
    while True:
        await ws.get_message()


async def test_banned_user_is_closed_and_refused(demo: Demo) -> None:
    alice, bob = token_for("alice"), token_for("bob")
    bob_cookie = {"Cookie": f"triohub_demo={await demo.http.login_cookie('bob')}"}
    auth = [(b"authorization", f"Bearer {alice}".encode())]
    async with (
        open_websocket_url(f"{demo.ws_url}{HUB}", extra_headers=auth) as alice_ws,
        open_websocket_url(f"{demo.ws_url}{HUB}?access_token={bob}") as bob_ws,
    ):
        alice_hub, bob_hub = HubSocket(alice_ws), HubSocket(bob_ws)
        await alice_hub.handshake()
        await bob_hub.handshake()
        assert (await bob_hub.invoke("WhoAmI"))["result"]["userId"] == "bob@contoso.example"

        # Bob may not ban (no Administrators role); alice may.
        refused = await bob_hub.invoke("BanUser", "alice")
        assert refused["error"] == "Failed to invoke 'BanUser' because user is unauthorized"
        done = await alice_hub.invoke("BanUser", "bob")
        assert "error" not in done, done

        # Bob's live connection is closed by the server.
        with trio.fail_after(5):
            close = await bob_hub.receive()
        assert close["type"] == 7, close
        with trio.fail_after(5), pytest.raises(ConnectionClosed):
            await read_until_closed(bob_ws)

        # ... and every new attempt of his is refused with 403, whatever the credential.
        assert (await demo.http.post(NEGOTIATE, headers=bearer(bob))).status_code == 403
        assert (await demo.http.post(NEGOTIATE, headers=bob_cookie)).status_code == 403
        refused = await refused_upgrade(f"{demo.ws_url}{HUB}?access_token={bob}")
        assert refused.status_code == 403

        # Alice carries on; other users still connect.
        assert (await alice_hub.invoke("WhoAmI"))["result"]["userId"] == "alice@contoso.example"
        await negotiate(demo, headers=bearer(token_for("asdf42")))


async def test_domain_restricted_user_cannot_ban(demo: Demo) -> None:
    # mallory is an Administrator outside contoso.example; asdf42 is named by the policy.
    for username in ("mallory", "asdf42"):
        token = token_for(username)
        async with open_websocket_url(f"{demo.ws_url}{HUB}?access_token={token}") as ws:
            hub = HubSocket(ws)
            await hub.handshake()
            refused = await hub.invoke("BanUser", "bob")
            assert refused["error"] == "Failed to invoke 'BanUser' because user is unauthorized"
    await negotiate(demo, headers=bearer(token_for("bob")))
