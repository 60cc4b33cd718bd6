"""RFC 6455 WebSocket framing for a server, sans-IO.

Only what a SignalR server needs, and fast for it: the upgrade answer, a
decoder of client frames (masked, possibly fragmented, interleaved control
frames) into whole messages, and the encoding of unmasked server frames.
Per-message deflate is not offered (the official clients do not need it).

The decoder checks everything RFC 6455 section 5 requires of a client frame
and raises ``WebSocketError`` carrying the close code to answer with: 1002
(protocol error), 1007 (text that is not UTF-8), 1009 (message too big).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Final

import attrs

__all__ = [
    "BINARY",
    "CLOSE",
    "PING",
    "PONG",
    "TEXT",
    "ControlFrame",
    "FrameCache",
    "FrameChecker",
    "FrameDecoder",
    "Message",
    "WebSocketError",
    "accept_key",
    "check_frame",
    "close_frame",
    "encode_frame",
    "parse_close",
    "valid_key",
]

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONTROL_LIMIT: Final = 125


class WebSocketError(Exception):
    """The client broke RFC 6455; close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@attrs.frozen
class Message:
    """A complete data message (all fragments joined, unmasked)."""

    opcode: int
    """``TEXT`` or ``BINARY``."""
    payload: bytes


@attrs.frozen
class ControlFrame:
    """A ping, pong or close frame."""

    opcode: int
    payload: bytes


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1(key.strip().encode("latin-1") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def valid_key(key: str) -> bool:
    """A ``Sec-WebSocket-Key`` must be 16 random bytes, base64-encoded."""
    try:
        return len(base64.b64decode(key.strip().encode("ascii"), validate=True)) == 16
    except (ValueError, UnicodeEncodeError):
        return False


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (servers never mask)."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, size) + payload


class FrameCache:
    """The frame of the last payload, per opcode: a fan-out sends the same
    ``bytes`` object to every recipient, so it is framed once. One per server
    (``serve_native``, ``serve_hypercorn``), shared by its connections."""

    __slots__ = ("_binary", "_text")

    def __init__(self) -> None:
        self._text: tuple[bytes, bytes] = (b"", encode_frame(TEXT, b""))
        self._binary: tuple[bytes, bytes] = (b"", encode_frame(BINARY, b""))

    def frame(self, opcode: int, payload: bytes) -> bytes:
        last = self._text if opcode == TEXT else self._binary
        if last[0] is payload:
            return last[1]
        framed = encode_frame(opcode, payload)
        if opcode == TEXT:
            self._text = (payload, framed)
        else:
            self._binary = (payload, framed)
        return framed


def close_frame(code: int, reason: str = "") -> bytes:
    # At most 123 bytes of reason, never cutting a UTF-8 sequence in two.
    text = reason.encode()[:123].decode(errors="ignore").encode()
    payload = struct.pack("!H", code) + text
    return encode_frame(CLOSE, payload)


def parse_close(payload: bytes) -> tuple[int, str]:
    """The code and reason of a close frame's payload (1005 when it has none).

    Raises:
        WebSocketError: a one-byte payload, a code no endpoint may send, or a
            reason that is not UTF-8.
    """
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise WebSocketError(1002, "close frame with a one-byte payload")
    (code,) = struct.unpack("!H", payload[:2])
    if not ((1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code < 5000):
        raise WebSocketError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise WebSocketError(1007, "close reason is not UTF-8") from None
    return code, reason


def _unmask(data: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    size = len(data)
    if not size:
        return b""
    # One big-integer XOR: linear, and far faster in CPython than a byte loop.
    key = int.from_bytes((mask * ((size >> 2) + 1))[:size], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(size, "little")


def check_frame(first: int, second: int, in_message: int, compressed: bool = False) -> int:
    """What RFC 6455 section 5 requires of a client frame's first two bytes.

    Args:
        first: the frame's first byte (FIN, RSV1-3, opcode).
        second: its second byte (MASK, the 7-bit length).
        in_message: the opcode of the fragmented message in progress (0: none).
        compressed: permessage-deflate was negotiated (RFC 7692): RSV1 may mark
            the first frame of a data message.

    Returns:
        The frame's opcode.

    Raises:
        WebSocketError: 1002, with what is wrong.
    """
    if first & 0x70:
        if not compressed or first & 0x30:
            raise WebSocketError(1002, "reserved bits set (no extension was negotiated)")
        if first & 0x0F not in (TEXT, BINARY):
            raise WebSocketError(1002, "RSV1 set on a control or continuation frame")
    if not second & 0x80:
        raise WebSocketError(1002, "client frames must be masked")
    opcode = first & 0x0F
    if opcode >= CLOSE:
        if opcode > PONG:
            raise WebSocketError(1002, f"unknown opcode {opcode:#x}")
        if not first & 0x80:
            raise WebSocketError(1002, "fragmented control frame")
        if second & 0x7F > _CONTROL_LIMIT:
            raise WebSocketError(1002, "control frame payload over 125 bytes")
    elif opcode == CONTINUATION:
        if not in_message:
            raise WebSocketError(1002, "continuation frame without a message")
    elif opcode in (TEXT, BINARY):
        if in_message:
            raise WebSocketError(1002, "new message inside a fragmented message")
    else:
        raise WebSocketError(1002, f"unknown opcode {opcode:#x}")
    return opcode


class FrameDecoder:
    """Client frames in, ``Message`` / ``ControlFrame`` events out.

    Args:
        max_message_size: largest data message, fragments included, in bytes
            (``None``: no limit); beyond it ``WebSocketError(1009)``.
    """

    def __init__(self, max_message_size: int | None = None) -> None:
        self._buffer = bytearray()
        self._limit = max_message_size
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_size = 0

    def feed(self, data: bytes) -> list[Message | ControlFrame]:
        """Add bytes from the client; return every event they complete.

        Raises:
            WebSocketError: the client broke the protocol; nothing more may be
                fed after it.
        """
        buffer: bytes | bytearray = self._buffer
        if buffer:
            buffer += data
        else:
            # The common case, a read of whole frames with nothing left over
            # from the last one: parse ``data`` itself, no copy into the buffer.
            buffer = data
        events: list[Message | ControlFrame] = []
        start = 0
        end = len(buffer)
        while end - start >= 2:
            first = buffer[start]
            second = buffer[start + 1]
            opcode = check_frame(first, second, self._fragment_opcode)
            final = first & 0x80
            size = second & 0x7F
            header = 6
            if size == 126:
                header = 8
                if end - start < header:
                    break
                (size,) = struct.unpack_from("!H", buffer, start + 2)
            elif size == 127:
                header = 14
                if end - start < header:
                    break
                (size,) = struct.unpack_from("!Q", buffer, start + 2)
                if size >> 63:
                    raise WebSocketError(1002, "frame length has its high bit set")
            # An empty fragment counts as one byte: endless empty fragments
            # must reach the limit too.
            if (
                self._limit is not None
                and opcode < CLOSE
                and self._fragment_size + (size or 1) > self._limit
            ):
                raise WebSocketError(1009, "message too big")
            if end - start < header + size:
                break
            mask = buffer[start + header - 4 : start + header]
            payload = _unmask(buffer[start + header : start + header + size], mask)
            start += header + size
            if opcode >= CLOSE:
                events.append(ControlFrame(opcode, payload))
                continue
            if final and not self._fragment_opcode:
                events.append(_message(opcode, payload))
                continue
            if not self._fragment_opcode:
                self._fragment_opcode = opcode
            self._fragments.append(payload)
            self._fragment_size += size or 1
            if final:
                whole = b"".join(self._fragments)
                events.append(_message(self._fragment_opcode, whole))
                self._fragments = []
                self._fragment_opcode = 0
                self._fragment_size = 0
        if buffer is data:
            if start < end:
                self._buffer += memoryview(data)[start:]  # a frame's first part
        elif start:
            del self._buffer[:start]
        return events


def _message(opcode: int, payload: bytes) -> Message:
    if opcode == TEXT:
        try:
            payload.decode()
        except UnicodeDecodeError:
            raise WebSocketError(1007, "text message is not UTF-8") from None
    return Message(opcode, payload)


class FrameChecker:
    """Client frames in, nothing out: the RFC 6455 rules of ``check_frame`` for
    a server whose own WebSocket library drops the TCP connection on a broken
    frame without a close code (hypercorn's wsproto), so that the client gets
    the close frame ``WebSocketError.code`` names.

    Cheap enough to run in front of another decoder: data payloads are
    skipped, never buffered nor unmasked (so a text message that is not UTF-8
    goes unnoticed here); close payloads (125 bytes at most) are checked too.

    Args:
        compressed: permessage-deflate was negotiated (RSV1 allowed on the
            first frame of a data message).
    """

    def __init__(self, *, compressed: bool = False) -> None:
        self._compressed = compressed
        """permessage-deflate was negotiated: RSV1 may mark a message's first frame."""
        self._buffer = bytearray()
        """A frame head, or a whole control frame, not complete yet."""
        self._skip = 0
        """Payload bytes of the current data frame still to come."""
        self._in_message = 0
        self.closing = False
        """The client sent a close frame: nothing but the server's close may follow."""

    @property
    def compressed(self) -> bool:
        """permessage-deflate was negotiated."""
        return self._compressed

    def feed(self, data: bytes) -> None:
        """Check the frames ``data`` continues.

        Raises:
            WebSocketError: the client broke the protocol; nothing more may be
                fed after it.
        """
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip :]
            self._skip = 0
        buffer = self._buffer
        buffer += data
        start = 0
        end = len(buffer)
        try:
            while end - start >= 2:
                first = buffer[start]
                second = buffer[start + 1]
                opcode = check_frame(first, second, self._in_message, self._compressed)
                size = second & 0x7F
                header = 6
                if size == 126:
                    header = 8
                elif size == 127:
                    header = 14
                if end - start < header:
                    return
                if size == 126:
                    (size,) = struct.unpack_from("!H", buffer, start + 2)
                elif size == 127:
                    (size,) = struct.unpack_from("!Q", buffer, start + 2)
                    if size >> 63:
                        raise WebSocketError(1002, "frame length has its high bit set")
                if opcode >= CLOSE:
                    if end - start < header + size:
                        return
                    if opcode == CLOSE:
                        mask = bytes(buffer[start + header - 4 : start + header])
                        parse_close(
                            _unmask(bytes(buffer[start + header : start + header + size]), mask)
                        )
                        self.closing = True
                    start += header + size
                    continue
                if opcode != CONTINUATION and not first & 0x80:
                    self._in_message = opcode
                elif opcode == CONTINUATION and first & 0x80:
                    self._in_message = 0
                available = end - start - header
                if size > available:
                    self._skip = size - available
                    start = end
                    return
                start += header + size
        finally:
            del buffer[:start]
