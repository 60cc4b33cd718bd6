"""Clients that misbehave on purpose, against triohub's own server (``serve_native``).

* the WebSocket reader (``NativeWebSocketTransport.receive``, on a socket pair) lets
  other tasks run during a flood of pings, empty fragments or big messages, and stops answering
  pings while 64 KiB of its answers wait unread;
* the HTTP server lets other tasks run between pipelined requests, drops a client
  that never reads its answers, refuses heads a proxy could read differently
  (a bare CR, NUL) and odd ``Content-Length`` values with a 400 (never a
  dropped connection and a traceback), takes absolute-form targets, and says
  whether the connection stays open (``Connection: close``). A bare LF ends a
  line, as RFC 9112 2.2 allows and h11 (hence hypercorn too) reads it;
* the listener accepts a storm of connections a batch at a time.

Real sockets; no wait longer than the server's (shortened) timeouts.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import orjson
import pytest
import trio

import triohub.transports.native as native_module
import triohub.transports.native_http as native_http
import triohub.transports.native_ws as native_ws_module
from triohub.transports.native_http import HttpWire
from triohub.transports.native_ws import NativeWebSocketTransport

from .native_fixtures import native_fixture, start_native_fixture  # noqa: F401
from .native_support import HUB, Native
from .native_wire import CONTINUATION, PING, TEXT, Wire, connect
from .support import Watch

YIELD_EVERY = 32  # pacing.YIELD_EVERY: frames or reads between real yields
YIELD_BYTES = 64 * 1024  # pacing.YIELD_BYTES: payload bytes between real yields
PONG_BACKLOG = 64 * 1024  # native_ws._PONG_BACKLOG

# -- the WebSocket reader on a socket pair ------------------------------------------


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """(server side, non-blocking, for the transport; the client's side)."""
    server, peer = socket.socketpair()
    server.setblocking(False)
    return server, peer


def close_pair(transport: NativeWebSocketTransport, server: socket.socket, peer: Any) -> None:
    # Not ``aclose``: its flush would wait for a peer that never reads.
    transport._closed = True
    server.close()
    peer.close()


async def receive_counting(transport: NativeWebSocketTransport) -> tuple[bytes | None, int]:
    """``transport.receive()``, and how often a sibling task ran meanwhile."""
    runs = 0

    async def sibling() -> None:
        nonlocal runs
        while True:
            runs += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sibling)
        before = runs
        with trio.fail_after(5):
            payload = await transport.receive()
        ran = runs - before
        nursery.cancel_scope.cancel()
    return payload, ran


async def assert_paced(flood: bytes, count: int, expected: bytes) -> None:
    """The transport, handed ``flood`` (``count`` frames that make no event, then a
    message) all at once, yields to other tasks on its way to ``expected``."""
    server, peer = socket_pair()
    transport = NativeWebSocketTransport(server)
    peer.sendall(flood)
    try:
        payload, ran = await receive_counting(transport)
        assert payload == expected
        assert ran >= count // YIELD_EVERY // 2, f"a sibling ran {ran} times in {count} frames"
    finally:
        close_pair(transport, server, peer)


async def test_a_ping_flood_lets_other_tasks_run() -> None:
    count = 2000
    # All in the kernel before receive starts: it never has to wait for data.
    flood = Wire.encode(PING, b"") * count + Wire.encode(TEXT, b"after the pings")
    await assert_paced(flood, count, b"after the pings")


