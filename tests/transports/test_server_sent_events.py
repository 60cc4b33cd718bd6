"""Server-Sent Events through ``SignalRApp``, byte for byte and on virtual time
(``signalr-protocol.md`` sections 3.2, 3 table, 13 item 13)."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from .support import (
    CLOSE_RECONNECT,
    EVENT_STREAM,
    HANDSHAKE_OK,
    HUB,
    JSON_HANDSHAKE,
    MSGPACK_HANDSHAKE,
    PING,
    Harness,
    completion,
    invocation,
)

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache,no-store"),
    (b"pragma", b"no-cache"),
    (b"content-encoding", b"identity"),
]

VECTOR_13 = bytes.fromhex(
    "3A 0D 0A 64 61 74 61 3A 20 7B 7D 1E 0D 0A 0D 0A "
    "64 61 74 61 3A 20 7B 22 74 79 70 65 22 3A 36 7D 1E 0D 0A 0D 0A"
)


async def test_stream_headers_preamble_handshake_and_ping(
    harness: Harness, autojump_clock: MockClock
) -> None:
    token = (await harness.negotiate())["connectionToken"]
    stream = harness.client.open("GET", HUB, query=f"id={token}", headers=[EVENT_STREAM])
    await stream.started.wait()
    assert stream.status == 200
    assert [h for h in stream.headers if h[0] != b"x-accel-buffering"] == SSE_HEADERS
    assert not [h for h in stream.headers if h[0] == b"content-length"]
    # The comment is flushed at once, before anything else happens.
    assert await stream.read(3) == b":\r\n"
    await trio.sleep(1)
    assert stream.unread == b""

    post = await harness.client.request("POST", HUB, query=f"id={token}", body=JSON_HANDSHAKE)
    assert (post.status, post.header("content-type"), post.header("content-length")) == (
        200,
        "text/plain",
        "0",
    )
    assert post.body == b""
    assert await stream.read(13) == b"data: {}\x1e\r\n\r\n"
    handshake_at = trio.current_time()
    # Keep-alive after 15 s of send silence: the rest of vector 13.
    assert await stream.read(21) == b'data: {"type":6}\x1e\r\n\r\n'
    assert trio.current_time() - handshake_at == pytest.approx(15.0)
    assert bytes(stream.body) == VECTOR_13
    # Every body event keeps the response open.
    assert all(e.get("more_body") for e in stream.events if e["type"] == "http.response.body")


async def test_invocations_over_sse(harness: Harness, autojump_clock: MockClock) -> None:
    sse = await harness.sse()
    assert (await sse.post(invocation("Add", 1, 2, invocation_id="0"))).status == 200
    assert await sse.event() == completion("0", 3)
    # Two records in one POST: the answers arrive in order (one or two events).
    await sse.post(
        invocation("Echo", "a", invocation_id="1") + invocation("Void", invocation_id="2")
    )
    got = await sse.event()
    if got == completion("1", "a"):
        got += await sse.event()
    assert got == completion("1", "a") + b'{"type":3,"invocationId":"2","result":null}\x1e'
    # A record split across POSTs is reassembled.
    record = invocation("Echo", "split", invocation_id="3")
    await sse.post(record[:10])
    await sse.post(record[10:])
    assert await sse.event() == completion("3", "split")


async def test_a_second_event_stream_is_409(harness: Harness, autojump_clock: MockClock) -> None:
    sse = await harness.sse()
    second = await harness.client.request(
        "GET", HUB, query=f"id={sse.token}", headers=[EVENT_STREAM]
    )
    assert (second.status, second.header("content-type"), second.body) == (409, "text/plain", b"")
    # The first stream is untouched.
    await sse.post(invocation("Echo", 1, invocation_id="1"))
    assert await sse.event() == completion("1", 1)


async def test_long_poll_on_an_sse_connection_is_400(
    harness: Harness, autojump_clock: MockClock
) -> None:
    sse = await harness.sse()
    response = await harness.client.request("GET", HUB, query=f"id={sse.token}&_=1")
    assert (response.status, response.header("content-type"), response.body) == (
        400,
        "text/plain",
        b"Cannot change transports mid-connection",
    )
    assert response.header("content-length") == str(len(response.body))


async def test_delete_on_an_sse_connection_is_400(
    harness: Harness, autojump_clock: MockClock
) -> None:
    sse = await harness.sse()
    response = await harness.client.request("DELETE", HUB, query=f"id={sse.token}")
    assert (response.status, response.header("content-type"), response.body) == (
        400,
        "text/plain",
        b"Cannot terminate this connection using the DELETE endpoint.",
    )
    # Still connected.
    await sse.post(invocation("Echo", 2, invocation_id="1"))
    assert await sse.event() == completion("1", 2)


async def test_closing_the_event_source_ends_the_connection(
    harness: Harness, autojump_clock: MockClock
) -> None:
    sse = await harness.sse()
    assert await harness.router_counts() == (1, 0, 0)
    sse.stream.disconnect()
    await harness.journal.wait_disconnected(sse.connection_id)
    await sse.stream.finished.wait()
    assert harness.app.connections.get(sse.token) is None
    assert await harness.router_counts() == (0, 0, 0)
    assert harness.server.live_connections == 0
    late = await sse.post(invocation("Echo", 3, invocation_id="1"))
    assert (late.status, late.body) == (404, b"No Connection with that ID")
    again = await harness.client.request(
        "GET", HUB, query=f"id={sse.token}", headers=[EVENT_STREAM]
    )
    assert again.status == 404


async def test_messagepack_is_refused_over_sse(harness: Harness, autojump_clock: MockClock) -> None:
    token = (await harness.negotiate())["connectionToken"]
    stream = harness.client.open("GET", HUB, query=f"id={token}", headers=[EVENT_STREAM])
    assert await stream.read(3) == b":\r\n"
    await harness.client.request("POST", HUB, query=f"id={token}", body=MSGPACK_HANDSHAKE)
    await stream.complete.wait()
    assert stream.unread == (
        b'data: {"error":"Cannot use the \'messagepack\' protocol on the current transport. '
        b"The transport does not support 'Binary' transfer format.\"}\x1e\r\n\r\n"
    )
    await stream.finished.wait()
    assert harness.app.connections.get(token) is None


async def test_shutdown_sends_the_close_record_and_ends_the_stream(
    harness: Harness, autojump_clock: MockClock
) -> None:
    sse = await harness.sse()
    harness.server.stop()
    assert await sse.event() == CLOSE_RECONNECT
    await sse.stream.complete.wait()
    assert sse.stream.unread == b""
    assert sse.stream.events[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_handshake_reply_is_the_first_event(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """Records batched behind the handshake in one POST come after ``{}``."""
    token = (await harness.negotiate())["connectionToken"]
    stream = harness.client.open("GET", HUB, query=f"id={token}", headers=[EVENT_STREAM])
    assert await stream.read(3) == b":\r\n"
    await harness.client.request(
        "POST",
        HUB,
        query=f"id={token}",
        body=JSON_HANDSHAKE + invocation("Echo", "early", invocation_id="1"),
    )
    expected = b"data: " + HANDSHAKE_OK + b"\r\n\r\n"
    expected += b"data: " + completion("1", "early") + b"\r\n\r\n"
    # The reply is an event of its own, written before the hub sees the rest.
    assert await stream.read(len(expected)) == expected
    assert PING not in stream.body
