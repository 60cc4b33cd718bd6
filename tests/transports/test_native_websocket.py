"""The WebSocket side of triohub's own server (``serve_native``) on a real socket.

Raw Trio sockets send hand-made RFC 6455 frames and read the exact frames back: pings
and pongs, the close handshake and the close codes of protocol violations (1002,
1007) and oversized messages (1009, or the hub's error record under twice the limit),
fragments and frames split or batched across writes, JSON as text and MessagePack as
binary frames, the close record when a credential expires, slow consumers dropped
without holding up the others and partial writes flushed in order, and the server's
shutdown (close records, close frames, no new connections, the listener's end).

Real time throughout (real sockets); the waits are short.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

import msgpack
import orjson
import pytest
import trio

from triohub import HubOptions
from triohub.protocol import Texts
from triohub.transports.native_ws import NativeWebSocketTransport

from ..auth.support import claims, sign
from .native_fixtures import native_fixture, start_native_fixture  # noqa: F401
from .native_support import HUB, PRIVATE, Native, StartNative, authenticator
from .native_wire import (
    BINARY,
    CLOSE,
    CLOSE_ERROR,
    CLOSE_EXPIRED,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Frame,
    Wire,
    close_payload,
    connect,
    invocation,
    new_key,
)
from .support import CLOSE_RECONNECT as CLOSE_SHUTDOWN
from .support import HANDSHAKE_OK, JSON_HANDSHAKE, MSGPACK_HANDSHAKE

# -- a spy on the flush path (partial writes) ---------------------------------------


class WakerSpy:
    """Counts the transports' flush requests (bytes the kernel did not take at once)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        attach = NativeWebSocketTransport.attach

        def spying_attach(transport: NativeWebSocketTransport, waker: Callable[[], None]) -> None:
            def counted() -> None:
                self.calls += 1
                waker()

            attach(transport, counted)

        monkeypatch.setattr(NativeWebSocketTransport, "attach", spying_attach)


# -- 1. WebSocket framing -----------------------------------------------------------
# Frames are made by hand (``Wire.encode``), masked as a client must unless a test
# says otherwise; the server's frames are read back byte for byte.


async def test_ping_gets_a_pong_with_the_same_payload(native: Native) -> None:
    wire = await connect(native)
    await wire.hub_open()
    await wire.send_frame(PING, b"are you there?")
    assert await wire.frame() == Frame(True, PONG, b"are you there?")
    await wire.send_frame(PING, b"")
    assert await wire.frame() == Frame(True, PONG, b"")
    # An unsolicited pong is ignored.
    await wire.send_frame(PONG, b"whatever")
    await wire.send_frame(TEXT, invocation("1", "Echo", "still here"))
    assert (await wire.record())["result"] == "still here"


async def test_unmasked_frame_is_closed_with_1002(native: Native) -> None:
    wire = await connect(native)
    await wire.hub_open()
    await wire.send_frame(TEXT, invocation("1", "Echo", 1), mask=False)
    assert await wire.frame() == Frame(True, CLOSE, close_payload(1002))
    assert await wire.closed() == b""


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (Wire.encode(0x3, b"x"), 1002),  # a reserved opcode
        (Wire.encode(CONTINUATION, b"x"), 1002),  # nothing to continue
        (Wire.encode(PING, b"x", fin=False), 1002),  # a fragmented control frame
        (bytes((0xC1,)) + Wire.encode(TEXT, b"x")[1:], 1002),  # RSV1 set
        (Wire.encode(TEXT, b"\xff\xfe"), 1007),  # text that is not UTF-8
    ],
    ids=["opcode-3", "lone-continuation", "fragmented-ping", "rsv1", "bad-utf8"],
)
async def test_protocol_violations_close_with_their_code(
    native: Native, frame: bytes, code: int
) -> None:
    wire = await connect(native)
    await wire.hub_open()
    await wire.send(frame)
    assert await wire.frame() == Frame(True, CLOSE, close_payload(code))
    assert await wire.closed() == b""


async def test_client_close_is_echoed(native: Native) -> None:
    wire = await connect(native)
    await wire.hub_open()
    await wire.send_frame(CLOSE, close_payload(1000) + b"bye")
    assert await wire.frame() == Frame(True, CLOSE, close_payload(1000))
    assert await wire.closed() == b""
    # A close without a code is answered with 1000 (1005 is never sent).
    bare = await connect(native)
    await bare.hub_open()
    await bare.send_frame(CLOSE, b"")
    assert await bare.frame() == Frame(True, CLOSE, close_payload(1000))
    assert await bare.closed() == b""


