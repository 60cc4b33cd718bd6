"""The ``json`` hub protocol: compact JSON records terminated by 0x1E (sans-IO).

Writing follows the .NET server's property order exactly (``signalr-protocol.md``
section 4.2), because client test suites and captures compare bytes; reading is
order-independent, because the JS client writes ``type`` last. What the reader
accepts and rejects mirrors ``JsonHubProtocol.cs``: unknown properties and unknown
message types are skipped, a missing required property or a badly typed one is
a :class:`RemoteProtocolError` that closes the connection.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

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

__all__ = ["JsonHubProtocol", "JsonMessageDecoder"]

RECORD_SEPARATOR: Final = b"\x1e"

_MISSING: Final[Any] = object()
_PING: Final = Ping()
_EMPTY: Final[Mapping[str, str]] = {}

_Addressed = Invocation | StreamInvocation | StreamItem | Completion | CancelInvocation


# -- writing ------------------------------------------------------------------
#
# Each builder returns a dict whose insertion order is the wire order (orjson
# keeps it); one orjson.dumps call per record is several times faster than
# assembling the record from pieces.


def _head(kind: int, m: _Addressed) -> dict[str, Any]:
    """``type``, then ``headers`` and ``invocationId`` when they are not empty."""
    record: dict[str, Any] = {"type": kind}
    if m.headers:
        record["headers"] = dict(m.headers)
    if m.invocation_id:
        record["invocationId"] = m.invocation_id
    return record


def _with_call(record: dict[str, Any], m: Invocation | StreamInvocation) -> dict[str, Any]:
    record["target"] = m.target
    record["arguments"] = m.arguments
    if m.stream_ids:
        record["streamIds"] = m.stream_ids
    return record


def _write_invocation(m: Invocation) -> dict[str, Any]:
    return _with_call(_head(1, m), m)


def _write_stream_invocation(m: StreamInvocation) -> dict[str, Any]:
    return _with_call(_head(4, m), m)


def _write_stream_item(m: StreamItem) -> dict[str, Any]:
    record = _head(2, m)
    record["item"] = m.item
    return record


def _write_completion(m: Completion) -> dict[str, Any]:
    record = _head(3, m)
    if m.error is not None:
        record["error"] = m.error
    elif m.has_result:
        # Non-streaming methods always answer with a result, null for void ones.
        record["result"] = m.result
    return record


def _write_close(m: Close) -> dict[str, Any]:
    record: dict[str, Any] = {"type": 7}
    if m.error is not None:
        record["error"] = m.error
    if m.allow_reconnect:
        record["allowReconnect"] = True
    return record


_WRITERS: Final[dict[type, Callable[[Any], dict[str, Any]]]] = {
    Invocation: _write_invocation,
    StreamInvocation: _write_stream_invocation,
    StreamItem: _write_stream_item,
    Completion: _write_completion,
    CancelInvocation: lambda m: _head(5, m),
    Close: _write_close,
    Ack: lambda m: {"type": 8, "sequenceId": m.sequence_id},
    Sequence: lambda m: {"type": 9, "sequenceId": m.sequence_id},
}

_PING_RECORD: Final = b'{"type":6}' + RECORD_SEPARATOR


def _default(value: Any) -> Any:
    """orjson's fallback for payload values it does not know natively.

    Binary data travels as Base64 in JSON (SPEC-HUB), the way the .NET server
    writes ``byte[]``; read-only mappings (e.g. headers echoed back) become objects.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


# -- reading ------------------------------------------------------------------


def _wrong_type(name: str, expected: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"Expected '{name}' to be of type {expected}.")


def _required_string(record: dict[str, Any], name: str) -> str:
    # The reference treats "" like a missing value here (string.IsNullOrEmpty).
    value = record.get(name)
    if type(value) is str and value:
        return value
    if value is None or value == "":
        raise RemoteProtocolError(Texts.missing_property(name))
    raise _wrong_type(name, "String")


def _optional_id(record: dict[str, Any]) -> str | None:
    # Absent, null and "" all mean a non-blocking invocation.
    value = record.get("invocationId")
    if type(value) is str:
        return value or None
    if value is None:
        return None
    raise _wrong_type("invocationId", "String")


def _arguments(record: dict[str, Any]) -> list[Any]:
    value = record.get("arguments", _MISSING)
    if type(value) is list:
        return value
    if value is _MISSING:
        raise RemoteProtocolError(Texts.missing_property("arguments"))
    raise _wrong_type("arguments", "Array")


def _stream_ids(record: dict[str, Any]) -> list[str] | None:
    value = record.get("streamIds")
    if value is None:
        return None
    if type(value) is list and all(type(item) is str for item in value):
        return value
    raise _wrong_type("streamIds", "Array of String")


def _headers(record: dict[str, Any]) -> Mapping[str, str]:
    value = record.get("headers")
    if value is None:
        return _EMPTY
    if type(value) is not dict:
        raise _wrong_type("headers", "Object")
    for key, item in value.items():
        if type(item) is not str:
            raise RemoteProtocolError(Texts.header_not_string(key))
    return value


