"""One table of raw HTTP requests and the exact answers both servers give: hypercorn
with the ASGI app, and triohub's own server (``serve_native``), serving the same
``HubServer``. Both carry out the same endpoint's decisions (``endpoint.py``); HTTP
itself is read by h11 in both, so a request h11 refuses (no Host, two Hosts, a header
name that is not a token, a control character) gets its 400 from either, and a request
framed both by ``Transfer-Encoding`` and ``Content-Length`` is refused by both.

Each case is asked of each server on a fresh connection, after negotiating two
connections (``{anonymous}``, ``{alice}`` in a request stand for their tokens;
``{token_user}`` for a bearer token of that user). Refused requests must reach no hub:
no hub connection opens, none ends.

Real sockets, real time; the waits are short.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import orjson
import pytest
import trio

from triohub.protocol import Texts
from triohub.transports.actions import BOTH_FRAMINGS, POST_LIMIT
from triohub.transports.asgi import SignalRApp
from triohub.transports.hypercorn import serve_hypercorn

from ..auth.support import claims, sign
from .native_fixtures import native_fixture, start_native_fixture  # noqa: F401
from .native_support import HUB, PRIVATE, StartNative, authenticator, token_for
from .native_wire import RFC_KEY, Wire
from .support import HANDSHAKE_OK, ID, JSON_HANDSHAKE

pytestmark = pytest.mark.usefixtures("hang_guard")

UPGRADE = f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n"
"""The headers of a well-formed WebSocket upgrade request."""
HOST = "Host: 127.0.0.1\r\n"
WS = {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}
SSE = {"transport": "ServerSentEvents", "transferFormats": ["Text"]}
LP = {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]}
NEGOTIATED_V1 = {
    "negotiateVersion": 1,
    "connectionId": "<id>",
    "connectionToken": "<id>",
    "availableTransports": [WS, SSE, LP],
}
NEGOTIATED_V0 = {
    "negotiateVersion": 0,
    "connectionId": "<id>",
    "availableTransports": [WS, SSE, LP],
}
CHALLENGE = ("Bearer",)
EXPIRED_CHALLENGE = ('Bearer error="invalid_token", error_description="The token expired."',)


@attrs.frozen
class Case:
    head: str
    """The request line and headers (``\\r\\n`` separated, without the blank line)."""
    status: int
    body: bytes | dict[str, Any] = b""
    """Exact body, or the JSON document (ids replaced by ``<id>``)."""
    challenge: tuple[str, ...] = ()
    """The ``WWW-Authenticate`` values."""
    payload: bytes = b""
    """Sent after the head's blank line."""


def case(
    name: str,
    head: str,
    status: int,
    body: bytes | dict[str, Any] = b"",
    *,
    challenge: tuple[str, ...] = (),
    payload: bytes = b"",
) -> Any:
    return pytest.param(Case(head, status, body, challenge, payload), id=name)