async def test_close_before_the_handshake_is_echoed(native: Native) -> None:
    wire = await connect(native)
    assert (await wire.upgrade(HUB)).status == 101
    await wire.send_frame(CLOSE, close_payload(1001))
    assert await wire.frame() == Frame(True, CLOSE, close_payload(1001))
    assert await wire.closed() == b""


async def test_message_over_twice_the_hub_limit_closes_with_1009(
    start_native: StartNative,
) -> None:
    native = await start_native(options=HubOptions(max_message_size=40_000))
    wire = await connect(native)
    await wire.hub_open()
    # Refused from the frame header: the payload need not arrive.
    await wire.send(Wire.encode(TEXT, b"x" * 80_001)[:14])
    assert await wire.frame() == Frame(True, CLOSE, close_payload(1009))
    assert await wire.closed() == b""
    # Fragments count together.
    fragmented = await connect(native)
    await fragmented.hub_open()
    await fragmented.send_frame(TEXT, b"[" + b"1," * 25_000, fin=False)
    await fragmented.send_frame(CONTINUATION, b"1," * 20_000, fin=False)
    assert await fragmented.frame() == Frame(True, CLOSE, close_payload(1009))
    assert await fragmented.closed() == b""


async def test_message_between_the_limit_and_twice_it_gets_the_hub_error(
    start_native: StartNative,
) -> None:
    native = await start_native(options=HubOptions(max_message_size=40_000))
    wire = await connect(native)
    await wire.hub_open()
    await wire.send_frame(TEXT, invocation("1", "Echo", "y" * 50_000))
    assert await wire.frame() == Frame(True, TEXT, CLOSE_ERROR)
    assert await wire.frame() == Frame(True, CLOSE, close_payload(1000))
    assert await wire.closed() == b""


async def test_messagepack_frames_are_binary_and_json_text(native: Native) -> None:
    wire = await connect(native)
    assert (await wire.upgrade(HUB)).status == 101
    await wire.send_frame(TEXT, MSGPACK_HANDSHAKE)
    # The handshake answer already travels as the protocol's frame type.
    assert await wire.frame() == Frame(True, BINARY, HANDSHAKE_OK)
    body = msgpack.packb([1, {}, "1", "Add", [2, 3], []])
    await wire.send_frame(BINARY, bytes((len(body),)) + body)
    frame = await wire.frame()
    assert frame.opcode == BINARY
    assert frame.payload[0] == len(frame.payload) - 1
    assert msgpack.unpackb(frame.payload[1:]) == [3, {}, "1", 3, 5]
    json_wire = await connect(native)
    await json_wire.hub_open()
    await json_wire.send_frame(TEXT, invocation("1", "Add", 2, 3))
    assert (await json_wire.frame()).opcode == TEXT


async def test_fragmented_message_is_reassembled(native: Native) -> None:
    wire = await connect(native)
    assert (await wire.upgrade(HUB)).status == 101
    # The handshake itself in three fragments.
    await wire.send_frame(TEXT, JSON_HANDSHAKE[:5], fin=False)
    await wire.send_frame(CONTINUATION, JSON_HANDSHAKE[5:20], fin=False)
    await wire.send_frame(CONTINUATION, JSON_HANDSHAKE[20:])
    assert await wire.frame() == Frame(True, TEXT, HANDSHAKE_OK)
    message = invocation("2", "Echo", "é" * 100)
    split = message.index("é".encode()) + 1  # inside a UTF-8 sequence
    await wire.send_frame(TEXT, message[:split], fin=False)
    await wire.send_frame(PING, b"between")  # control frames may interleave
    await wire.send_frame(CONTINUATION, message[split:])
    assert await wire.frame() == Frame(True, PONG, b"between")
    record = await wire.record()
    assert record == {"type": 3, "invocationId": "2", "result": "é" * 100}


