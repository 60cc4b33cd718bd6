"""The ``messagepack`` hub protocol: varint-length-prefixed MessagePack arrays (sans-IO).

Layouts follow ``signalr-protocol.md`` section 5 and ``MessagePackHubProtocolWorker.cs``.
The writer always emits the full arrays the .NET server writes (six-item
Invocation, three-item Close, a header map even when empty) so that captures
compare byte for byte; the reader also takes the shorter arrays older clients
send, skips unknown message types, ignores trailing array items, and turns every
malformed body into a :class:`RemoteProtocolError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgpack

from .base import TransferFormat
from .errors import LocalProtocolError, RemoteProtocolError, Texts
from .messages import (
    Ack,
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    Ping,
    Sequence,
    StreamInvocation,
    StreamItem,
)
from .records import RecordDecoder

__all__ = ["MessagePackHubProtocol", "MessagePackMessageDecoder"]

MAX_RECORD_LENGTH: Final = 2**31 - 1
"""The varint prefix stops at 5 bytes, 31 bits: the reference refuses bigger records."""

_TOO_LARGE: Final = "Messages over 2GB in size are not supported."
_INVALID_RESULT_KIND: Final = "Invalid invocation result kind."

_ERROR_RESULT: Final = 1
_VOID_RESULT: Final = 2
_NON_VOID_RESULT: Final = 3

_PING: Final = Ping()
_EMPTY_MAP: Final[dict[str, str]] = {}  # never mutated: only handed to the packer
_ONE_BYTE_PREFIX: Final = tuple(bytes((n,)) for n in range(0x80))


def _frame(body: bytes) -> bytes:
    """``varint(len(body)) + body``: 7 bits per byte, least significant group first."""
    length = len(body)
    if length < 0x80:
        return _ONE_BYTE_PREFIX[length] + body
    if length > MAX_RECORD_LENGTH:
        raise LocalProtocolError(_TOO_LARGE)
    prefix = bytearray()
    while length >= 0x80:
        prefix.append((length & 0x7F) | 0x80)
        length >>= 7
    prefix.append(length)
    return bytes(prefix) + body


# -- writing ------------------------------------------------------------------


def _headers_out(headers: Mapping[str, str]) -> Mapping[str, str]:
    # The packer takes only real dicts; the messages hold read-only proxies.
    return dict(headers) if headers else _EMPTY_MAP


def _write_completion(m: Completion) -> list[Any]:
    headers = _headers_out(m.headers)
    if m.error is not None:
        return [3, headers, m.invocation_id, _ERROR_RESULT, m.error]
    if m.has_result:
        # ResultKind 3 even for None: the msgpack spelling of JSON's "result":null.
        return [3, headers, m.invocation_id, _NON_VOID_RESULT, m.result]
    return [3, headers, m.invocation_id, _VOID_RESULT]


# Layouts as data; an empty Invocation id is written as nil, as the reference
# does (both mean non-blocking).
_WRITERS: Final[dict[type, Callable[[Any], list[Any]]]] = {
    Invocation: lambda m: [
        1, _headers_out(m.headers), m.invocation_id or None, m.target, m.arguments, m.stream_ids
    ],
    StreamInvocation: lambda m: [
        4, _headers_out(m.headers), m.invocation_id, m.target, m.arguments, m.stream_ids
    ],
    StreamItem: lambda m: [2, _headers_out(m.headers), m.invocation_id, m.item],
    Completion: _write_completion,
    CancelInvocation: lambda m: [5, _headers_out(m.headers), m.invocation_id],
    Close: lambda m: [7, m.error, m.allow_reconnect],
    Ack: lambda m: [8, m.sequence_id],
    Sequence: lambda m: [9, m.sequence_id],
}  # fmt: skip

_PING_RECORD: Final = b"\x02\x91\x06"


# -- reading ------------------------------------------------------------------

# Array positions, named so a short array reports the first missing property.
_FIELDS: Final[dict[int, tuple[str, ...]]] = {
    1: ("type", "headers", "invocationId", "target", "arguments"),
    2: ("type", "headers", "invocationId", "item"),
    3: ("type", "headers", "invocationId", "resultKind"),
    4: ("type", "headers", "invocationId", "target", "arguments"),
    5: ("type", "headers", "invocationId"),
    6: ("type",),
    7: ("type", "error"),
    8: ("type", "sequenceId"),
    9: ("type", "sequenceId"),
}


def _wrong_type(name: str, expected: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"Reading '{name}' as {expected} failed.")


def _headers_in(value: Any) -> Mapping[str, str]:
    if type(value) is not dict:
        raise _wrong_type("headers", "Map")
    for key, item in value.items():
        if type(key) is not str:
            raise _wrong_type("headers key", "String")
        if type(item) is not str:
            raise RemoteProtocolError(Texts.header_not_string(key))
    return value


def _required_string(value: Any, name: str) -> str:
    if type(value) is str:
        return value
    if value is None:
        raise RemoteProtocolError(Texts.missing_property(name))
    raise _wrong_type(name, "String")


def _arguments(value: Any) -> list[Any]:
    if type(value) is list:
        return value
    raise _wrong_type("arguments", "Array")


def _stream_ids(items: list[Any]) -> list[str] | None:
    # Clients older than streamIds send five-item invocations.
    if len(items) < 6:
        return None
    value = items[5]
    if type(value) is list and all(type(item) is str for item in value):
        return value
    raise _wrong_type("streamIds", "Array of String")


def _sequence_id(value: Any) -> int:
    if type(value) is int:
        return value
    raise _wrong_type("sequenceId", "Int64")


def _read_invocation(items: list[Any]) -> Invocation:
    invocation_id = items[2]
    if invocation_id is not None and type(invocation_id) is not str:
        raise _wrong_type("invocationId", "String")
    return Invocation(  # positional: see the JSON decoder
        _required_string(items[3], "target"),
        _arguments(items[4]),
        # nil and "" both mean non-blocking (the reference normalises "" to null).
        invocation_id or None,
        _stream_ids(items),
        _headers_in(items[1]),
    )


def _read_stream_invocation(items: list[Any]) -> StreamInvocation:
    return StreamInvocation(
        invocation_id=_required_string(items[2], "invocationId"),
        target=_required_string(items[3], "target"),
        arguments=_arguments(items[4]),
        stream_ids=_stream_ids(items),
        headers=_headers_in(items[1]),
    )


def _read_stream_item(items: list[Any]) -> StreamItem:
    return StreamItem(
        _required_string(items[2], "invocationId"), items[3], headers=_headers_in(items[1])
    )


def _read_completion(items: list[Any]) -> Completion:
    headers = _headers_in(items[1])
    invocation_id = _required_string(items[2], "invocationId")
    kind = items[3]
    if type(kind) is not int or kind not in (_ERROR_RESULT, _VOID_RESULT, _NON_VOID_RESULT):
        raise RemoteProtocolError(_INVALID_RESULT_KIND)
    if kind == _VOID_RESULT:
        return Completion(invocation_id, headers=headers)
    name = "error" if kind == _ERROR_RESULT else "result"
    if len(items) < 5:
        raise RemoteProtocolError(Texts.missing_property(name))
    if kind == _NON_VOID_RESULT:
        return Completion(invocation_id, items[4], None, True, headers)
    error = items[4]
    if type(error) is not str:
        raise _wrong_type("error", "String")
    return Completion(invocation_id, error=error, headers=headers)


def _read_close(items: list[Any]) -> Close:
    error = items[1]
    if error is not None and type(error) is not str:
        raise _wrong_type("error", "String")
    # Two-item Closes come from peers that predate allowReconnect.
    allow_reconnect = items[2] if len(items) > 2 else False
    if type(allow_reconnect) is not bool:
        raise _wrong_type("allowReconnect", "Boolean")
    return Close(error, allow_reconnect)


_READERS: Final[dict[int, Callable[[list[Any]], HubMessage]]] = {
    1: _read_invocation,
    2: _read_stream_item,
    3: _read_completion,
    4: _read_stream_invocation,
    5: lambda i: CancelInvocation(
        _required_string(i[2], "invocationId"), headers=_headers_in(i[1])
    ),
    6: lambda i: _PING,
    7: _read_close,
    8: lambda i: Ack(_sequence_id(i[1])),
    9: lambda i: Sequence(_sequence_id(i[1])),
}


def _read_record(body: memoryview) -> HubMessage | None:
    """One record body to a message; ``None`` for a type we do not know."""
    try:
        # Timestamps (what .NET writes for DateTime) become aware datetimes,
        # other ext types msgpack.ExtType; bin becomes bytes, str must be UTF-8.
        items = msgpack.unpackb(body, raw=False, strict_map_key=False, timestamp=3)
    except Exception as exc:
        # unpackb is a pure function of the bytes, so whatever it raises
        # (ValueError, TypeError for unhashable map keys, OverflowError for
        # far-off timestamps, ...) means the peer sent a malformed body.
        raise RemoteProtocolError(f"Invalid MessagePack in a hub message: {exc!r}") from exc
    if type(items) is not list or not items:
        raise RemoteProtocolError("Expected a MessagePack array for a hub message.")
    kind = items[0]
    if type(kind) is not int:
        raise _wrong_type("messageType", "Int32")
    reader = _READERS.get(kind)
    if reader is None:
        return None  # a future message type: ignored, as the reference does
    fields = _FIELDS[kind]
    if len(items) < len(fields):
        raise RemoteProtocolError(Texts.missing_property(fields[len(items)]))
    return reader(items)


class MessagePackMessageDecoder(RecordDecoder):
    """Cuts a MessagePack byte stream into varint-prefixed records and decodes them.

    An oversize record is refused as soon as its prefix is read, before its
    body is buffered.
    """

    __slots__ = ()

    def _next_message(self) -> HubMessage | None:
        buffer = self._buffer
        limit = self._max_message_size
        while True:
            start = self._start
            available = len(buffer) - start
            if not available:
                return None
            length = buffer[start]
            prefix = 1
            if length & 0x80:
                length, prefix = _read_varint(buffer, start)
                if not prefix:
                    if limit is not None and available > limit:
                        raise RemoteProtocolError(Texts.max_message_size_exceeded(limit))
                    return None
            end = start + prefix + length
            if limit is not None and end - start > limit:
                raise RemoteProtocolError(Texts.max_message_size_exceeded(limit))
            if end > len(buffer):
                return None
            self._start = end
            message = _read_record(memoryview(buffer)[start + prefix : end])
            if message is not None:
                return message


def _read_varint(buffer: bytes | bytearray, start: int) -> tuple[int, int]:
    """``(length, prefix size)``; a prefix size of 0 means the prefix is incomplete."""
    length = 0
    for index in range(5):
        if start + index >= len(buffer):
            return 0, 0
        byte = buffer[start + index]
        if index == 4 and byte > 0x07:
            # A sixth byte, or more than 31 bits.
            raise RemoteProtocolError(_TOO_LARGE)
        length |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return length, index + 1
    raise AssertionError("unreachable: the fifth byte either ends the prefix or raises")


class _PackerPerThread(threading.local):
    """A reusable Packer is twice as fast as ``packb``, but not safe to share
    across threads (it calls back into Python for datetimes), hence one per thread."""

    def __init__(self) -> None:
        self.packer = msgpack.Packer(use_bin_type=True, datetime=True)


class MessagePackHubProtocol:
    """``messagepack`` version 2 over Binary transports; one per server is enough."""

    __slots__ = ("_local",)

    def __init__(self) -> None:
        self._local = _PackerPerThread()

    @property
    def name(self) -> str:
        return "messagepack"

    @property
    def version(self) -> int:
        return 2

    @property
    def transfer_format(self) -> TransferFormat:
        return TransferFormat.BINARY

    def encode(self, message: HubMessage) -> bytes:
        """One varint-prefixed record in the layout the .NET server writes.

        Raises:
            LocalProtocolError: ``message`` is not a hub message, or a payload
                value cannot be packed (an unknown type, an integer beyond 64
                bits, a naive datetime, a record over 2 GB).
        """
        writer = _WRITERS.get(type(message))
        if writer is None:
            if type(message) is Ping:
                return _PING_RECORD
            raise LocalProtocolError(f"Cannot encode {message!r}: not a hub message.")
        try:
            body: bytes = self._local.packer.pack(writer(message))
        except (TypeError, ValueError, OverflowError) as exc:
            raise LocalProtocolError(
                f"Cannot encode {type(message).__name__} as MessagePack: {exc}"
            ) from exc
        return _frame(body)

    def decoder(self, max_message_size: int | None = None) -> MessagePackMessageDecoder:
        """A decoder for one connection; ``max_message_size`` in bytes, ``None`` = no limit."""
        return MessagePackMessageDecoder(max_message_size)
