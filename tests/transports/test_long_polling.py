"""Long polling through ``SignalRApp``, byte for byte and on virtual time
(``signalr-protocol.md`` section 3.3, 3 table, 13 items 14-15)."""

from __future__ import annotations

import logging

import pytest
import trio
from trio.testing import MockClock

from .asgi_client import Response
from .support import (
    EVENT_STREAM,
    HANDSHAKE_OK,
    HUB,
    MSGPACK_HANDSHAKE,
    NO_CACHE,
    Harness,
    completion,
    invocation,
)


def _assert_poll(
    response: Response, status: int, body: bytes, *, first_or_data: bool = True
) -> None:
    """A long-poll GET answer: status, body, and the reference's headers
    (``application/octet-stream`` for the first poll and for data; the empty
    200 of a poll timeout and every 204 are ``text/plain``)."""
    assert (response.status, response.body) == (status, body), response
    assert response.header("content-length") == str(len(body))
    for name, value in NO_CACHE.items():
        assert response.header(name) == value, (name, response.headers)
    if status == 200 and (first_or_data or body):
        assert response.header("content-type") == "application/octet-stream"
    else:
        assert response.header("content-type") == "text/plain"


async def test_first_poll_handshake_and_invocations(
    harness: Harness, autojump_clock: MockClock
) -> None:
    body = await harness.negotiate()
    token, connection_id = body["connectionToken"], body["connectionId"]
    first = await harness.client.request("GET", HUB, query=f"id={token}&_=1")
    _assert_poll(first, 200, b"")
    assert first.header_names == [
        "cache-control",
        "content-length",
        "content-type",
        "expires",
        "pragma",
    ]

    post = await harness.client.request(
        "POST", HUB, query=f"id={token}", body=b'{"protocol":"json","version":1}\x1e'
    )
    assert (post.status, post.header("content-type"), post.body) == (200, "text/plain", b"")
    assert post.header("content-length") == "0"
    _assert_poll(
        await harness.client.request("GET", HUB, query=f"id={token}&_=2"), 200, HANDSHAKE_OK
    )
    assert connection_id in harness.journal.connected

    # Several records in one POST; the answers come back in one poll body.
    await harness.client.request(
        "POST",
        HUB,
        query=f"id={token}",
        body=invocation("Add", 1, 2, invocation_id="0")
        + invocation("Echo", "hi", invocation_id="1"),
    )
    answer = await harness.client.request("GET", HUB, query=f"id={token}&_=3")
    _assert_poll(answer, 200, completion("0", 3) + completion("1", "hi"))


async def test_an_empty_poll_is_held_exactly_90_seconds(
    harness: Harness, autojump_clock: MockClock
) -> None:
    poller = await harness.long_polling()
    started = trio.current_time()
    response = await poller.poll()
    assert trio.current_time() - started == pytest.approx(90.0)
    _assert_poll(response, 200, b"", first_or_data=False)
    # No ping on long polling: the held poll saw nothing at 15/30/45... s.
    # And the connection is still alive.
    await poller.post(invocation("Echo", "still", invocation_id="9"))
    _assert_poll(await poller.poll(), 200, completion("9", "still"))


async def test_data_ends_a_held_poll_at_once(harness: Harness, autojump_clock: MockClock) -> None:
    poller = await harness.long_polling()
    pending = poller.open_poll()
    await trio.sleep(30)
    started = trio.current_time()
    await harness.server.hub_context(HUB).clients.client(poller.connection_id).send("Note", 1)
    response = await pending.response()
    assert trio.current_time() == started
    _assert_poll(response, 200, b'{"type":1,"target":"Note","arguments":[1]}\x1e')


async def test_a_newer_poll_supersedes_the_older_with_204(
    harness: Harness, autojump_clock: MockClock
) -> None:
    poller = await harness.long_polling()
    older = poller.open_poll()
    await trio.sleep(1)
    newer = poller.open_poll()
    superseded = await older.response()
    _assert_poll(superseded, 204, b"")
    assert superseded.header("content-type") == "text/plain"  # as the reference
    # The newer poll is the one that gets the data.
    await poller.post(invocation("Echo", "x", invocation_id="1"))
    _assert_poll(await newer.response(), 200, completion("1", "x"))


