"""The HTTP and WebSocket rules both servers enforce alike (hypercorn with the
ASGI app, and triohub's own server): an HTTP/1.0 request may leave Host out, upgrades
over HTTP/1.1 only with a well-formed key (RFC 6455 4.2.1), encoded slashes that
never route to a hub, and a close frame with 1002 for a broken frame. The exact
answers to single requests are in test_raw_http.py.

Real servers on real sockets (``hardening_support.running``)."""

from __future__ import annotations

import logging
import struct

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage
from wsproto.extensions import PerMessageDeflate

from .hardening_support import SERVERS, UPGRADE, assert_serves, running
from .native_support import HUB
from .native_wire import BINARY, CLOSE, TEXT, Wire, invocation, new_key
from .support import HANDSHAKE_OK, JSON_HANDSHAKE

pytestmark = [pytest.mark.usefixtures("hang_guard"), pytest.mark.parametrize("kind", SERVERS)]

NEGOTIATE = f"POST {HUB}/negotiate HTTP/1.1\r\n".encode()


async def answer(kind: str, request: bytes) -> tuple[int, bytes]:
    """Status and body of the server's answer to ``request`` (raw bytes)."""
    async with running(kind) as served:
        wire = await served.wire()
        await wire.send(request)
        response = await wire.response()
        await wire.aclose()
        await assert_serves(served.port)
    return response.status, response.body


async def test_an_http_1_0_request_may_leave_host_out(kind: str) -> None:
    request = f"POST {HUB}/negotiate HTTP/1.0\r\nContent-Length: 0\r\n\r\n".encode()
    status, body = await answer(kind, request)
    assert status == 200, body


async def test_an_upgrade_over_http_1_0_is_refused(kind: str) -> None:
    request = UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0")
    assert await answer(kind, request) == (400, b"")


@pytest.mark.parametrize(
    "key",
    ["", "not base64!", "dGhlIHNhbXBsZQ==", "dGhlIHNhbXBsZSBub25jZSB0b28gbG9uZw=="],
    ids=["empty", "not-base64", "10-bytes", "23-bytes"],
)
async def test_a_malformed_websocket_key_is_refused_before_the_upgrade(kind: str, key: str) -> None:
    request = UPGRADE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", key.encode())
    status, body = await answer(kind, request)
    assert (status, body) == (400, b"")


@pytest.mark.parametrize(
    "target", [f"{HUB}/negotiate", "/hubs/nat%69ve/negotiate", "/hubs/native%2fnegotiate"]
)
async def test_percent_encoding_is_decoded_but_an_encoded_slash(kind: str, target: str) -> None:
    request = f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    status, _ = await answer(kind, request)
    assert status == (404 if "%2f" in target else 200)


async def test_an_encoded_slash_never_reaches_a_hub(kind: str) -> None:
    for target in ("/hubs%2Fnative/negotiate", "/hubs%2fnative"):
        request = f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
        assert (await answer(kind, request))[0] == 404
    status, _ = await answer(kind, UPGRADE.replace(HUB.encode(), b"/hubs%2Fnative"))
    assert status == 404


BROKEN_FRAMES = {
    "unmasked": Wire.encode(TEXT, b"hi", mask=False),
    "reserved bits": bytes((0xC1,)) + Wire.encode(TEXT, b"hi")[1:],
    "unknown opcode": Wire.encode(0x3, b"hi"),
    "continuation first": Wire.encode(0x0, b"hi"),
    "fragmented ping": Wire.encode(0x9, b"", fin=False),
    "binary inside text": Wire.encode(TEXT, b"a", fin=False) + Wire.encode(BINARY, b"b"),
    "close code 1005": Wire.encode(CLOSE, struct.pack("!H", 1005)),
    "one-byte close": Wire.encode(CLOSE, b"\x03"),
}


@pytest.mark.parametrize("frame", list(BROKEN_FRAMES.values()), ids=list(BROKEN_FRAMES))
async def test_a_broken_frame_gets_a_1002_close(
    kind: str, frame: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(kind) as served:
        wire = await served.wire()
        await wire.hub_open(HUB)
        await wire.send(frame)
        while (received := await wire.frame()).opcode != CLOSE:
            pass
        assert received.payload[:2] == struct.pack("!H", 1002), received
        await wire.closed(limit=5)
        await wire.aclose()
        await assert_serves(served.port)
    closing = [r for r in caplog.records if "with 1002" in r.getMessage()]
    assert len(closing) == 1, caplog.text
    assert closing[0].levelno == logging.INFO


async def test_the_upgrade_key_is_checked_by_value_not_presence(kind: str) -> None:
    async with running(kind) as served:
        wire = await served.wire()
        response = await wire.upgrade(HUB, key=new_key())
        assert response.status == 101, response
        await wire.aclose()


async def test_a_compressed_client_is_served(kind: str) -> None:
    """permessage-deflate sets RSV1 (hypercorn negotiates it; the frame check
    must let it through); the native server declines it."""
    client = WSConnection(ConnectionType.CLIENT)
    async with running(kind) as served:
        stream = await trio.open_tcp_stream("127.0.0.1", served.port)
        offer = Request(host="127.0.0.1", target=HUB, extensions=[PerMessageDeflate()])
        await stream.send_all(client.send(offer))

        async def next_event() -> object:
            while True:
                for event in client.events():
                    return event
                client.receive_data(await stream.receive_some(65536))

        with trio.fail_after(5):
            accepted = await next_event()
            assert isinstance(accepted, AcceptConnection), accepted
            compressed = bool(accepted.extensions)
            assert compressed == (kind == "hypercorn")
            await stream.send_all(client.send(TextMessage(JSON_HANDSHAKE.decode())))
            assert await next_event() == TextMessage(HANDSHAKE_OK.decode())
            call = invocation("1", "Echo", "z" * 5000)
            await stream.send_all(client.send(TextMessage(call.decode())))
            reply = await next_event()
        assert isinstance(reply, TextMessage)
        assert reply.data.startswith('{"type":3,"invocationId":"1","result":"zzz'), reply
        await stream.aclose()