def _optional_string(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is None or type(value) is str:
        return value
    raise _wrong_type(name, "String")


def _sequence_id(record: dict[str, Any]) -> int:
    value = record.get("sequenceId")
    if type(value) is int:
        return value
    if value is None:
        raise RemoteProtocolError(Texts.missing_property("sequenceId"))
    raise _wrong_type("sequenceId", "Number")


def _read_invocation(record: dict[str, Any]) -> Invocation:
    # Positional: attrs' __init__ takes keywords at about twice the cost, on
    # the path every call takes.
    return Invocation(
        _required_string(record, "target"),
        _arguments(record),
        _optional_id(record),
        _stream_ids(record),
        _headers(record),
    )


def _read_stream_invocation(record: dict[str, Any]) -> StreamInvocation:
    return StreamInvocation(
        invocation_id=_required_string(record, "invocationId"),
        target=_required_string(record, "target"),
        arguments=_arguments(record),
        stream_ids=_stream_ids(record),
        headers=_headers(record),
    )


def _read_stream_item(record: dict[str, Any]) -> StreamItem:
    invocation_id = _required_string(record, "invocationId")
    item = record.get("item", _MISSING)
    if item is _MISSING:
        raise RemoteProtocolError(Texts.missing_property("item"))
    return StreamItem(invocation_id, item, _headers(record))


def _read_completion(record: dict[str, Any]) -> Completion:
    invocation_id = _required_string(record, "invocationId")
    headers = _headers(record)
    # ``"error":null`` counts as no error, but a ``result`` key counts even when null.
    error = _optional_string(record, "error")
    result = record.get("result", _MISSING)
    if result is _MISSING:
        return Completion(invocation_id, error=error, headers=headers)
    if error is not None:
        raise RemoteProtocolError(Texts.ERROR_AND_RESULT)
    return Completion(invocation_id, result, None, True, headers)


def _read_close(record: dict[str, Any]) -> Close:
    error = _optional_string(record, "error")
    allow_reconnect = record.get("allowReconnect")
    if allow_reconnect is None:
        allow_reconnect = False
    elif type(allow_reconnect) is not bool:
        raise _wrong_type("allowReconnect", "Boolean")
    return Close(error, allow_reconnect)


_READERS: Final[dict[int, Callable[[dict[str, Any]], HubMessage]]] = {
    1: _read_invocation,
    2: _read_stream_item,
    3: _read_completion,
    4: _read_stream_invocation,
    5: lambda r: CancelInvocation(_required_string(r, "invocationId"), headers=_headers(r)),
    6: lambda r: _PING,  # whatever else the record holds
    7: _read_close,
    8: lambda r: Ack(_sequence_id(r)),
    9: lambda r: Sequence(_sequence_id(r)),
}


def _read_record(record: object) -> HubMessage | None:
    """One parsed record to a message; ``None`` for a type we do not know."""
    if type(record) is not dict:
        raise RemoteProtocolError("Expected a JSON object for a hub message.")
    kind = record.get("type")
    if type(kind) is not int:
        if kind is None:
            raise RemoteProtocolError(Texts.missing_property("type"))
        raise _wrong_type("type", "Number")
    reader = _READERS.get(kind)
    # Future message types: old peers ignore them (the reference does too).
    return None if reader is None else reader(record)


class JsonMessageDecoder(RecordDecoder):
    """Splits a JSON byte stream on 0x1E and turns each record into a message.

    Bytes that end mid-record wait for the next ``receive_data``. The common
    case, a chunk of whole records, is parsed in place without copying it.
    """

    __slots__ = ("_scanned",)

    def __init__(self, max_message_size: int | None = None) -> None:
        super().__init__(max_message_size)
        self._scanned = 0  # bytes before this hold no separator past _start

    def _shifted(self, by: int) -> None:
        self._scanned -= by

    def _next_message(self) -> HubMessage | None:
        buffer = self._buffer
        limit = self._max_message_size
        while True:
            start = self._start
            end = buffer.find(RECORD_SEPARATOR, self._scanned)
            if end < 0:
                self._scanned = len(buffer)
                if limit is not None and len(buffer) - start > limit:
                    raise RemoteProtocolError(Texts.max_message_size_exceeded(limit))
                return None
            self._start = self._scanned = end + 1
            if limit is not None and end + 1 - start > limit:
                raise RemoteProtocolError(Texts.max_message_size_exceeded(limit))
            try:
                record = orjson.loads(memoryview(buffer)[start:end])
            except orjson.JSONDecodeError as exc:
                raise RemoteProtocolError(f"Invalid JSON in a hub message: {exc}") from exc
            message = _read_record(record)
            if message is not None:
                return message


class JsonHubProtocol:
    """``json`` version 2 over Text transports; stateless, one per server is enough."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return "json"

    @property
    def version(self) -> int:
        return 2

    @property
    def transfer_format(self) -> TransferFormat:
        return TransferFormat.TEXT

    def encode(self, message: HubMessage) -> bytes:
        """One record in the .NET server's property order, 0x1E-terminated.

        Raises:
            LocalProtocolError: ``message`` is not a hub message, or a payload
                value cannot be written as JSON (an unknown type, an integer
                beyond 64 bits, a string with lone surrogates).
        """
        writer = _WRITERS.get(type(message))
        if writer is None:
            if type(message) is Ping:
                return _PING_RECORD
            raise LocalProtocolError(f"Cannot encode {message!r}: not a hub message.")
        try:
            return orjson.dumps(writer(message), default=_default) + RECORD_SEPARATOR
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            raise LocalProtocolError(
                f"Cannot encode {type(message).__name__} as JSON: {exc}"
            ) from exc

    def decoder(self, max_message_size: int | None = None) -> JsonMessageDecoder:
        """A decoder for one connection; ``max_message_size`` in bytes, ``None`` = no limit."""
        return JsonMessageDecoder(max_message_size)
