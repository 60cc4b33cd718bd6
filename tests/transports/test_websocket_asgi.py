"""WebSockets through ``SignalRApp``'s ASGI websocket scope, and the HTTP answers
about WebSocket connections (``signalr-protocol.md`` sections 3 table, 3.1, 13.15)."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from .asgi_client import WebSocketExchange
from .support import (
    EVENT_STREAM,
    HANDSHAKE_OK,
    HUB,
    JSON_HANDSHAKE,
    MSGPACK_HANDSHAKE,
    Harness,
    completion,
    invocation,
)


async def _open(
    harness: Harness, token: str, handshake: bytes = JSON_HANDSHAKE
) -> WebSocketExchange:
    socket = harness.client.websocket(HUB, query=f"id={token}")
    await socket.accepted.wait()
    assert socket.scope["subprotocols"] == []
    assert socket.events[0] == {"type": "websocket.accept"}  # no subprotocol chosen
    socket.send_text(handshake.decode())
    return socket


async def test_post_on_a_websocket_connection_is_405(
    harness: Harness, autojump_clock: MockClock
) -> None:
    body = await harness.negotiate()
    token, connection_id = body["connectionToken"], body["connectionId"]
    socket = await _open(harness, token)
    assert await socket.frame() == HANDSHAKE_OK.decode()
    response = await harness.client.request(
        "POST", HUB, query=f"id={token}", body=invocation("Echo", 1, invocation_id="1")
    )
    assert (
        response.status,
        response.header("content-type"),
        response.header("content-length"),
        response.body,
    ) == (405, "text/plain", "56", b"POST requests are not allowed for WebSocket connections.")
    # The refused POST reached nobody; the socket works on.
    socket.send_text(invocation("Echo", "ws", invocation_id="2").decode())
    assert await socket.frame() == completion("2", "ws").decode()

    # The other HTTP requests about a WebSocket connection.
    poll = await harness.client.request("GET", HUB, query=f"id={token}&_=1")
    assert (poll.status, poll.body) == (400, b"Cannot change transports mid-connection")
    sse = await harness.client.request("GET", HUB, query=f"id={token}", headers=[EVENT_STREAM])
    assert (sse.status, sse.body) == (400, b"Cannot change transports mid-connection")
    delete = await harness.client.request("DELETE", HUB, query=f"id={token}")
    assert (delete.status, delete.body) == (
        400,
        b"Cannot terminate this connection using the DELETE endpoint.",
    )
    second = harness.client.websocket(HUB, query=f"id={token}")
    await second.closed.wait()
    assert (second.rejection.status, second.rejection.body) == (409, b"")

    socket.disconnect()
    await harness.journal.wait_disconnected(connection_id)
    await socket.finished.wait()
    assert harness.app.connections.get(token) is None
    assert await harness.router_counts() == (0, 0, 0)
    gone = await harness.client.request("POST", HUB, query=f"id={token}", body=b"x")
    assert (gone.status, gone.body) == (404, b"No Connection with that ID")


async def test_websocket_refusals(harness: Harness, autojump_clock: MockClock) -> None:
    bogus = harness.client.websocket(HUB, query="id=bogus")
    await bogus.closed.wait()
    assert not bogus.accepted.is_set()
    assert (
        bogus.rejection.status,
        bogus.rejection.header("content-type"),
        bogus.rejection.body,
    ) == (
        404,
        "text/plain",
        b"No Connection with that ID",
    )
    on_negotiate = harness.client.websocket(HUB + "/negotiate")
    await on_negotiate.closed.wait()
    assert on_negotiate.rejection.status == 404
    elsewhere = harness.client.websocket("/nowhere")
    await elsewhere.closed.wait()
    assert elsewhere.rejection.status == 404


async def test_skip_negotiation_creates_the_connection_on_upgrade(
    harness: Harness, autojump_clock: MockClock
) -> None:
    socket = harness.client.websocket(HUB)
    await socket.accepted.wait()
    socket.send_text(JSON_HANDSHAKE.decode() + invocation("Add", 2, 3, invocation_id="0").decode())
    frames = [await socket.frame()]
    if frames[0] == HANDSHAKE_OK.decode():
        frames.append(await socket.frame())
    assert "".join(str(f) for f in frames) == (HANDSHAKE_OK + completion("0", 5)).decode()
    assert len(harness.app.connections) == 0  # nothing negotiated, nothing in the table
    socket.disconnect()
    await socket.finished.wait()


async def test_messagepack_travels_in_binary_frames(
    harness: Harness, autojump_clock: MockClock
) -> None:
    token = (await harness.negotiate())["connectionToken"]
    socket = await _open(harness, token, MSGPACK_HANDSHAKE)
    assert await socket.frame() == HANDSHAKE_OK  # bytes: a Binary frame
    socket.send_bytes(bytes.fromhex("0D 96 01 80 A1 30 A3 41 64 64 92 01 02 90"))
    assert await socket.frame() == bytes.fromhex("07 95 03 80 A1 30 03 03")
    harness.server.stop()
    assert await socket.frame() == bytes.fromhex("04 93 07 C0 C3")
    await socket.closed.wait()
    assert socket.close_code == 1000


async def test_a_websocket_client_that_stopped_reading_is_dropped_and_the_hub_told(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """As for SSE (``test_lifetimes``): a frame stuck on a socket nobody reads
    ends the connection after ``send_timeout``, and ``on_disconnected`` must run."""
    body = await harness.negotiate()
    socket = await _open(harness, body["connectionToken"])
    assert await socket.frame() == HANDSHAKE_OK.decode()
    socket.stall()
    socket.send_text(invocation("Echo", "stuck", invocation_id="1").decode())
    await trio.sleep(20.5)  # send_timeout + 2 x close_timeout
    assert harness.server.live_connections == 0
    after = (await harness.router_counts(), body["connectionId"] in harness.journal.disconnected)
    assert after == ((0, 0, 0), True), "router entry leaked; on_disconnected never ran"