async def test_delete_is_202_and_ends_the_pending_poll_with_204(
    harness: Harness, autojump_clock: MockClock
) -> None:
    poller = await harness.long_polling()
    pending = poller.open_poll()
    await trio.sleep(2)
    deleted = await poller.delete()
    assert (deleted.status, deleted.header("content-type"), deleted.body) == (
        202,
        "text/plain",
        b"",
    )
    _assert_poll(await pending.response(), 204, b"")
    await harness.journal.wait_disconnected(poller.connection_id)
    assert harness.app.connections.get(poller.token) is None
    assert await harness.router_counts() == (0, 0, 0)


async def test_the_js_stop_sequence_is_a_clean_end(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """The JS client stops with a Close record, aborts its poll, then DELETEs:
    the hub sees a clean disconnect (no error)."""
    poller = await harness.long_polling()
    pending = poller.open_poll()
    await trio.sleep(1)
    assert (await poller.post(b'{"type":7}\x1e')).status == 200
    pending.disconnect()
    assert (await poller.delete()).status in (202, 404)
    await harness.journal.wait_disconnected(poller.connection_id)
    assert harness.journal.disconnected[poller.connection_id][1] is None


async def test_a_poll_after_delete_is_404(harness: Harness, autojump_clock: MockClock) -> None:
    """The reference disposes and removes the connection on DELETE, so a later
    poll finds nothing (404; a poll racing the disposal gets 404 with an empty
    body). The server: ``_run_long_polling`` removes the token once the
    connection has ended."""
    poller = await harness.long_polling()
    assert (await poller.delete()).status == 202
    await harness.journal.wait_disconnected(poller.connection_id)
    await trio.sleep(0.1)
    after = await poller.poll()
    assert (after.status, after.body) == (404, b"No Connection with that ID")
    assert len(harness.app.connections) == 0


async def test_a_poll_racing_delete_is_204_or_404(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """A poll in the same instant as the DELETE: 204 (``connection finished``)
    if it comes before the ended connection is removed, else 404; never a held
    poll or data. (Which one depends on Trio's scheduling order. The reference
    marks the connection disposed at once and answers 404 with an empty body.)"""
    poller = await harness.long_polling()
    assert (await poller.delete()).status == 202
    response = await poller.poll()
    if response.status == 204:
        _assert_poll(response, 204, b"")
    else:
        assert (response.status, response.body) == (404, b"No Connection with that ID")


async def test_after_the_close_record_the_next_poll_is_204(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """The server ends a connection (the hub aborts it): the next poll carries
    the close record, and the one after it is answered 204 (connection
    finished), as the reference does: it keeps the ended connection until a
    poll has seen the end (``MarkInactive`` after a 200, 204 then dispose).
    """
    poller = await harness.long_polling()
    await harness.server.hub_context(HUB).clients.client(poller.connection_id).abort()
    _assert_poll(await poller.poll(), 200, b'{"type":7}\x1e')
    _assert_poll(await poller.poll(), 204, b"")


async def test_post_after_the_connection_is_gone_is_404(
    harness: Harness, autojump_clock: MockClock
) -> None:
    poller = await harness.long_polling()
    await poller.delete()
    await harness.journal.wait_disconnected(poller.connection_id)
    await trio.sleep(0.1)
    response = await poller.post(invocation("Echo", "late", invocation_id="1"))
    assert (response.status, response.body) == (404, b"No Connection with that ID")


async def test_post_before_the_first_poll_is_404(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """Nothing receives yet; the server answers 404 and the connection stays
    usable. (The reference buffers such a POST for the application, 200; no
    official client sends before its first poll or its open event stream.)"""
    token = (await harness.negotiate())["connectionToken"]
    early = await harness.client.request(
        "POST", HUB, query=f"id={token}", body=b'{"protocol":"json","version":1}\x1e'
    )
    assert early.status == 404
    first = await harness.client.request("GET", HUB, query=f"id={token}&_=1")
    _assert_poll(first, 200, b"")


async def test_a_post_cut_off_mid_body_is_dropped_without_harm(
    harness: Harness, caplog: pytest.LogCaptureFixture, autojump_clock: MockClock
) -> None:
    caplog.set_level(logging.WARNING)
    poller = await harness.long_polling()
    cut = harness.client.open(
        "POST", HUB, query=f"id={poller.token}", body=[b'{"target":"Echo","argu'], more=True
    )
    await trio.sleep(1)
    cut.disconnect()
    await cut.finished.wait()
    # Nobody to answer: the client is gone.
    assert cut.status is None
    # The half record never reached the hub: the next whole one parses.
    await poller.post(invocation("Echo", "whole", invocation_id="1"))
    _assert_poll(await poller.poll(), 200, completion("1", "whole"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_an_aborted_poll_is_not_an_error(harness: Harness, autojump_clock: MockClock) -> None:
    """A client that aborts a held poll (the JS client does so on stop) leaves a
    working connection; the abort restarts the idle count."""
    poller = await harness.long_polling()
    pending = poller.open_poll()
    await trio.sleep(10)
    pending.disconnect()
    await pending.finished.wait()
    # The app still writes an empty 200 to the departed client (a server drops
    # it; the reference writes nothing).
    assert [event["type"] for event in pending.events] in (
        [],
        ["http.response.start", "http.response.body"],
    )
    await trio.sleep(10)  # 20 s since the last poll began, 10 s since it ended
    await poller.post(invocation("Echo", "again", invocation_id="1"))
    _assert_poll(await poller.poll(), 200, completion("1", "again"))


async def test_transport_binding_is_fixed(harness: Harness, autojump_clock: MockClock) -> None:
    poller = await harness.long_polling()
    sse = await harness.client.request(
        "GET", HUB, query=f"id={poller.token}", headers=[EVENT_STREAM]
    )
    assert (sse.status, sse.header("content-type"), sse.body) == (
        400,
        "text/plain",
        b"Cannot change transports mid-connection",
    )
    socket = harness.client.websocket(HUB, query=f"id={poller.token}")
    await socket.closed.wait()
    assert not socket.accepted.is_set()
    assert (socket.rejection.status, socket.rejection.body) == (
        400,
        b"Cannot change transports mid-connection",
    )
    # Still a working long-polling connection.
    await poller.post(invocation("Echo", 1, invocation_id="1"))
    _assert_poll(await poller.poll(), 200, completion("1", 1))


async def test_messagepack_over_long_polling(harness: Harness, autojump_clock: MockClock) -> None:
    poller = await harness.long_polling(handshake=MSGPACK_HANDSHAKE)
    # Add(1,2) id "0" as the client writes it (vector 14), then a non-blocking Send.
    add = bytes.fromhex("0D 96 01 80 A1 30 A3 41 64 64 92 01 02 90")
    await harness.client.request(
        "POST",
        HUB,
        query=f"id={poller.token}",
        headers=[(b"content-type", b"application/octet-stream")],
        body=add,
    )
    response = await poller.poll()
    # Completion, result 3 (vector 14's "result 42" with 03).
    _assert_poll(response, 200, bytes.fromhex("07 95 03 80 A1 30 03 03"))
    # A broadcast from the hub: Receive("hi").
    await harness.server.hub_context(HUB).clients.all.send("Send", "hi")
    _assert_poll(
        await poller.poll(), 200, bytes.fromhex("0E 96 01 80 C0 A4 53 65 6E 64 91 A2 68 69 90")
    )
    # A record split across two POSTs is reassembled (varint framing).
    await poller.post(add[:5])
    await poller.post(add[5:])
    _assert_poll(await poller.poll(), 200, bytes.fromhex("07 95 03 80 A1 30 03 03"))
    # Server shutdown: the last poll carries Close(allowReconnect) = 04 93 07 C0 C3.
    pending = poller.open_poll()
    await trio.sleep(1)
    harness.server.stop()
    _assert_poll(await pending.response(), 200, bytes.fromhex("04 93 07 C0 C3"))
