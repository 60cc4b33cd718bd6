"""triohub's own HTTP/1.1 + WebSocket server (``serve_native``) on a real socket.

Every test starts a ``HubServer`` and ``serve_native`` on 127.0.0.1 (a free port) and
talks to it with raw Trio sockets, so the exact bytes are checked: the HTTP answers
(negotiate, the upgrade and its refusals, keep-alive), RFC 6455 framing (masking,
fragments, pings, the close handshake, 1002 / 1009), authentication, credential
expiry, slow consumers and partial writes, and the server's shutdown. trio-websocket's
client stands in for a real client where framing is not the point.

Real time throughout (real sockets); the waits are short.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import msgpack
import orjson
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionRejected, open_websocket_url

from demo.echo import EchoHub
from engine import (
    HubOptions,
    HubServer,
    JwtBearerAuthenticator,
    JwtBearerOptions,
    TransportType,
    authorize,
)
from engine.protocol import Texts
from engine.transports.asgi import SignalRApp
from engine.transports.hypercorn import serve_hypercorn
from engine.transports.native import serve_native
from engine.transports.native_ws import NativeWebSocketTransport

from ..auth.support import AUDIENCE, ISSUER, SECRET, HubSocket, claims, sign
from .support import ID

HUB = "/hubs/native"
PRIVATE = "/hubs/private"
OTHER = "/hubs/other"

JSON_HANDSHAKE = b'{"protocol":"json","version":1}\x1e'
MSGPACK_HANDSHAKE = b'{"protocol":"messagepack","version":1}\x1e'
HANDSHAKE_OK = b"{}\x1e"
CLOSE_SHUTDOWN = b'{"type":7,"allowReconnect":true}\x1e'
CLOSE_ERROR = b'{"type":7,"error":"Connection closed with an error.","allowReconnect":true}\x1e'
CLOSE_EXPIRED = b'{"type":7,"error":"Authentication expired.","allowReconnect":true}\x1e'

# RFC 6455 section 1.3: the sample key and its accept value.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def expected_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def close_payload(code: int) -> bytes:
    return struct.pack("!H", code)


def invocation(invocation_id: str, target: str, *arguments: Any) -> bytes:
    document = {"type": 1, "invocationId": invocation_id, "target": target}
    return orjson.dumps({**document, "arguments": list(arguments)}) + b"\x1e"


# -- the hubs -----------------------------------------------------------------------


class Journal:
    """How the hub's connections ended (``on_disconnected``'s error, by connection id)."""

    def __init__(self) -> None:
        self.ended: dict[str, str | None] = {}
        self.changed = trio.Event()

    def note(self, connection_id: str, error: BaseException | None) -> None:
        self.ended[connection_id] = None if error is None else str(error)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_ended(self, connection_id: str) -> str | None:
        while connection_id not in self.ended:
            await self.changed.wait()
        return self.ended[connection_id]


JOURNAL = Journal()
"""Replaced by the ``start_native`` fixture for each test."""


class NativeHub(EchoHub):
    """The demo's echo hub, a burst of large broadcasts, and a lifetime journal."""

    async def blast(self, count: int, size: int) -> int:
        for index in range(count):
            await self.clients.all.send("Blob", index, "x" * size)
        return count

    async def on_disconnected(self, error: BaseException | None) -> None:
        JOURNAL.note(self.context.connection_id, error)


@authorize
class PrivateHub(EchoHub):
    """Authenticated users only."""


def authenticator() -> JwtBearerAuthenticator:
    return JwtBearerAuthenticator(
        JwtBearerOptions(algorithms=("HS256",), key=SECRET, issuer=ISSUER, audience=AUDIENCE)
    )


def token_for(user: str, lifetime: float = 3600) -> str:
    return sign(claims(user, lifetime=lifetime))


# -- the server ---------------------------------------------------------------------


@attrs.frozen
class Native:
    server: HubServer
    port: int
    listener: trio.CancelScope
    """Cancel to stop ``serve_native`` (the hub server keeps running)."""

    def ws_url(self, path: str = HUB, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}{path}{'?' + query if query else ''}"


async def _listen(
    server: HubServer, *, task_status: trio.TaskStatus[tuple[trio.CancelScope, int]]
) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(serve_native, server)
            task_status.started((scope, port))


StartNative = Callable[..., Awaitable[Native]]