async def test_frames_split_across_writes_and_batched_in_one(native: Native) -> None:
    wire = await connect(native)
    await wire.hub_open()
    data = Wire.encode(TEXT, invocation("1", "Echo", "a")) + Wire.encode(
        TEXT, invocation("2", "Echo", "b")
    )
    for index in range(0, len(data), 3):
        await wire.send(data[index : index + 3])
        await trio.lowlevel.checkpoint()
    batched = b"".join(Wire.encode(TEXT, invocation(str(n), "Echo", n)) for n in range(3, 13))
    await wire.send(batched)
    results = [await wire.record() for _ in range(12)]
    assert [r["invocationId"] for r in results] == [str(n) for n in range(1, 13)]
    assert [r["result"] for r in results] == ["a", "b", *range(3, 13)]


# -- 2. credential expiry -----------------------------------------------------------


async def test_expired_credential_closes_with_the_close_record(
    start_native: StartNative,
) -> None:
    native = await start_native(
        authenticator=authenticator(),
        options=HubOptions(close_on_authentication_expiration=True),
    )
    token = sign({**claims("alice"), "exp": time.time() + 1.0})
    wire = await connect(native)
    await wire.hub_open(f"{PRIVATE}?access_token={token}")
    await wire.send_frame(TEXT, invocation("1", "WhoAmI"))
    assert (await wire.record())["result"]["userId"] == "alice"
    started = trio.current_time()
    assert await wire.frame(limit=3) == Frame(True, TEXT, CLOSE_EXPIRED)
    assert trio.current_time() - started < 2.0
    assert orjson.loads(CLOSE_EXPIRED[:-1]) == {
        "type": 7,
        "error": Texts.AUTHENTICATION_EXPIRED,
        "allowReconnect": True,
    }
    assert await wire.frame() == Frame(True, CLOSE, close_payload(1000))
    await wire.close_handshake()
    assert await wire.closed() == b""


# -- 3. slow consumers and partial writes -------------------------------------------


# ``Blast`` queues its whole burst at once (7.5 MB, 12 MB): past the default
# ``outbox_max_bytes`` (1 MiB) that is a slow consumer, so these ordering tests
# give the outbox room for the burst.
BURST_ROOM = HubOptions(outbox_max_bytes=16 * 1024 * 1024)


async def test_a_fast_client_gets_every_large_message_in_order(
    start_native: StartNative, monkeypatch: pytest.MonkeyPatch
) -> None:
    native = await start_native(options=BURST_ROOM)
    spy = WakerSpy(monkeypatch)
    wire = await Wire.connect(native.port, receive_buffer=16 * 1024)
    await wire.hub_open()
    count, size = 120, 64 * 1024
    await wire.send_frame(TEXT, invocation("1", "Blast", count, size))
    payload = "x" * size
    for index in range(count):
        record = await wire.record()
        assert record == {"type": 1, "target": "Blob", "arguments": [index, payload]}
    assert await wire.record() == {"type": 3, "invocationId": "1", "result": count}
    assert spy.calls > 0, "no write was ever partial: the flush path went untested"
    # The connection works on.
    await wire.send_frame(PING, b"after")
    assert await wire.frame() == Frame(True, PONG, b"after")


