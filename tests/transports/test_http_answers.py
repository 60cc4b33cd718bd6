"""Negotiate and the common HTTP answers of the connect route, byte for byte
(``signalr-protocol.md`` sections 1, 2.2-2.3, 3 table, 13 items 4 and 15)."""

from __future__ import annotations

import re

import orjson
import pytest
from trio.testing import MockClock

from triohub import TransportType

from .conftest import MakeHarness
from .support import EVENT_STREAM, HUB, ID, Harness

WS = b'{"transport":"WebSockets","transferFormats":["Text","Binary"]}'
SSE = b'{"transport":"ServerSentEvents","transferFormats":["Text"]}'
LP = b'{"transport":"LongPolling","transferFormats":["Text","Binary"]}'
ALL_TRANSPORTS = b'"availableTransports":[' + WS + b"," + SSE + b"," + LP + b"]"

V1 = re.compile(
    rb'\{"negotiateVersion":1,"connectionId":"([A-Za-z0-9_-]{22})",'
    rb'"connectionToken":"([A-Za-z0-9_-]{22})",' + re.escape(ALL_TRANSPORTS) + rb"\}"
)
V0 = re.compile(
    rb'\{"negotiateVersion":0,"connectionId":"([A-Za-z0-9_-]{22})",'
    + re.escape(ALL_TRANSPORTS)
    + rb"\}"
)


def _plain(status: int, body: bytes) -> tuple[int, str | None, str | None, bytes]:
    return status, "text/plain", str(len(body)), body


# -- negotiate ------------------------------------------------------------------------


async def test_negotiate_v1_body_is_byte_exact(harness: Harness) -> None:
    response = await harness.client.request("POST", HUB + "/negotiate", query="negotiateVersion=1")
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.header("content-length") == str(len(response.body))
    match = V1.fullmatch(response.body)
    assert match, response.body
    connection_id, token = (group.decode() for group in match.groups())
    assert token != connection_id
    # The table is keyed by the token (MGR), not by the public id.
    assert harness.app.connections.get(token) is not None
    assert harness.app.connections.get(connection_id) is None
    id_as_token = await harness.client.request("GET", HUB, query=f"id={connection_id}")
    assert (id_as_token.status, id_as_token.body) == (404, b"No Connection with that ID")


async def test_every_negotiate_mints_fresh_ids(harness: Harness) -> None:
    seen: set[str] = set()
    for _ in range(20):
        body = await harness.negotiate()
        seen.update((body["connectionId"], body["connectionToken"]))
    assert len(seen) == 40
    assert all(ID.fullmatch(value) for value in seen)
    assert len(harness.app.connections) == 20


async def test_negotiate_v0_has_no_token_and_the_id_is_the_key(
    harness: Harness, autojump_clock: MockClock
) -> None:
    response = await harness.client.request("POST", HUB + "/negotiate")
    assert (response.status, response.header("content-type")) == (200, "application/json")
    assert response.header("content-length") == str(len(response.body))
    match = V0.fullmatch(response.body)
    assert match, response.body
    assert b"connectionToken" not in response.body
    connection_id = match.group(1).decode()
    # pysignalr / signalrcore send the connectionId as the id.
    first = await harness.client.request("GET", HUB, query=f"id={connection_id}&_=1")
    assert (first.status, first.body) == (200, b"")


@pytest.mark.parametrize(
    "query", ["NegotiateVersion=1", "negotiateversion=1", "negotiateVersion=7"]
)
async def test_negotiate_version_key_is_case_insensitive_and_clamped(
    harness: Harness, query: str
) -> None:
    response = await harness.client.request("POST", HUB + "/negotiate", query=query)
    assert V1.fullmatch(response.body), response.body


async def test_negotiate_non_integer_version_is_a_200_error(harness: Harness) -> None:
    response = await harness.client.request(
        "POST", HUB + "/negotiate", query="negotiateVersion=abc"
    )
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.body == b'{"error":"The client requested a non-integer protocol version."}'
    assert response.header("content-length") == str(len(response.body))
    assert len(harness.app.connections) == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
async def test_negotiate_accepts_only_post(harness: Harness, method: str) -> None:
    response = await harness.client.request(method, HUB + "/negotiate", query="negotiateVersion=1")
    assert (
        response.status,
        response.header("content-type"),
        response.header("content-length"),
        response.body,
    ) == _plain(405, b"")
    assert len(harness.app.connections) == 0


# -- the connect route ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS", "HEAD", "TRACE"])
async def test_other_methods_on_the_hub_path_are_405(harness: Harness, method: str) -> None:
    token = (await harness.negotiate())["connectionToken"]
    for query in ("", f"id={token}"):
        response = await harness.client.request(method, HUB, query=query)
        assert (
            response.status,
            response.header("content-type"),
            response.header("content-length"),
            response.body,
        ) == _plain(405, b"")
    # The refused requests did not bind or drop the connection.
    connection = harness.app.connections.get(token)
    assert connection is not None
    assert connection.transport is None