@pytest.fixture
async def start_native(nursery: trio.Nursery, hang_guard: None) -> AsyncIterator[StartNative]:
    """``native = await start_native(options=..., authenticator=...)``: ``NativeHub`` at
    ``HUB`` and ``PrivateHub`` at ``PRIVATE``. Stopped gracefully after the test."""
    global JOURNAL
    JOURNAL = Journal()
    started: list[Native] = []

    async def start(
        *, options: HubOptions | None = None, authenticator: JwtBearerAuthenticator | None = None
    ) -> Native:
        server = HubServer(options=options, authenticator=authenticator)
        server.map_hub(HUB, NativeHub)
        server.map_hub(PRIVATE, PrivateHub)
        server.map_hub(OTHER, NativeHub)
        await nursery.start(server.run)
        scope, port = await nursery.start(_listen, server)
        native = Native(server, port, scope)
        started.append(native)
        return native

    yield start
    for native in started:
        native.server.stop()
        with trio.move_on_after(10):
            await native.server.wait_stopped()
        native.listener.cancel()


@pytest.fixture
async def native(start_native: StartNative) -> Native:
    return await start_native()


# -- a raw client -------------------------------------------------------------------


@attrs.frozen
class Response:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {self.headers}"
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


@attrs.frozen
class Frame:
    fin: bool
    opcode: int
    payload: bytes


class Wire:
    """One TCP connection to the server: HTTP requests, then WebSocket frames."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.eof = False
        self._records: list[bytes] = []

    @classmethod
    async def connect(cls, port: int, *, receive_buffer: int | None = None) -> Wire:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            # Set before connecting: the window the server may fill stays this small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        await sock.connect(("127.0.0.1", port))
        return cls(trio.SocketStream(sock))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:  # a reset counts as the end, too
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not await self._fill():
                raise EOFError(f"the server closed the connection; got {bytes(self.buffer)!r}")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def _until(self, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            if not await self._fill():
                raise EOFError(f"the server closed the connection; got {bytes(self.buffer)!r}")
        data = bytes(self.buffer[:end])
        del self.buffer[: end + len(marker)]
        return data

    async def closed(self, limit: float = 3.0) -> bytes:
        """Read until the server closes the connection; what came before the end."""
        with trio.fail_after(limit):
            while await self._fill():
                pass
        rest = bytes(self.buffer)
        self.buffer.clear()
        return rest

    # -- HTTP

    async def response(self) -> Response:
        with trio.fail_after(5):
            head = (await self._until(b"\r\n\r\n")).decode("latin-1")
            line, *lines = head.split("\r\n")
            version, status, reason = line.split(" ", 2)
            assert version == "HTTP/1.1", line
            headers = tuple(
                (name, value.strip()) for name, _, value in (raw.partition(":") for raw in lines)
            )
            length = [value for name, value in headers if name.lower() == "content-length"]
            body = await self._exactly(int(length[0])) if length else b""
        return Response(int(status), reason, headers, body)

    @staticmethod
    def format(
        method: str, target: str, headers: tuple[tuple[str, str], ...] = (), body: bytes = b""
    ) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in headers]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def request(
        self,
        method: str,
        target: str,
        *headers: tuple[str, str],
        body: bytes = b"",
    ) -> Response:
        await self.send(self.format(method, target, headers, body))
        return await self.response()

    async def upgrade(
        self, target: str, *headers: tuple[str, str], key: str = RFC_KEY, version: str = "13"
    ) -> Response:
        return await self.request(
            "GET",
            target,
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", version),
            *headers,
        )

    # -- WebSocket frames

    async def frame(self, limit: float = 5.0) -> Frame:
        with trio.fail_after(limit):
            first, second = await self._exactly(2)
            assert not second & 0x80, "the server masked a frame"
            assert not first & 0x70, "the server set reserved bits"
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self._exactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self._exactly(8))
            payload = await self._exactly(size)
        return Frame(bool(first & 0x80), first & 0x0F, payload)

    @staticmethod
    def encode(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
        first = (0x80 if fin else 0) | opcode
        size = len(payload)
        if size < 126:
            head = bytes((first, size | (0x80 if mask else 0)))
        elif size < 65536:
            head = struct.pack("!BBH", first, 126 | (0x80 if mask else 0), size)
        else:
            head = struct.pack("!BBQ", first, 127 | (0x80 if mask else 0), size)
        if not mask:
            return head + payload
        key = os.urandom(4)
        masked = bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))
        return head + key + masked

    async def send_frame(
        self, opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True
    ) -> None:
        await self.send(self.encode(opcode, payload, fin=fin, mask=mask))

    async def close_handshake(self, code: int = 1000) -> None:
        """Answer the server's close frame and end our side, as a browser does."""
        await self.send_frame(CLOSE, close_payload(code))
        await self.stream.send_eof()

    async def hub_open(
        self, target: str = HUB, *headers: tuple[str, str], handshake: bytes = JSON_HANDSHAKE
    ) -> None:
        """Upgrade and complete the SignalR handshake."""
        key = new_key()
        response = await self.upgrade(target, *headers, key=key)
        assert response.status == 101, response
        await self.send_frame(TEXT, handshake)
        frame = await self.frame()
        assert frame.payload == HANDSHAKE_OK, frame

    async def record(self, limit: float = 5.0) -> dict[str, Any]:
        """The next JSON hub record other than a Ping (frames may batch records)."""
        with trio.fail_after(limit):
            while True:
                while self._records:
                    record: dict[str, Any] = orjson.loads(self._records.pop(0))
                    if record.get("type") != 6:
                        return record
                frame = await self.frame()
                assert frame.opcode == TEXT, frame
                assert frame.payload.endswith(b"\x1e"), frame.payload[-100:]
                self._records.extend(frame.payload[:-1].split(b"\x1e"))


