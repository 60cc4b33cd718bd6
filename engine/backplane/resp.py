"""RESP2, Redis's wire format, for the backplane's two hot paths (sans-IO).

The backplane publishes every cross-node send and receives every message of
the channels it subscribes to; through coredis each costs a request object, a
future, a memory-stream hop and a dict per message (docs: README, Scale out).
These two paths need four shapes only, so they are written here directly:

- out: commands as arrays of bulk strings (``command``, ``publish``);
- in: integers (PUBLISH's receiver count), simple strings and errors (AUTH,
  SELECT), bulk strings and arrays (``message``, ``subscribe`` and
  ``unsubscribe`` pushes of a subscribed connection).

``RespParser`` follows h11's verbs: ``feed(bytes)``, then ``next()`` until it
returns ``NEED_DATA``. Everything else (claims, sorted sets, ``PUBSUB NUMSUB``,
an application's own keys) stays on coredis.
"""

from __future__ import annotations

from typing import Final

__all__ = ["NEED_DATA", "RespError", "RespParser", "RespProtocolError", "command", "publish"]


class RespError:
    """An error reply (``-ERR ...``): a value, as the server sent it."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"RespError({self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RespError) and other.message == self.message

    __hash__ = None  # type: ignore[assignment]


class RespProtocolError(ValueError):
    """Bytes that are not RESP2: the connection cannot be trusted any further."""


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()
"""``RespParser.next``: the buffered bytes end inside a reply."""


def command(*parts: bytes) -> bytes:
    """One command as RESP bytes (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def publish(channel: bytes, data: bytes) -> bytes:
    """``PUBLISH channel data`` as RESP bytes (the backplane's hottest command)."""
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel),
        channel,
        len(data),
        data,
    )


_MESSAGE = b"*3\r\n$7\r\nmessage\r\n$"
"""How every message of a subscribed connection starts (then the channel's length)."""


class RespParser:
    """Replies out of a byte stream. Values: ``int``, ``bytes`` (bulk and simple
    strings), ``list`` (arrays, nested), ``None`` (nil), ``RespError``."""

    __slots__ = ("_buffer", "_position")

    def __init__(self) -> None:
        self._buffer = b""
        self._position = 0

    def feed(self, data: bytes | bytearray) -> None:
        if self._position:
            self._buffer = self._buffer[self._position :] + data
            self._position = 0
        else:
            self._buffer += data

    def next(self) -> object:
        """The next complete reply, or ``NEED_DATA``.

        Raises:
            RespProtocolError: the stream is not RESP2.
        """
        buffer = self._buffer
        start = self._position
        if buffer.startswith(_MESSAGE, start):
            # A subscribed connection's message, the bulk of what arrives:
            # read in place, without the general parser's recursion.
            head = start + len(_MESSAGE)
            end = buffer.find(b"\r\n", head)
            if end >= 0:
                channel_end = end + 2 + _length(buffer, head, end)
                size_end = buffer.find(b"\r\n", channel_end + 3)
                if size_end >= 0 and buffer[channel_end + 2] == 0x24:  # $
                    data_end = size_end + 2 + _length(buffer, channel_end + 3, size_end)
                    if len(buffer) >= data_end + 2:
                        self._position = data_end + 2
                        return [
                            b"message",
                            buffer[end + 2 : channel_end],
                            buffer[size_end + 2 : data_end],
                        ]
        parsed = _value(buffer, start)
        if parsed is None:
            return NEED_DATA
        value, self._position = parsed
        return value


def _length(buffer: bytes, start: int, end: int) -> int:
    try:
        return int(buffer[start:end])
    except ValueError:
        raise RespProtocolError(f"a malformed length: {buffer[start:end]!r}") from None


def _value(buffer: bytes, start: int) -> tuple[object, int] | None:
    """The value starting at ``start`` and the position after it; ``None`` if
    the buffer ends first."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return None
    kind = buffer[start]
    try:
        if kind == 0x24:  # $: bulk string
            size = int(buffer[start + 1 : end])
            if size < 0:
                return None, end + 2
            stop = end + 2 + size
            if len(buffer) < stop + 2:
                return None
            return bytes(buffer[end + 2 : stop]), stop + 2
        if kind == 0x2A:  # *: array
            count = int(buffer[start + 1 : end])
            if count < 0:
                return None, end + 2
            items: list[object] = []
            position = end + 2
            for _ in range(count):
                parsed = _value(buffer, position)
                if parsed is None:
                    return None
                item, position = parsed
                items.append(item)
            return items, position
        if kind == 0x3A:  # :: integer
            return int(buffer[start + 1 : end]), end + 2
        if kind == 0x2B:  # +: simple string
            return bytes(buffer[start + 1 : end]), end + 2
        if kind == 0x2D:  # -: error
            return RespError(buffer[start + 1 : end].decode(errors="replace")), end + 2
    except ValueError:
        malformed = bytes(buffer[start:end])
        raise RespProtocolError(f"a malformed length or integer: {malformed!r}") from None
    raise RespProtocolError(f"an unknown RESP2 type byte: {bytes(buffer[start : start + 1])!r}")