async def test_an_empty_fragment_flood_lets_other_tasks_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Empty fragments make no event, so the reader paces per read: one frame per
    read here (the default 64 KiB read holds ~10,900 of them)."""
    frame = Wire.encode(CONTINUATION, b"", fin=False)
    monkeypatch.setattr(native_ws_module, "_RECEIVE_SIZE", len(frame))
    count = 2000
    flood = (
        Wire.encode(TEXT, b"", fin=False) + frame * count + Wire.encode(CONTINUATION, b"the end")
    )
    await assert_paced(flood, count, b"the end")


async def test_a_pipeline_of_big_messages_lets_other_tasks_run_by_bytes() -> None:
    """8 KB messages sent back to back (the soak's ``pipeline-8k``): the reader
    yields after 64 KiB of them, not after 32 messages (256 KB to parse and
    dispatch in one step)."""
    server, peer = socket_pair()
    transport = NativeWebSocketTransport(server)
    size = 8 * 1024
    count = 128
    returned = Watch()
    client = trio.SocketStream(trio.socket.from_stdlib_socket(peer))
    flood = b"".join(Wire.encode(TEXT, b"%06d" % n + b"p" * (size - 6)) for n in range(count))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, flood)
            nursery.start_soon(returned.run)
            with trio.fail_after(5):
                for n in range(count):
                    payload = await transport.receive()
                    assert payload is not None
                    assert payload[:6] == b"%06d" % n
                    returned.done += 1
            nursery.cancel_scope.cancel()
        # A slice is 64 KiB; two slices may fall between two runs of the other
        # task (its place in a scheduler batch varies), never more.
        worst = returned.worst
        assert 0 < worst <= 2 * (YIELD_BYTES // size), f"{worst} messages between two runs"
    finally:
        close_pair(transport, server, peer)


async def test_pongs_to_a_client_that_does_not_read_stay_bounded() -> None:
    server, peer = socket_pair()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport = NativeWebSocketTransport(server)
    count = 5000
    flood = b"".join(Wire.encode(PING, bytes([n % 256]) * 125) for n in range(count))
    client = trio.SocketStream(trio.socket.from_stdlib_socket(peer))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, flood + Wire.encode(TEXT, b"done"))
            with trio.fail_after(5):
                assert await transport.receive() == b"done"
        assert len(transport._out) <= PONG_BACKLOG + 200, len(transport._out)
    finally:
        close_pair(transport, server, peer)


# -- HTTP: pipelining and clients that do not read -----------------------------------


async def test_pipelined_requests_take_turns_with_other_tasks(
    native: Native, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One write of 3,000 requests: between two runs of a sibling task the
    server answers a request or two, never a whole read's worth."""
    answered = Watch()
    respond = HttpWire.respond

    async def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        answered.done += 1
        await respond(self, *args, **kwargs)

    monkeypatch.setattr(HttpWire, "respond", counted)

    count = 3000
    wire = await connect(native)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(answered.run)
        nursery.start_soon(wire.send, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" * count)
        statuses = [(await wire.response()).status for _ in range(count)]
        nursery.cancel_scope.cancel()
    assert statuses == [404] * count
    assert answered.done == count
    assert answered.worst <= 4, (
        f"{answered.worst} answers in a row without letting another task run"
    )
    # The connection is still usable.
    assert (await wire.request("POST", f"{HUB}/negotiate")).status == 200


async def test_a_connection_storm_is_accepted_between_other_tasks(
    native: Native, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 connections waiting in the backlog at once (a reconnect storm): the
    listener accepts at most ``ACCEPT_BATCH`` of them per step, not the backlog."""
    accepted = Watch()

    class Counted(native_module._Connection):
        def __init__(self, *args: Any) -> None:
            accepted.done += 1
            super().__init__(*args)

    monkeypatch.setattr(native_module, "_Connection", Counted)
    count = 300
    clients = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accepted.run)
            await trio.lowlevel.checkpoint()
            for _ in range(count):  # no checkpoint: all of them queue in the backlog
                clients.append(socket.create_connection(("127.0.0.1", native.port)))
            with trio.fail_after(5):
                while accepted.done < count:
                    await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
    finally:
        for client in clients:
            client.close()
    # Two batches may fall between two runs of the other task, never more.
    assert 0 < accepted.worst <= 2 * native_module.ACCEPT_BATCH, accepted.worst


async def test_a_client_that_never_reads_its_answers_is_dropped(
    native: Native, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native_http, "REQUEST_TIMEOUT", 0.5)
    monkeypatch.setattr(native_module, "REQUEST_TIMEOUT", 0.5)
    wire = await Wire.connect(native.port, receive_buffer=4096)
    batch = Wire.format("POST", f"{HUB}/negotiate?negotiateVersion=1") * 100
    with trio.fail_after(10):
        # The answers fill both buffers (the server's send buffer grows to ~1.5 MB
        # on loopback: ~1 s of requests), the server stops reading, our writes
        # block, until the server gives up on us (EPIPE / reset).
        with pytest.raises(trio.BrokenResourceError):  # noqa: PT012
            while True:
                await wire.send(batch)
        await wire.closed(limit=2)
    # The server goes on serving others.
    other = await connect(native)
    assert (await other.request("POST", f"{HUB}/negotiate")).status == 200


# -- HTTP: heads and Content-Length values refused with a 400 ------------------------

NEGOTIATE = f"POST {HUB}/negotiate HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()


@pytest.mark.parametrize(
    "head",
    [
        NEGOTIATE + b"X: a\rContent-Length: 5\r\n\r\nGET /",
        NEGOTIATE + b"X-A\x00: 1\r\n\r\n",
        NEGOTIATE + b"X-A: 1\x002\r\n\r\n",
        NEGOTIATE + b"Content-Length: \xb2\r\n\r\n",  # "²": str.isdigit() says yes
        NEGOTIATE + b"Content-Length: 1\xb3\r\n\r\n",  # "1³"
        NEGOTIATE + b"Content-Length: " + b"0" * 5000 + b"\r\n\r\n",  # over int()'s 4300
        NEGOTIATE + b"Content-Length: +1\r\n\r\nx",
        NEGOTIATE + b"Content-Length: -1\r\n\r\n",
    ],
    ids=[
        "bare-cr",
        "nul-in-name",
        "nul-in-value",
        "superscript-length",
        "digit-and-superscript-length",
        "5000-digit-length",
        "signed-length",
        "negative-length",
    ],
)
async def test_a_suspicious_head_is_400_and_nothing_is_logged_as_an_error(
    native: Native, caplog: pytest.LogCaptureFixture, head: bytes
) -> None:
    caplog.set_level(logging.INFO)
    wire = await connect(native)
    await wire.send(head)
    response = await wire.response()
    assert response.status == 400
    assert response.header("connection") == "close"
    assert await wire.closed() == b""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


async def test_an_absolute_form_target_is_served(native: Native) -> None:
    wire = await connect(native)
    target = f"http://127.0.0.1:{native.port}{HUB}/negotiate?negotiateVersion=1"
    response = await wire.request("POST", target)
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert orjson.loads(response.body)["negotiateVersion"] == 1
    # And on the same connection, an unknown path in absolute form is a 404.
    missing = await wire.request("GET", f"http://127.0.0.1:{native.port}/missing")
    assert (missing.status, missing.body) == (404, b"Not Found")


# -- HTTP: whether the connection stays open is said in the answer -----------------


@pytest.mark.parametrize("target", [f"{HUB}/negotiate", "/missing"])
async def test_connection_close_is_echoed_and_the_connection_ends(
    native: Native, target: str
) -> None:
    wire = await connect(native)
    response = await wire.request("POST", target, ("Connection", "close"))
    assert response.status in (200, 404)
    assert response.header("connection") == "close"
    assert await wire.closed() == b""
    # An HTTP/1.1 answer to a request that keeps the connection says nothing.
    kept = await connect(native)
    response = await kept.request("POST", target)
    assert response.header("connection") is None