async def connect(native: Native) -> Wire:
    return await Wire.connect(native.port)


# -- 1. negotiate and plain HTTP ----------------------------------------------------


async def test_negotiate_v1_offers_websockets_only(native: Native) -> None:
    wire = await connect(native)
    response = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1")
    assert (response.status, response.reason) == (200, "OK")
    assert response.header("content-type") == "application/json"
    assert response.header("content-length") == str(len(response.body))
    body = orjson.loads(response.body)
    assert list(body) == [
        "negotiateVersion",
        "connectionId",
        "connectionToken",
        "availableTransports",
    ]
    assert body["negotiateVersion"] == 1
    assert ID.fullmatch(body["connectionId"]), body
    assert ID.fullmatch(body["connectionToken"]), body
    assert body["connectionId"] != body["connectionToken"]
    assert body["availableTransports"] == [
        {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}
    ]


async def test_negotiate_v0_has_no_separate_token(native: Native) -> None:
    wire = await connect(native)
    response = await wire.request("POST", f"{HUB}/negotiate")
    assert response.status == 200
    body = orjson.loads(response.body)
    assert body["negotiateVersion"] == 0
    assert ID.fullmatch(body["connectionId"]), body
    assert "connectionToken" not in body
    # v0 clients send the id as the token: it must be usable as one.
    hub = await connect(native)
    await hub.hub_open(f"{HUB}?id={body['connectionId']}")
    await hub.send_frame(TEXT, invocation("1", "WhoAmI"))
    record = await hub.record()
    assert record["result"]["connectionId"] == body["connectionId"]


async def test_negotiate_error_is_a_200_with_the_text(native: Native) -> None:
    wire = await connect(native)
    response = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=x")
    assert (response.status, response.header("content-type")) == (200, "application/json")
    assert orjson.loads(response.body) == {"error": Texts.NEGOTIATE_NON_INTEGER}


async def test_get_negotiate_is_405_and_unknown_paths_404(native: Native) -> None:
    wire = await connect(native)
    get = await wire.request("GET", f"{HUB}/negotiate?negotiateVersion=1")
    assert (get.status, get.reason, get.body) == (405, "Method Not Allowed", b"")
    unknown = await wire.request("POST", "/hubs/nothing/negotiate?negotiateVersion=1")
    assert (unknown.status, unknown.body) == (404, b"Not Found")
    assert unknown.header("content-type") == "text/plain"
    root = await wire.request("GET", "/")
    assert (root.status, root.body) == (404, b"Not Found")
    # Each answer kept the connection open.
    assert get.header("connection") is None
    assert (await wire.request("POST", f"{HUB}/negotiate")).status == 200


async def test_keep_alive_answers_each_request_in_turn(native: Native) -> None:
    wire = await connect(native)
    first = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1")
    second = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1")
    assert (first.status, second.status) == (200, 200)
    assert orjson.loads(first.body)["connectionId"] != orjson.loads(second.body)["connectionId"]
    # Pipelined: three requests in one write, answered in order.
    await wire.send(
        Wire.format("POST", f"{HUB}/negotiate?negotiateVersion=1")
        + Wire.format("GET", "/missing")
        + Wire.format("POST", f"{HUB}/negotiate", body=b"ignored body")
    )
    answers = [await wire.response() for _ in range(3)]
    assert [answer.status for answer in answers] == [200, 404, 200]
    assert orjson.loads(answers[2].body)["negotiateVersion"] == 0


