"""No credential ever reaches the logs.

Everything is captured: the root logger at DEBUG (``caplog``) and hypercorn's access log
through ``serve_hypercorn(access_log=<a logger>)``, which propagates to the root. The
traffic is what browsers send: the token in the ``access_token`` query of a WebSocket
upgrade (trio-websocket) and of an SSE GET, a session cookie, and failed attempts with a
bad token, a bad query token and a tampered cookie. The HTTP requests are written with
``h11`` over raw trio sockets, because HTTP client libraries log request URLs (httpx at
INFO), which would put the query token into the capture from the client side.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import attrs
import h11
import orjson
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from demo.app import build_app
from demo.users import USERS, issue_token
from triohub.transports.hypercorn import serve_hypercorn

from .support import HANDSHAKE, HUB, SECRET, HubSocket, bad_tokens, invocation, records

NEGOTIATE = HUB + "/negotiate?negotiateVersion=1"
ACCESS_LOGGER = "tests.auth.access"


@attrs.define
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""


class RawHttp:
    """One HTTP/1.1 request per connection, with h11: nothing here logs."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    @asynccontextmanager
    async def open(
        self, method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> AsyncIterator[tuple[RawResponse, Callable[[], Any]]]:
        """Yields the response head and an async ``next_data()`` for streamed bodies."""
        connection = h11.Connection(h11.CLIENT)
        stream = await trio.open_tcp_stream(self.host, self.port)
        async with stream:
            request = h11.Request(
                method=method,
                target=target,
                headers=[
                    ("Host", f"{self.host}:{self.port}"),
                    ("Content-Length", str(len(body))),
                    *headers,
                ],
            )
            await stream.send_all(
                connection.send(request)
                + (connection.send(h11.Data(data=body)) or b"")
                + (connection.send(h11.EndOfMessage()) or b"")
            )

            async def next_event() -> Any:
                while True:
                    event = connection.next_event()
                    if event is not h11.NEED_DATA:
                        return event
                    connection.receive_data(await stream.receive_some(65536))

            head = await next_event()
            assert isinstance(head, h11.Response), head
            response = RawResponse(
                head.status_code, {k.decode(): v.decode() for k, v in head.headers}
            )

            async def next_data() -> bytes | None:
                event = await next_event()
                if isinstance(event, h11.Data):
                    return bytes(event.data)
                return None  # EndOfMessage

            yield response, next_data

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> RawResponse:
        async with self.open(method, target, headers, body) as (response, next_data):
            while (chunk := await next_data()) is not None:
                response.body += chunk
        return response


def token_for(username: str, lifetime: int = 3600) -> str:
    return issue_token(USERS[username], SECRET, lifetime)


def authorization(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


async def negotiate(http: RawHttp, *headers: tuple[str, str]) -> str:
    response = await http.request("POST", NEGOTIATE, headers)
    assert response.status == 200, response
    token: str = orjson.loads(response.body)["connectionToken"]
    return token


def is_the_test_clients_own_line(record: logging.LogRecord) -> bool:
    # trio-websocket's *client* logs the URL it connects to, query included, at DEBUG.
    # The server here is hypercorn, so that line is the test's, not the server's.
    return record.name == "trio-websocket" and record.getMessage().startswith("Connecting to ")


def captured_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = [caplog.text]
    for record in caplog.records:
        if is_the_test_clients_own_line(record):
            continue
        parts.append(f"{record.name} {record.levelname} {record.getMessage()}")
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        if record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(record.stack_info)
    # caplog.text holds the client's own line too; take it out by its exact message.
    text = "\n".join(parts)
    for record in caplog.records:
        if is_the_test_clients_own_line(record):
            text = text.replace(record.getMessage(), "<the test client's own connect line>")
    return text


@attrs.define
class Traffic:
    """The credentials used, to look for afterwards."""

    secrets: dict[str, str] = attrs.field(factory=dict)


async def drive_browser_like_traffic(host: str, port: int) -> Traffic:
    http = RawHttp(host, port)
    ws_base = f"ws://{host}:{port}"
    traffic = Traffic()
    alice = token_for("alice")
    bob = token_for("bob")
    traffic.secrets.update(alice_token=alice, bob_token=bob)

    # 1. WebSocket with the token in the query (as browsers do).
    connection_token = await negotiate(http, authorization(alice))
    url = f"{ws_base}{HUB}?id={connection_token}&access_token={quote(alice)}"
    async with open_websocket_url(url) as ws:
        hub = HubSocket(ws)
        await hub.handshake()
        assert (await hub.invoke("WhoAmI"))["result"]["userId"] == "alice@contoso.example"

    # 2. Server-sent events with the token in the query, on the GET and on the POSTs.
    connection_token = await negotiate(http, authorization(alice))
    target = f"{HUB}?id={connection_token}&access_token={quote(alice)}"
    accept = [("Accept", "text/event-stream")]
    async with http.open("GET", target, accept) as (response, next_data):
        assert response.status == 200
        assert await next_data() == b":\r\n"
        assert (await http.request("POST", target, body=HANDSHAKE.encode())).status == 200
        assert await next_data() == b"data: {}\x1e\r\n\r\n"
        asked = invocation("1", "WhoAmI").encode()
        assert (await http.request("POST", target, body=asked)).status == 200
        data = await next_data()
        assert data is not None
        (completion,) = records(data.removeprefix(b"data: ").removesuffix(b"\r\n\r\n"))
        assert completion["result"]["userId"] == "alice@contoso.example"
        # Bob on alice's SSE connection: refused and logged as a warning.
        refused = await http.request("POST", f"{HUB}?id={connection_token}&access_token={bob}")
        assert refused.status == 403

    # 3. The session cookie: login, negotiate, WebSocket upgrade.
    login = await http.request(
        "POST",
        "/account/login",
        [("Content-Type", "application/x-www-form-urlencoded")],
        b"username=bob&password=bob-password",
    )
    assert login.status == 303
    cookie = login.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
    traffic.secrets["cookie"] = cookie
    cookie_header = ("Cookie", f"triohub_demo={cookie}")
    connection_token = await negotiate(http, cookie_header)
    async with open_websocket_url(
        f"{ws_base}{HUB}?id={connection_token}",
        extra_headers=[(b"cookie", f"triohub_demo={cookie}".encode())],
    ) as ws:
        hub = HubSocket(ws)
        await hub.handshake()
        assert (await hub.invoke("WhoAmI"))["result"]["userId"] == "bob@contoso.example"
    token = await http.request(
        "POST",
        "/api/token",
        [("Content-Type", "application/json")],
        b'{"username":"asdf42","password":"asdf42-password"}',
    )
    assert token.status == 200
    traffic.secrets["issued_token"] = orjson.loads(token.body)["access_token"]

    # 4. Failures: a bad header token, a bad query token (negotiate, WS, SSE), a tampered
    #    cookie, a cookie from a foreign origin.
    wrong_signature, _ = bad_tokens()["wrong-signature"]
    expired, _ = bad_tokens(time.time())["expired"]
    traffic.secrets.update(wrong_signature=wrong_signature, expired=expired)
    refused = await http.request("POST", NEGOTIATE, [authorization(wrong_signature)])
    assert refused.status == 401
    refused = await http.request("POST", f"{NEGOTIATE}&access_token={expired}")
    assert refused.status == 401
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(f"{ws_base}{HUB}?access_token={wrong_signature}"):
            pass
    assert rejected.value.status_code == 401
    connection_token = await negotiate(http, authorization(alice))
    refused = await http.request(
        "GET", f"{HUB}?id={connection_token}&access_token={expired}", accept
    )
    assert refused.status == 401
    tampered = cookie[:-4] + ("AAAA" if not cookie.endswith("AAAA") else "BBBB")
    traffic.secrets["tampered_cookie"] = tampered
    refused = await http.request("POST", NEGOTIATE, [("Cookie", f"triohub_demo={tampered}")])
    assert refused.status == 401
    refused = await http.request(
        "POST", NEGOTIATE, [cookie_header, ("Origin", "https://evil.example")]
    )
    assert refused.status == 403
    # Ambiguous and malformed credentials: two Authorization headers, a string exp.
    string_exp, _ = bad_tokens()["string-exp"]
    traffic.secrets["string_exp"] = string_exp
    refused = await http.request(
        "POST", NEGOTIATE, [authorization(alice), authorization(string_exp)]
    )
    assert refused.status == 401
    refused = await http.request("POST", NEGOTIATE, [authorization(string_exp)])
    assert refused.status == 401

    # 5. A wrong password (logged: username and address, never the password) and the
    #    sign-out (logged: who, never the cookie), then the dead cookie refused.
    wrong_password = "not-bobs-password-0123456789"
    traffic.secrets["wrong_password"] = wrong_password
    failed = await http.request(
        "POST",
        "/account/login",
        [("Content-Type", "application/x-www-form-urlencoded")],
        f"username=bob&password={wrong_password}".encode(),
    )
    assert failed.status == 401
    logout = await http.request("POST", "/account/logout", [cookie_header])
    assert logout.status == 303
    refused = await http.request("POST", NEGOTIATE, [cookie_header])
    assert refused.status == 401
    return traffic


def fragments(traffic: Traffic) -> dict[str, str]:
    """What must never appear: each credential, ``Bearer <token>``, and each token's
    signature on its own (a log line that cut a token short would still hold it)."""
    found: dict[str, str] = {}
    for name, secret in traffic.secrets.items():
        found[name] = secret
        found[f"Bearer {name}"] = f"Bearer {secret}"
        if secret.count(".") == 2:
            found[f"{name} signature"] = secret.rsplit(".", 1)[1]
        if name.endswith("cookie"):
            found[f"{name} signature"] = secret.rsplit(".", 1)[1]
    found["Bearer <anything>"] = "Bearer ey"
    return found


async def test_no_credential_in_any_log(
    caplog: pytest.LogCaptureFixture, nursery: trio.Nursery
) -> None:
    caplog.set_level(logging.DEBUG)
    app = build_app(SECRET)
    host, port = await nursery.start(
        lambda task_status: serve_hypercorn(
            app,
            "127.0.0.1",
            0,
            access_log=logging.getLogger(ACCESS_LOGGER),
            task_status=task_status,
        )
    )
    traffic = await drive_browser_like_traffic(host, port)
    app.server.stop()
    with trio.fail_after(10):
        await app.server.wait_stopped()

    # The capture works: access lines for the hub and the refusals are there, and the
    # test client's own DEBUG line does hold the query token (so a leak would be seen).
    access = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]

    def logged(request: str, status: str) -> bool:
        return any(f'"{request} ' in line and f'" {status} ' in line for line in access)

    assert logged("GET /hubs/chat", "101"), access  # the WebSocket upgrades
    assert logged("GET /hubs/chat", "401"), access  # the refused SSE GET
    assert logged("POST /hubs/chat/negotiate", "401"), access
    assert logged("POST /account/login", "303"), access
    assert logged("POST /account/logout", "303"), access
    assert any(r.name == "triohub.auth" for r in caplog.records)
    messages = [r.getMessage() for r in caplog.records]
    assert "failed sign-in for 'bob' from 127.0.0.1" in messages
    assert "'bob' signed out (0 live connections closed)" in messages
    own = [r.getMessage() for r in caplog.records if is_the_test_clients_own_line(r)]
    assert any(traffic.secrets["alice_token"] in line for line in own), own

    text = captured_text(caplog)
    leaked = {name for name, fragment in fragments(traffic).items() if fragment in text}
    assert not leaked, f"credentials in the logs: {sorted(leaked)}"
    assert SECRET not in text


async def test_access_log_records_carry_no_credentials_in_args(
    caplog: pytest.LogCaptureFixture, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The access-log *message* is built from a path-only format, but hypercorn passes
    its whole ``AccessLogAtoms`` as the record's ``args``: every request header
    (``{authorization}i``, ``{cookie}i``), the query string (``q``, ``Uq``, ``R``), every
    response header (``{set-cookie}o``) and every environment variable (``{..}e``, here
    ``DEMO_JWT_SECRET``). Any handler, filter or structured formatter that looks at
    ``record.args`` gets them. The records must not carry them at all."""
    monkeypatch.setenv("DEMO_JWT_SECRET", SECRET)
    caplog.set_level(logging.DEBUG)
    app = build_app(SECRET)
    host, port = await nursery.start(
        lambda task_status: serve_hypercorn(
            app,
            "127.0.0.1",
            0,
            access_log=logging.getLogger(ACCESS_LOGGER),
            task_status=task_status,
        )
    )
    traffic = await drive_browser_like_traffic(host, port)
    app.server.stop()
    with trio.fail_after(10):
        await app.server.wait_stopped()

    exposed: dict[str, set[str]] = {}
    for record in caplog.records:
        if record.name != ACCESS_LOGGER or not isinstance(record.args, dict):
            continue
        values = {str(k): str(v) for k, v in record.args.items()}
        for name, fragment in {**fragments(traffic), "DEMO_JWT_SECRET": SECRET}.items():
            keys = {k for k, v in values.items() if fragment in v}
            if keys:
                exposed.setdefault(name, set()).update(keys)
    assert not exposed, f"credentials in access-log record args: {exposed}"
