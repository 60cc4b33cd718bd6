"""A raw-socket client for the native server tests: exact HTTP/1.1 requests and
answers, then RFC 6455 frames (masked as a client must, or not, to test refusals),
and the JSON hub records inside them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from typing import Any

import attrs
import orjson
import trio

from .native_support import HUB, Native
from .support import HANDSHAKE_OK, JSON_HANDSHAKE

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