async def test_connection_close_ends_the_connection_after_the_answer(native: Native) -> None:
    wire = await connect(native)
    response = await wire.request(
        "POST", f"{HUB}/negotiate?negotiateVersion=1", ("Connection", "close")
    )
    assert response.status == 200
    assert await wire.closed() == b""


async def test_http_1_0_closes_unless_kept_alive(native: Native) -> None:
    wire = await connect(native)
    await wire.send(b"POST " + HUB.encode() + b"/negotiate HTTP/1.0\r\n\r\n")
    assert (await wire.response()).status == 200
    assert await wire.closed() == b""
    kept = await connect(native)
    request = b"POST " + HUB.encode() + b"/negotiate HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    await kept.send(request)
    assert (await kept.response()).status == 200
    await kept.send(request)
    assert (await kept.response()).status == 200


# -- 2. the upgrade and the HTTP refusals -------------------------------------------


async def test_upgrade_handshake_and_invocation(native: Native) -> None:
    wire = await connect(native)
    response = await wire.upgrade(HUB)
    assert (response.status, response.reason) == (101, "Switching Protocols")
    assert response.header("upgrade") == "websocket"
    assert response.header("connection") == "Upgrade"
    assert response.header("sec-websocket-accept") == RFC_ACCEPT
    assert response.body == b""
    await wire.send_frame(TEXT, JSON_HANDSHAKE)
    assert await wire.frame() == Frame(True, TEXT, HANDSHAKE_OK)
    await wire.send_frame(TEXT, invocation("7", "Add", 40, 2))
    assert await wire.frame() == Frame(True, TEXT, b'{"type":3,"invocationId":"7","result":42}\x1e')


async def test_frames_sent_with_the_upgrade_request_are_not_lost(native: Native) -> None:
    """The handshake and two invocations in the same write as the upgrade request:
    the bytes read past the head are handed to the WebSocket."""
    wire = await connect(native)
    upgrade = Wire.format(
        "GET",
        HUB,
        (
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Key", RFC_KEY),
            ("Sec-WebSocket-Version", "13"),
        ),
    )
    frames = [JSON_HANDSHAKE, invocation("1", "Echo", "one"), invocation("2", "Echo", "two")]
    await wire.send(upgrade + b"".join(Wire.encode(TEXT, frame) for frame in frames))
    response = await wire.response()
    assert (response.status, response.header("sec-websocket-accept")) == (101, RFC_ACCEPT)
    assert await wire.frame() == Frame(True, TEXT, HANDSHAKE_OK)
    assert [(await wire.record())["result"] for _ in range(2)] == ["one", "two"]


async def test_a_request_arriving_in_pieces_is_answered(native: Native) -> None:
    wire = await connect(native)
    request = Wire.format("POST", f"{HUB}/negotiate?negotiateVersion=1", body=b"{}")
    for index in range(0, len(request), 7):
        await wire.send(request[index : index + 7])
        await trio.sleep(0.001)
    response = await wire.response()
    assert response.status == 200
    assert orjson.loads(response.body)["negotiateVersion"] == 1


async def test_accept_value_follows_the_key(native: Native) -> None:
    for _ in range(3):
        key = new_key()
        wire = await connect(native)
        response = await wire.upgrade(HUB, key=key)
        assert response.header("sec-websocket-accept") == expected_accept(key)
        await wire.aclose()