@pytest.mark.parametrize(
    ("method", "headers"),
    [("GET", []), ("GET", [EVENT_STREAM]), ("POST", []), ("DELETE", [])],
    ids=["long-poll", "sse", "post", "delete"],
)
@pytest.mark.parametrize("query", ["", "id=", "_=123", "ID=x"])
async def test_missing_id_is_400(
    harness: Harness, method: str, headers: list[tuple[bytes, bytes]], query: str
) -> None:
    response = await harness.client.request(method, HUB, query=query, headers=headers)
    assert (
        response.status,
        response.header("content-type"),
        response.header("content-length"),
        response.body,
    ) == _plain(400, b"Connection ID required")


@pytest.mark.parametrize(
    ("method", "headers"),
    [("GET", []), ("GET", [EVENT_STREAM]), ("POST", []), ("DELETE", [])],
    ids=["long-poll", "sse", "post", "delete"],
)
async def test_unknown_id_is_404(
    harness: Harness, method: str, headers: list[tuple[bytes, bytes]]
) -> None:
    response = await harness.client.request(
        method, HUB, query="id=bogus", headers=headers, body=b"{}\x1e"
    )
    assert (
        response.status,
        response.header("content-type"),
        response.header("content-length"),
        response.body,
    ) == _plain(404, b"No Connection with that ID")


async def test_a_token_of_another_hub_is_404(harness: Harness) -> None:
    token = (await harness.negotiate())["connectionToken"]
    other = await harness.client.request("GET", "/hubs/other", query=f"id={token}")
    assert (other.status, other.body) == (404, b"Not Found")


async def test_delete_on_an_unbound_connection_is_400(harness: Harness) -> None:
    token = (await harness.negotiate())["connectionToken"]
    response = await harness.client.request("DELETE", HUB, query=f"id={token}")
    assert (response.status, response.body) == (
        400,
        b"Cannot terminate this connection using the DELETE endpoint.",
    )


# -- transports disabled on a hub -------------------------------------------------------


ENTRY = {
    TransportType.WEBSOCKETS: WS,
    TransportType.SERVER_SENT_EVENTS: SSE,
    TransportType.LONG_POLLING: LP,
}


@pytest.mark.parametrize(
    "enabled",
    [
        {TransportType.LONG_POLLING},
        {TransportType.SERVER_SENT_EVENTS},
        {TransportType.WEBSOCKETS},
        {TransportType.LONG_POLLING, TransportType.WEBSOCKETS},
        {TransportType.SERVER_SENT_EVENTS, TransportType.LONG_POLLING},
    ],
    ids=lambda enabled: "+".join(sorted(t.value for t in enabled)),
)
async def test_disabled_transports_are_not_listed_and_refused(
    make_harness: MakeHarness, enabled: set[TransportType]
) -> None:
    harness = await make_harness(transports=frozenset(enabled))
    response = await harness.client.request("POST", HUB + "/negotiate", query="negotiateVersion=1")
    listed = b",".join(ENTRY[t] for t in TransportType if t in enabled)
    assert response.body.endswith(b'"availableTransports":[' + listed + b"]}"), response.body
    assert [t["transport"] for t in orjson.loads(response.body)["availableTransports"]] == [
        t.value for t in TransportType if t in enabled
    ]
    token = orjson.loads(response.body)["connectionToken"]
    disabled = set(TransportType) - enabled
    for transport in disabled:
        text = f"{transport.value} transport not supported by this end point type".encode()
        if transport is TransportType.WEBSOCKETS:
            socket = harness.client.websocket(HUB, query=f"id={token}")
            await socket.closed.wait()
            assert not socket.accepted.is_set()
            rejection = socket.rejection
            assert (rejection.status, rejection.header("content-type"), rejection.body) == (
                404,
                "text/plain",
                text,
            )
            # A server without the HTTP-response extension can only close.
            bare = harness.client.websocket(HUB, query=f"id={token}", http_response=False)
            await bare.closed.wait()
            assert (bare.accepted.is_set(), bare.close_code) == (False, 1008)
        else:
            headers = [EVENT_STREAM] if transport is TransportType.SERVER_SENT_EVENTS else []
            refused = await harness.client.request(
                "GET", HUB, query=f"id={token}&_=1", headers=headers
            )
            assert (
                refused.status,
                refused.header("content-type"),
                refused.header("content-length"),
                refused.body,
            ) == _plain(404, text)
    # Refusals bind nothing: the connection can still use an enabled transport.
    connection = harness.app.connections.get(token)
    assert connection is not None
    assert connection.transport is None


async def test_a_stopping_server_opens_no_new_connection(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """503 to negotiate, to the first poll and to a new event stream, as on every server
    (the endpoint decides it)."""
    sse_token = (await harness.negotiate())["connectionToken"]
    poll_token = (await harness.negotiate())["connectionToken"]
    harness.server.stop()
    stopping = (503, b"The server is shutting down")
    negotiate = await harness.client.request("POST", HUB + "/negotiate", query="negotiateVersion=1")
    assert (negotiate.status, negotiate.body) == stopping
    first_poll = await harness.client.request("GET", HUB, query=f"id={poll_token}")
    assert (first_poll.status, first_poll.body) == stopping
    stream = await harness.client.request(
        "GET", HUB, query=f"id={sse_token}", headers=[EVENT_STREAM]
    )
    assert (stream.status, stream.body) == stopping