CASES = [
    # -- negotiate
    case(
        "negotiate-v1",
        f"POST {HUB}/negotiate?negotiateVersion=1 HTTP/1.1\r\n{HOST}",
        200,
        NEGOTIATED_V1,
    ),
    case("negotiate-v0", f"POST {HUB}/negotiate HTTP/1.1\r\n{HOST}", 200, NEGOTIATED_V0),
    case(
        "negotiate-absolute-form-keeps-the-query",
        f"POST http://127.0.0.1{HUB}/negotiate?negotiateVersion=1 HTTP/1.1\r\n{HOST}",
        200,
        NEGOTIATED_V1,
    ),
    case(
        "negotiate-non-integer-version",
        f"POST {HUB}/negotiate?negotiateVersion=x HTTP/1.1\r\n{HOST}",
        200,
        {"error": Texts.NEGOTIATE_NON_INTEGER},
    ),
    case("negotiate-get", f"GET {HUB}/negotiate HTTP/1.1\r\n{HOST}", 405),
    case("unknown-path", f"POST /hubs/none/negotiate HTTP/1.1\r\n{HOST}", 404, b"Not Found"),
    case("encoded-slash", "POST /hubs%2Fnative/negotiate HTTP/1.1\r\n" + HOST, 404, b"Not Found"),
    case(
        "negotiate-private-anonymous",
        f"POST {PRIVATE}/negotiate HTTP/1.1\r\n{HOST}",
        401,
        challenge=CHALLENGE,
    ),
    case(
        "negotiate-private-expired",
        f"POST {PRIVATE}/negotiate HTTP/1.1\r\n{HOST}Authorization: Bearer {{token_expired}}\r\n",
        401,
        challenge=EXPIRED_CHALLENGE,
    ),
    # -- transport requests: identity, id, owner, transport
    case("put", f"PUT {HUB} HTTP/1.1\r\n{HOST}", 405),
    case(
        "post-without-id",
        f"POST {HUB} HTTP/1.1\r\n{HOST}",
        400,
        Texts.CONNECTION_ID_REQUIRED.encode(),
    ),
    case(
        "post-unknown-id",
        f"POST {HUB}?id=nope HTTP/1.1\r\n{HOST}",
        404,
        Texts.NO_CONNECTION.encode(),
    ),
    case(
        "post-unbound-id",
        f"POST {HUB}?id={{anonymous}} HTTP/1.1\r\n{HOST}",
        404,
        Texts.NO_CONNECTION.encode(),
    ),
    case(
        "post-another-users-id",
        f"POST {HUB}?id={{alice}} HTTP/1.1\r\n{HOST}Authorization: Bearer {{token_bob}}\r\n",
        403,
    ),
    case(
        "post-alices-id-anonymously",
        f"POST {HUB}?id={{alice}} HTTP/1.1\r\n{HOST}",
        401,
        challenge=CHALLENGE,
    ),
    case(
        "delete-unbound-id",
        f"DELETE {HUB}?id={{anonymous}} HTTP/1.1\r\n{HOST}",
        400,
        Texts.DELETE_NOT_ALLOWED.encode(),
    ),
    case(
        "get-without-id",
        f"GET {HUB} HTTP/1.1\r\n{HOST}",
        400,
        Texts.CONNECTION_ID_REQUIRED.encode(),
    ),
    case(
        "get-unknown-id", f"GET {HUB}?id=nope HTTP/1.1\r\n{HOST}", 404, Texts.NO_CONNECTION.encode()
    ),
    case(
        "get-another-users-id",
        f"GET {HUB}?id={{alice}} HTTP/1.1\r\n{HOST}Authorization: Bearer {{token_bob}}\r\n",
        403,
    ),
    # -- upgrades
    case(
        "upgrade-unknown-id",
        f"GET {HUB}?id=nope HTTP/1.1\r\n{HOST}{UPGRADE}",
        404,
        Texts.NO_CONNECTION.encode(),
    ),
    case(
        "upgrade-another-users-id",
        f"GET {HUB}?id={{alice}}&access_token={{token_bob}} HTTP/1.1\r\n{HOST}{UPGRADE}",
        403,
    ),
    case(
        "upgrade-alices-id-anonymously",
        f"GET {HUB}?id={{alice}} HTTP/1.1\r\n{HOST}{UPGRADE}",
        401,
        challenge=CHALLENGE,
    ),
    case(
        "upgrade-private-anonymous",
        f"GET {PRIVATE} HTTP/1.1\r\n{HOST}{UPGRADE}",
        401,
        challenge=CHALLENGE,
    ),
    case(
        "upgrade-on-negotiate",
        f"GET {HUB}/negotiate HTTP/1.1\r\n{HOST}{UPGRADE}",
        404,
        b"Not Found",
    ),
    case(
        "upgrade-bad-key",
        f"GET {HUB} HTTP/1.1\r\n{HOST}Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n",
        400,
    ),
    case(
        "upgrade-version-12",
        f"GET {HUB} HTTP/1.1\r\n{HOST}Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 12\r\n",
        400,
    ),
    case(
        "upgrade-http-1.0",
        f"GET {HUB} HTTP/1.0\r\n{HOST}{UPGRADE}",
        400,
    ),
    # -- HTTP itself (h11), and framing: nothing of these reaches a hub
    case("missing-host", f"GET {HUB} HTTP/1.1\r\n{UPGRADE}", 400),
    case(
        "two-hosts-spelled-apart",
        f"GET {HUB} HTTP/1.1\r\n{HOST}X-Other: 1\r\nhost: 127.0.0.1\r\n{UPGRADE}",
        400,
    ),
    case("two-hosts", f"GET {HUB} HTTP/1.1\r\n{HOST}Host: 127.0.0.2\r\n{UPGRADE}", 400),
    case("header-name-not-a-token", f"GET {HUB} HTTP/1.1\r\n{HOST}Bad(Name): 1\r\n{UPGRADE}", 400),
    case("space-before-colon", f"GET {HUB} HTTP/1.1\r\n{HOST}X-Name : 1\r\n{UPGRADE}", 400),
    case(
        "control-character-in-a-value", f"GET {HUB} HTTP/1.1\r\n{HOST}X-A: 1\x002\r\n{UPGRADE}", 400
    ),
    case("method-not-a-token", f"G(T {HUB} HTTP/1.1\r\n{HOST}{UPGRADE}", 400),
    case(
        "transfer-encoding-and-content-length",
        f"POST {HUB}/negotiate HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        400,
        BOTH_FRAMINGS,
        payload=b"0\r\n\r\n",
    ),
]


