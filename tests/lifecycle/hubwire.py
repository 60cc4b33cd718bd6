"""A lean SignalR-over-WebSocket client on a Trio socket, for many connections.

The fault and soak tests hold hundreds of connections from one process on a
two-core machine, so the client is the least code that speaks the protocol
right: an HTTP/1.1 upgrade, RFC 6455 frames (masked, as a client must), JSON
hub records. It reads only when asked, so a test can also stop reading on
purpose.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
from typing import Any

import orjson
import trio

JSON_HANDSHAKE = b'{"protocol":"json","version":1}\x1e'
HANDSHAKE_OK = b"{}\x1e"
CLOSE_RECONNECT: dict[str, Any] = {"type": 7, "allowReconnect": True}
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


class Closed(Exception):
    """The server ended the connection; ``close_code`` if it sent a close frame."""

    def __init__(self, close_code: int | None, what: str = "") -> None:
        super().__init__(f"closed ({close_code}) {what}".strip())
        self.close_code = close_code


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    key = os.urandom(4)
    if not size:
        return head + key
    # XOR as one big integer: a Python loop per byte would cost the load
    # generator more CPU than the server spends on the frame.
    repeated = (key * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        size, "big"
    )
    return head + key + masked


def invocation(invocation_id: str | None, target: str, *arguments: Any, **extra: Any) -> bytes:
    document: dict[str, Any] = {"type": 1, "target": target, "arguments": list(arguments)}
    if invocation_id is not None:
        document["invocationId"] = invocation_id
    document.update(extra)
    return orjson.dumps(document) + b"\x1e"


def upgrade_request(path: str, host: str, extra_headers: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    ).encode("latin-1")


class HubWire:
    """One hub connection (or a socket on its way to becoming one)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self._records: list[bytes] = []

    @classmethod
    async def connect(cls, host: str, port: int, *, receive_buffer: int | None = None) -> HubWire:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        try:
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return cls(trio.SocketStream(sock))

    @classmethod
    async def open(cls, host: str, port: int, path: str = "/hubs/echo", **options: Any) -> HubWire:
        """Connect, upgrade and complete the JSON handshake."""
        wire = await cls.connect(host, port, **options)
        try:
            await wire.send(upgrade_request(path, f"{host}:{port}"))
            status = await wire.response_status()
            if status != 101:
                raise Closed(None, f"upgrade answered {status}")
            await wire.send_text(JSON_HANDSHAKE)
            _, payload = await wire.frame()
            if payload != HANDSHAKE_OK:
                raise Closed(None, f"handshake answered {payload[:200]!r}")
        except BaseException:
            await wire.aclose()
            raise
        return wire

    # -- bytes

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_text(self, payload: bytes) -> None:
        await self.stream.send_all(frame(TEXT, payload))

    async def call(self, invocation_id: str | None, target: str, *arguments: Any) -> None:
        await self.send_text(invocation(invocation_id, target, *arguments))

    async def _fill(self) -> None:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            raise Closed(None, "by EOF")
        self.buffer += data

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def response_status(self) -> int:
        """The status of an HTTP answer; its head is consumed (not its body)."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            await self._fill()
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        return int(head.split(b" ", 2)[1])

    # -- frames and records

    async def frame(self) -> tuple[int, bytes]:
        """The next whole message (fragments joined); answers pings.

        Raises:
            Closed: on a close frame or EOF.
        """
        opcode, parts = None, []
        while True:
            first, second = await self._exactly(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self._exactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self._exactly(8))
            payload = await self._exactly(size)
            code = first & 0x0F
            if code == CLOSE:
                close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(close_code, "by a close frame")
            if code == PING:
                await self.send(frame(PONG, payload))
                continue
            if code == PONG:
                continue
            if code != CONTINUATION:
                opcode = code
            parts.append(payload)
            if first & 0x80:
                assert opcode is not None
                return opcode, b"".join(parts)

    async def record(self) -> dict[str, Any]:
        """The next JSON hub record other than a Ping."""
        while True:
            while self._records:
                record: dict[str, Any] = orjson.loads(self._records.pop(0))
                if record.get("type") != 6:
                    return record
            _, payload = await self.frame()
            self._records.extend(part for part in payload.split(b"\x1e") if part)

    async def result(self, invocation_id: str) -> dict[str, Any]:
        """The Completion of ``invocation_id`` (other records are skipped)."""
        while True:
            record = await self.record()
            if record.get("type") == 7:
                raise Closed(None, f"by a Close record {record}")
            if record.get("type") == 3 and record.get("invocationId") == invocation_id:
                return record

    async def hang_up(self) -> None:
        """Close as a browser does: a close frame, then the socket (the server may
        be gone already)."""
        try:
            await self.send(frame(CLOSE, struct.pack("!H", 1000)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await self.aclose()

    async def aclose(self) -> None:
        await self.stream.aclose()