async def test_negotiated_id_is_used_once(native: Native) -> None:
    wire = await connect(native)
    body = orjson.loads((await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1")).body)
    token, connection_id = body["connectionToken"], body["connectionId"]
    async with open_websocket_url(native.ws_url(HUB, f"id={token}")) as ws:
        hub = HubSocket(ws)
        await hub.handshake()
        assert (await hub.invoke("WhoAmI"))["result"]["connectionId"] == connection_id
        # The same id again while the first socket is connected.
        again = await connect(native)
        refused = await again.upgrade(f"{HUB}?id={token}")
        assert (refused.status, refused.reason, refused.body) == (409, "Conflict", b"")
        # That connection stays usable for HTTP.
        assert (await again.request("POST", f"{HUB}/negotiate")).status == 200
        # POST and DELETE on a WebSocket connection.
        post = await again.request("POST", f"{HUB}?id={token}", body=b"{}\x1e")
        assert (post.status, post.body) == (405, Texts.POST_NOT_ALLOWED_FOR_WEBSOCKETS.encode())
        delete = await again.request("DELETE", f"{HUB}?id={token}")
        assert (delete.status, delete.body) == (400, Texts.DELETE_NOT_ALLOWED.encode())
    # Once that socket has ended the id is gone.
    with trio.fail_after(5):
        await JOURNAL.wait_ended(connection_id)
        # Gone with the hub connection, with no scheduling point in between.
        await trio.testing.wait_all_tasks_blocked()
    gone = await connect(native)
    response = await gone.upgrade(f"{HUB}?id={token}")
    assert (response.status, response.body) == (404, Texts.NO_CONNECTION.encode())


async def test_unknown_id_is_404(native: Native) -> None:
    wire = await connect(native)
    response = await wire.upgrade(f"{HUB}?id=not-a-connection")
    assert (response.status, response.reason) == (404, "Not Found")
    assert (response.body, response.header("content-type")) == (
        Texts.NO_CONNECTION.encode(),
        "text/plain",
    )
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(native.ws_url(HUB, "id=also-unknown")):
            pass  # pragma: no cover
    assert rejected.value.status_code == 404
    assert rejected.value.body == Texts.NO_CONNECTION.encode()


async def test_id_of_another_hub_is_404(native: Native) -> None:
    wire = await connect(native)
    token = orjson.loads((await wire.request("POST", f"{HUB}/negotiate")).body)["connectionId"]
    response = await wire.upgrade(f"{OTHER}?id={token}")
    assert (response.status, response.body) == (404, Texts.NO_CONNECTION.encode())
    # Still unused: it works on its own hub.
    await wire.aclose()
    mine = await connect(native)
    await mine.hub_open(f"{HUB}?id={token}")


@pytest.mark.parametrize(
    ("key", "version"),
    [
        (RFC_KEY, "12"),
        (RFC_KEY, ""),
        ("not base64!", "13"),
        (base64.b64encode(b"fifteen bytes..").decode(), "13"),
        ("", "13"),
    ],
    ids=["version-12", "no-version", "key-not-base64", "key-15-bytes", "no-key"],
)
async def test_bad_upgrade_is_400(native: Native, key: str, version: str) -> None:
    wire = await connect(native)
    response = await wire.upgrade(HUB, key=key, version=version)
    assert (response.status, response.reason) == (400, "Bad Request")
    assert response.header("sec-websocket-version") == "13"
    assert response.header("connection") == "close"
    assert response.header("sec-websocket-accept") is None
    assert await wire.closed() == b""


@pytest.mark.parametrize(
    ("accept", "transport"),
    [(None, "LongPolling"), ("text/event-stream", "ServerSentEvents")],
)
async def test_get_without_upgrade_names_the_missing_transport(
    native: Native, accept: str | None, transport: str
) -> None:
    wire = await connect(native)
    headers = (("Accept", accept),) if accept else ()
    token = orjson.loads((await wire.request("POST", f"{HUB}/negotiate")).body)["connectionId"]
    response = await wire.request("GET", f"{HUB}?id={token}", *headers)
    assert (response.status, response.body) == (
        404,
        Texts.transport_not_supported(transport).encode(),
    )
    assert Texts.transport_not_supported(transport) == (
        f"{transport} transport not supported by this end point type"
    )


async def test_post_without_id_is_400_and_with_unknown_id_404(native: Native) -> None:
    wire = await connect(native)
    response = await wire.request("POST", HUB, body=b"{}\x1e")
    assert (response.status, response.body) == (400, b"Connection ID required")
    unknown = await wire.request("POST", f"{HUB}?id=nope", body=b"{}\x1e")
    assert (unknown.status, unknown.body) == (404, b"No Connection with that ID")
    put = await wire.request("PUT", HUB)
    assert put.status == 405


async def test_a_head_growing_past_16_kib_is_431(native: Native) -> None:
    wire = await connect(native)
    # 20 KiB of headers, and the head never ends.
    await wire.send(b"GET " + HUB.encode() + b" HTTP/1.1\r\nX-Filler: " + b"a" * 20480)
    response = await wire.response()
    assert (response.status, response.reason) == (431, "Request Header Fields Too Large")
    assert response.header("connection") == "close"
    assert await wire.closed() == b""


async def test_a_whole_head_over_16_kib_is_431(native: Native) -> None:
    wire = await connect(native)
    filler = ("X-Filler", "a" * (20 * 1024))
    response = await wire.request("POST", f"{HUB}/negotiate", filler)
    assert response.status == 431


@pytest.mark.parametrize(
    "request_line",
    [b"GARBAGE", b"GET /hubs/native", b"GET hubs/native HTTP/1.1", b"GET / HTTP/2.0"],
    ids=["one-word", "no-version", "relative-target", "http-2"],
)
async def test_malformed_request_line_is_400(native: Native, request_line: bytes) -> None:
    wire = await connect(native)
    await wire.send(request_line + b"\r\nHost: 127.0.0.1\r\n\r\n")
    response = await wire.response()
    assert response.status == 400
    assert response.header("connection") == "close"
    assert await wire.closed() == b""


async def test_malformed_header_line_is_400(native: Native) -> None:
    wire = await connect(native)
    await wire.send(b"POST /hubs/native/negotiate HTTP/1.1\r\nNo colon here\r\n\r\n")
    assert (await wire.response()).status == 400
    assert await wire.closed() == b""


async def test_chunked_body_is_411_and_oversized_body_413(native: Native) -> None:
    wire = await connect(native)
    response = await wire.request(
        "POST", f"{HUB}/negotiate", ("Transfer-Encoding", "chunked"), body=b""
    )
    assert (response.status, response.reason) == (411, "Length Required")
    assert response.header("connection") == "close"
    assert await wire.closed() == b""
    big = await connect(native)
    await big.send(Wire.format("POST", f"{HUB}/negotiate", (("Content-Length", str(1024 * 1024)),)))
    response = await big.response()
    assert response.status == 413
    assert await big.closed() == b""


# -- 3. authentication --------------------------------------------------------------


async def test_anonymous_negotiate_and_upgrade_get_the_challenge(
    start_native: StartNative,
) -> None:
    native = await start_native(authenticator=authenticator())
    wire = await connect(native)
    negotiate = await wire.request("POST", f"{PRIVATE}/negotiate?negotiateVersion=1")
    assert (negotiate.status, negotiate.reason, negotiate.body) == (401, "Unauthorized", b"")
    assert negotiate.all("www-authenticate") == ["Bearer"]
    upgrade = await wire.upgrade(PRIVATE)
    assert (upgrade.status, upgrade.all("www-authenticate")) == (401, ["Bearer"])
    # A refusal keeps the HTTP connection; the public hub stays open to anyone.
    assert (await wire.request("POST", f"{HUB}/negotiate")).status == 200


async def test_expired_token_is_401_with_the_reason(start_native: StartNative) -> None:
    native = await start_native(authenticator=authenticator())
    expired = sign(claims("alice", now=time.time() - 7200, lifetime=3600))
    wire = await connect(native)
    negotiate = await wire.request(
        "POST", f"{PRIVATE}/negotiate?negotiateVersion=1", ("Authorization", f"Bearer {expired}")
    )
    assert negotiate.status == 401
    assert negotiate.all("www-authenticate") == [
        'Bearer error="invalid_token", error_description="The token expired."'
    ]
    upgrade = await wire.upgrade(f"{PRIVATE}?access_token={expired}")
    assert upgrade.status == 401


async def test_token_on_the_upgrade_query_sets_the_principal(start_native: StartNative) -> None:
    native = await start_native(authenticator=authenticator())
    alice = token_for("alice")
    # With negotiation: the bearer header on negotiate, the query on the upgrade.
    wire = await connect(native)
    negotiate = await wire.request(
        "POST", f"{PRIVATE}/negotiate?negotiateVersion=1", ("Authorization", f"Bearer {alice}")
    )
    assert negotiate.status == 200
    body = orjson.loads(negotiate.body)
    url = native.ws_url(PRIVATE, f"id={body['connectionToken']}&access_token={alice}")
    async with open_websocket_url(url) as ws:
        hub = HubSocket(ws)
        await hub.handshake()
        result = (await hub.invoke("WhoAmI"))["result"]
        assert (result["userId"], result["connectionId"]) == ("alice", body["connectionId"])
    # Without negotiation.
    async with open_websocket_url(native.ws_url(PRIVATE, f"access_token={alice}")) as ws:
        hub = HubSocket(ws)
        await hub.handshake()
        assert (await hub.invoke("WhoAmI"))["result"]["userId"] == "alice"


async def test_only_the_negotiating_user_may_use_a_negotiated_id(
    start_native: StartNative, caplog: pytest.LogCaptureFixture
) -> None:
    """Negotiate binds the negotiating principal; the upgrade must come from the same
    user (``check_bound``): another user's token is 403, no token 401 with the challenge,
    a fresh token of the same user is fine."""
    native = await start_native(authenticator=authenticator())
    alice, bob = token_for("alice"), token_for("bob")
    for path in (PRIVATE, HUB):
        wire = await connect(native)
        negotiate = await wire.request(
            "POST", f"{path}/negotiate?negotiateVersion=1", ("Authorization", f"Bearer {alice}")
        )
        body = orjson.loads(negotiate.body)
        token = body["connectionToken"]
        as_bob = await wire.upgrade(f"{path}?id={token}&access_token={bob}")
        assert (as_bob.status, as_bob.body) == (403, b""), path
        anonymous = await wire.upgrade(f"{path}?id={token}")
        assert anonymous.status == 401, path
        assert anonymous.all("www-authenticate") == ["Bearer"], path
        # The refusals did not use the id up: alice (another token of hers) connects.
        alice_again = sign(claims("alice", lifetime=600))
        assert alice_again != alice
        url = native.ws_url(path, f"id={token}&access_token={alice_again}")
        async with open_websocket_url(url) as ws:
            hub = HubSocket(ws)
            await hub.handshake()
            result = (await hub.invoke("WhoAmI"))["result"]
            assert (result["userId"], result["connectionId"]) == ("alice", body["connectionId"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("another user" in message for message in warnings), warnings
    for record in caplog.records:
        assert bob not in record.getMessage() + repr(record.args)
        assert alice not in record.getMessage() + repr(record.args)


async def test_refused_requests_log_no_token(
    start_native: StartNative, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    native = await start_native(authenticator=authenticator())
    expired = sign(claims("alice", now=time.time() - 7200, lifetime=3600))
    forged = sign(claims("mallory"), "another-secret-of-the-right-length-0123456789")
    wire = await connect(native)
    for token in (expired, forged):
        negotiate = await wire.request(
            "POST",
            f"{PRIVATE}/negotiate?access_token={token}",
            ("Authorization", f"Bearer {token}"),
        )
        assert negotiate.status == 401
        upgrade = await wire.upgrade(f"{PRIVATE}?access_token={token}")
        assert upgrade.status == 401
        post = await wire.request("POST", f"{PRIVATE}?id=x&access_token={token}")
        assert post.status == 401
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert refusals, "the refusals were not logged"
    for record in caplog.records:
        text = record.getMessage() + repr(record.args)
        for token in (expired, forged):
            assert token not in text
            assert token.split(".")[2] not in text, "a token signature was logged"
        assert "access_token" not in text


# -- 3b. the same answers as the ASGI app -------------------------------------------


@attrs.frozen
class Ask:
    """One request, asked of both servers. ``{anonymous}`` / ``{alice}`` in the target
    stand for the token of a connection negotiated anonymously / by alice."""

    method: str
    target: str
    user: str | None = None
    """Whose bearer token goes with it (on the query for an upgrade)."""
    upgrade: bool = False
    accept: str | None = None


WEBSOCKETS_ONLY: frozenset[TransportType] = frozenset({TransportType.WEBSOCKETS})


PARITY = [
    pytest.param(Ask("POST", f"{HUB}/negotiate?negotiateVersion=1"), id="negotiate-v1"),
    pytest.param(Ask("POST", f"{HUB}/negotiate"), id="negotiate-v0"),
    pytest.param(Ask("POST", f"{HUB}/negotiate", user="expired"), id="negotiate-expired"),
    pytest.param(Ask("GET", f"{HUB}/negotiate"), id="negotiate-get"),
    pytest.param(Ask("POST", "/hubs/none/negotiate"), id="unknown-path"),
    pytest.param(Ask("PUT", HUB), id="put"),
    pytest.param(Ask("POST", HUB), id="post-without-id"),
    pytest.param(Ask("POST", f"{HUB}?id=nope"), id="post-unknown-id"),
    pytest.param(
        Ask("POST", f"{HUB}?id={{anonymous}}"),
        id="post-unbound-id",
    ),
    pytest.param(
        Ask("POST", f"{HUB}?id={{alice}}", user="bob"),
        id="post-another-users-id",
    ),
    pytest.param(Ask("DELETE", f"{HUB}?id={{anonymous}}"), id="delete-unbound-id"),
    pytest.param(
        Ask("DELETE", f"{HUB}?id={{alice}}", user="bob"),
        id="delete-another-users-id",
    ),
    pytest.param(
        Ask("GET", HUB),
        id="get-without-id",
    ),
    pytest.param(
        Ask("GET", f"{HUB}?id=nope"),
        id="get-unknown-id",
    ),
    pytest.param(Ask("GET", f"{HUB}?id={{anonymous}}"), id="get-negotiated-id"),
    pytest.param(
        Ask("GET", f"{HUB}?id={{anonymous}}", accept="text/event-stream"), id="sse-negotiated-id"
    ),
    pytest.param(
        Ask("GET", f"{HUB}?id={{alice}}", user="bob"),
        id="get-another-users-id",
    ),
    pytest.param(Ask("GET", f"{HUB}?id=nope", upgrade=True), id="upgrade-unknown-id"),
    pytest.param(
        Ask("GET", f"{HUB}?id={{alice}}", user="bob", upgrade=True), id="upgrade-another-user"
    ),
    pytest.param(Ask("GET", f"{HUB}?id={{alice}}", upgrade=True), id="upgrade-anonymous"),
    pytest.param(Ask("GET", PRIVATE, upgrade=True), id="upgrade-private-anonymous"),
    pytest.param(Ask("GET", PRIVATE, user="expired", upgrade=True), id="upgrade-private-expired"),
]


async def _ask(port: int, ask: Ask, tokens: dict[str, str]) -> tuple[Any, ...]:
    wire = await Wire.connect(port)
    ids: dict[str, str] = {}
    for name, user in (("anonymous", None), ("alice", "alice")):
        auth = (("Authorization", f"Bearer {tokens[user]}"),) if user else ()
        negotiate = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1", *auth)
        ids[name] = orjson.loads(negotiate.body)["connectionToken"]
    target = ask.target.format(**ids)
    headers: tuple[tuple[str, str], ...] = (("Accept", ask.accept),) if ask.accept else ()
    if ask.upgrade:
        if ask.user:
            target += f"{'&' if '?' in target else '?'}access_token={tokens[ask.user]}"
        response = await wire.upgrade(target, *headers)
    else:
        if ask.user:
            headers += (("Authorization", f"Bearer {tokens[ask.user]}"),)
        response = await wire.request(ask.method, target, *headers)
    body: Any = response.body
    if response.header("content-type") == "application/json":
        body = orjson.loads(body)
        for key in ("connectionId", "connectionToken"):
            if key in body:
                assert ID.fullmatch(body[key]), body
                body[key] = "<id>"
    challenge = tuple(response.all("www-authenticate"))
    return response.status, response.header("content-type"), body, challenge


@pytest.mark.parametrize("ask", PARITY)
async def test_answers_match_the_asgi_app(
    start_native: StartNative, nursery: trio.Nursery, ask: Ask
) -> None:
    """One ``HubServer`` (WebSockets only, bearer tokens), served by both: every
    answer the native server gives is the ASGI app's."""
    native = await start_native(
        authenticator=authenticator(),
        # mypy's attrs plugin reads the frozenset converter's parameter as Iterable[_T_co].
        options=HubOptions(transports=WEBSOCKETS_ONLY),  # type: ignore[arg-type]
    )
    _, asgi_port = await nursery.start(serve_hypercorn, SignalRApp(native.server), "127.0.0.1", 0)
    tokens = {
        "alice": token_for("alice"),
        "bob": token_for("bob"),
        "expired": sign(claims("alice", now=time.time() - 7200, lifetime=3600)),
    }
    answers = {
        name: await _ask(port, ask, tokens)
        for name, port in (("native", native.port), ("asgi", asgi_port))
    }
    assert answers["native"] == answers["asgi"]


# -- 4. WebSocket framing -----------------------------------------------------------


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


# -- 5. credential expiry -----------------------------------------------------------


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


# -- 6. slow consumers and partial writes -------------------------------------------


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


async def test_a_fast_client_gets_every_large_message_in_order(
    native: Native, monkeypatch: pytest.MonkeyPatch
) -> None:
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
        reason = await JOURNAL.wait_ended(slow_id)
    assert reason == "slow consumer"
    assert fast_id not in JOURNAL.ended
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


# -- 7. shutdown --------------------------------------------------------------------


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
    # The listener still answers.
    other = await connect(native)
    assert (await other.request("POST", f"{HUB}/negotiate")).status == 200