def _read_blobs_blocking(port: int, count: int, size: int) -> list[int]:
    """A client in another thread, on a plain blocking socket with a small
    receive buffer: it reads as fast as it can, which is slower than the server
    writes, so the server's writes block now and then."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
        sock.settimeout(20)
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            f"GET {HUB} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {new_key()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        stream = sock.makefile("rb")
        while stream.readline() not in (b"\r\n", b""):
            pass
        sock.sendall(Wire.encode(TEXT, JSON_HANDSHAKE))
        sock.sendall(Wire.encode(TEXT, invocation("1", "Blast", count, size)))
        received: list[int] = []
        pending = b""
        while True:
            header = stream.read(2)
            length = header[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", stream.read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", stream.read(8))[0]
            pending += stream.read(length)
            *records, pending = pending.split(b"\x1e")
            for raw in records:
                record = orjson.loads(raw)
                if record.get("type") == 3:
                    return received
                if record.get("type") == 1:
                    received.append(record["arguments"][0])


async def test_a_slow_reader_gets_every_broadcast_in_order(start_native: StartNative) -> None:
    """Bursts that make the writer block now and then: a record written straight
    to the socket must never overtake the ones the writer still holds."""
    native = await start_native(options=BURST_ROOM)
    count, size = 400, 30_000
    with trio.fail_after(30):
        received = await trio.to_thread.run_sync(_read_blobs_blocking, native.port, count, size)
    assert received == list(range(count))


async def test_slow_consumer_is_closed_without_holding_up_the_others(
    start_native: StartNative,
) -> None:
    native = await start_native(
        options=HubOptions(outbox_size=8, send_timeout=0.5, close_timeout=0.5)
    )
    slow = await Wire.connect(native.port, receive_buffer=4096)
    await slow.hub_open()
    await slow.send_frame(TEXT, invocation("1", "WhoAmI"))
    slow_id = (await slow.record())["result"]["connectionId"]
    fast = await connect(native)
    await fast.hub_open()
    await fast.send_frame(TEXT, invocation("1", "WhoAmI"))
    fast_id = (await fast.record())["result"]["connectionId"]

    clients = native.server.hub_context(HUB).clients
    count, size = 200, 64 * 1024
    payload = "x" * size
    received: list[int] = []

    async def read_fast() -> None:
        while len(received) < count:
            record = await fast.record()
            assert record["target"] == "Blob"
            assert record["arguments"][1] == payload
            received.append(record["arguments"][0])

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_fast)
            for index in range(count):
                await clients.all.send("Blob", index, payload)
                await trio.sleep(0.002)
    assert received == list(range(count))
    with trio.fail_after(5):
        reason = await native.journal.wait_ended(slow_id)
    assert reason == "slow consumer"
    assert fast_id not in native.journal.ended
    # Dropped by the router for its full outbox (not by the writer's send timeout).
    assert (await native.server.stats(HUB)).slow_consumers == 1
    # The slow client's socket is closed: what it finally reads ends.
    tail = await slow.closed(limit=5)
    assert len(tail) < count * size
    # The fast client and the server carry on.
    await fast.send_frame(TEXT, invocation("2", "Echo", "alive"))
    assert (await fast.record())["result"] == "alive"
    late = await connect(native)
    await late.hub_open()
    assert (await native.server.stats(HUB)).connections == 2


# -- 4. shutdown --------------------------------------------------------------------


async def test_stop_sends_the_close_record_and_the_close_frame(native: Native) -> None:
    first, second = await connect(native), await connect(native)
    await first.hub_open()
    await second.hub_open()
    native.server.stop()
    for wire in (first, second):
        assert await wire.record() == orjson.loads(CLOSE_SHUTDOWN[:-1])
        assert await wire.frame() == Frame(True, CLOSE, close_payload(1000))
        await wire.close_handshake()
        assert await wire.closed() == b""
    with trio.fail_after(1):
        await native.server.wait_stopped()


async def test_a_stopping_server_takes_no_new_hub_connection(native: Native) -> None:
    connected = await connect(native)
    await connected.hub_open()
    native.server.stop()
    assert await connected.record() == orjson.loads(CLOSE_SHUTDOWN[:-1])
    wire = await connect(native)
    response = await wire.upgrade(HUB)
    if response.status == 101:
        await wire.send_frame(TEXT, JSON_HANDSHAKE)
        frame = await wire.frame()
        assert frame == Frame(True, CLOSE, close_payload(1000)), "a hub connection was opened"
    else:
        assert response.status >= 400


async def test_cancelling_the_listener_stops_accepting(native: Native) -> None:
    wire = await connect(native)
    await wire.hub_open()
    native.server.stop()
    assert await wire.record() == orjson.loads(CLOSE_SHUTDOWN[:-1])
    assert await wire.frame() == Frame(True, CLOSE, close_payload(1000))
    await wire.close_handshake()
    with trio.fail_after(1):
        await native.server.wait_stopped()
    native.listener.cancel()
    await trio.sleep(0.05)
    with pytest.raises(OSError, match="all attempts to connect"):
        await trio.open_tcp_stream("127.0.0.1", native.port)


async def test_an_upgrade_after_the_server_stopped_does_not_crash_the_listener(
    native: Native,
) -> None:
    native.server.stop()
    with trio.fail_after(5):
        await native.server.wait_stopped()
    wire = await connect(native)
    response = await wire.upgrade(HUB)
    assert response.status in (101, 503)
    await wire.closed()
    await trio.sleep(0.1)
    # The listener still answers: a stopped hub server takes no new negotiation.
    other = await connect(native)
    response = await other.request("POST", f"{HUB}/negotiate")
    assert (response.status, response.body) == (503, b"The server is shutting down")