async def answer(port: int, request: Case, tokens: dict[str, str]) -> tuple[Any, ...]:
    """The (status, body, challenge) ``request`` gets on a fresh connection."""
    ids: dict[str, str] = {}
    for name, user in (("anonymous", None), ("alice", "alice")):
        wire = await Wire.connect(port)
        auth = (("Authorization", f"Bearer {tokens[user]}"),) if user else ()
        negotiate = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1", *auth)
        ids[name] = orjson.loads(negotiate.body)["connectionToken"]
        await wire.aclose()
    head = request.head.format(**ids, **{f"token_{user}": token for user, token in tokens.items()})
    wire = await Wire.connect(port)
    await wire.send(head.encode("latin-1") + b"\r\n" + request.payload)
    response = await wire.response()
    await wire.aclose()
    body: Any = response.body
    if response.header("content-type") == "application/json":
        body = orjson.loads(body)
        for key in ("connectionId", "connectionToken"):
            if key in body:
                assert ID.fullmatch(body[key]), body
                body[key] = "<id>"
    challenge = tuple(response.all("www-authenticate"))
    return response.status, body, challenge


@pytest.mark.parametrize("request_case", CASES)
async def test_both_servers_answer_exactly(
    start_native: StartNative, nursery: trio.Nursery, request_case: Case
) -> None:
    native = await start_native(authenticator=authenticator())
    _, asgi_port = await nursery.start(serve_hypercorn, SignalRApp(native.server), "127.0.0.1", 0)
    tokens = {
        "alice": token_for("alice"),
        "bob": token_for("bob"),
        "expired": sign(claims("alice", now=time.time() - 7200, lifetime=3600)),
    }
    expected = (request_case.status, request_case.body, request_case.challenge)
    for kind, port in (("native", native.port), ("hypercorn", asgi_port)):
        assert await answer(port, request_case, tokens) == expected, kind
    # Nothing reached a hub: no connection opened, none ended.
    await trio.sleep(0.05)
    assert native.server.live_connections == 0
    assert native.journal.ended == {}


async def test_a_post_over_the_limit_is_413_on_both_servers_and_delivers_nothing(
    start_native: StartNative, nursery: trio.Nursery
) -> None:
    native = await start_native(authenticator=authenticator())
    _, asgi_port = await nursery.start(serve_hypercorn, SignalRApp(native.server), "127.0.0.1", 0)
    for kind, port in (("native", native.port), ("hypercorn", asgi_port)):
        wire = await Wire.connect(port)
        negotiated = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1")
        target = f"{HUB}?id={orjson.loads(negotiated.body)['connectionToken']}"
        assert (await wire.request("GET", target)).status == 200, kind  # long polling now
        too_big = await wire.request("POST", target, body=b"{" * (POST_LIMIT + 1))
        assert (too_big.status, too_big.body) == (413, b"Request body too large"), kind
        if kind == "native":  # the rest of the body is unread: that connection ends
            assert too_big.header("connection") == "close"
        await wire.aclose()
        # Nothing of it reached the connection, which takes its handshake as the first record.
        wire = await Wire.connect(port)
        assert (await wire.request("POST", target, body=JSON_HANDSHAKE)).status == 200, kind
        assert (await wire.request("GET", target)).body == HANDSHAKE_OK, kind
        assert (await wire.request("DELETE", target)).status == 202, kind
        await wire.aclose()
