"""The nine SignalR hub messages as frozen value objects.

Field names follow the wire (``invocationId`` -> ``invocation_id``). Optional
fields that are absent on the wire are ``None`` (or empty for collections) here,
and codecs omit them when writing: the reference never writes ``null`` for an
absent optional.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType
from typing import Any, ClassVar, Final

import attrs

__all__ = [
    "Ack",
    "CancelInvocation",
    "Close",
    "Completion",
    "HubMessage",
    "Invocation",
    "MessageType",
    "Ping",
    "Sequence",
    "StreamInvocation",
    "StreamItem",
]

_EMPTY_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})


def _headers(value: Mapping[str, str] | None) -> Mapping[str, str]:
    if not value:
        return _EMPTY_HEADERS
    return MappingProxyType(dict(value))


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(value) if value else ()


def _arguments(value: Any) -> tuple[Any, ...]:
    return tuple(value)


class MessageType(IntEnum):
    """The ``type`` discriminator of every hub message (SPEC-HUB)."""

    INVOCATION = 1
    STREAM_ITEM = 2
    COMPLETION = 3
    STREAM_INVOCATION = 4
    CANCEL_INVOCATION = 5
    PING = 6
    CLOSE = 7
    ACK = 8
    SEQUENCE = 9


@attrs.frozen
class Invocation:
    """Type 1: call ``target`` with ``arguments``.

    Without ``invocation_id`` the call is non-blocking: the callee must send
    nothing back, not even an error.
    """

    target: str
    """The method name as the sender wrote it."""
    arguments: tuple[Any, ...] = attrs.field(default=(), converter=_arguments)
    """Positional arguments, already decoded from the payload protocol."""
    invocation_id: str | None = None
    """Present when the caller waits for a Completion."""
    stream_ids: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    """Ids of client-to-server streams that feed stream parameters."""
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_headers, hash=False)
    """Free-form string headers (tracing); empty when absent."""

    type: ClassVar[MessageType] = MessageType.INVOCATION


@attrs.frozen
class StreamInvocation:
    """Type 4: call a server-to-client streaming method."""

    invocation_id: str
    target: str
    arguments: tuple[Any, ...] = attrs.field(default=(), converter=_arguments)
    stream_ids: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_headers, hash=False)

    type: ClassVar[MessageType] = MessageType.STREAM_INVOCATION


@attrs.frozen
class StreamItem:
    """Type 2: one item of a stream (server-to-client or an upload)."""

    invocation_id: str
    item: Any
    """Any payload value; ``None`` is a legitimate item."""
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_headers, hash=False)

    type: ClassVar[MessageType] = MessageType.STREAM_ITEM


@attrs.frozen
class Completion:
    """Type 3: the end of an invocation or a stream.

    Exactly one of three shapes: a result (``has_result``; the result may be
    ``None``, written as ``"result":null``), an ``error``, or neither (stream
    completions and void completions in MessagePack's ResultKind 2).
    Use the ``with_result`` / ``with_error`` / ``empty`` constructors.
    """

    invocation_id: str
    result: Any = None
    error: str | None = None
    has_result: bool = False
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_headers, hash=False)

    type: ClassVar[MessageType] = MessageType.COMPLETION

    def __attrs_post_init__(self) -> None:
        if self.error is not None and self.has_result:
            raise ValueError("a Completion carries either a result or an error, not both")

    @classmethod
    def with_result(cls, invocation_id: str, result: Any) -> Completion:
        # Positional: one per call answered, and keywords cost twice as much.
        return cls(invocation_id, result, None, True)

    @classmethod
    def with_error(cls, invocation_id: str, error: str) -> Completion:
        return cls(invocation_id, error=error)

    @classmethod
    def empty(cls, invocation_id: str) -> Completion:
        return cls(invocation_id)


@attrs.frozen
class CancelInvocation:
    """Type 5: the client cancels a server-to-client stream."""

    invocation_id: str
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_headers, hash=False)

    type: ClassVar[MessageType] = MessageType.CANCEL_INVOCATION


@attrs.frozen
class Ping:
    """Type 6: keep-alive. Never carries headers."""

    type: ClassVar[MessageType] = MessageType.PING


@attrs.frozen
class Close:
    """Type 7: the sender is closing the connection."""

    error: str | None = None
    """Why, when the close is not a normal one."""
    allow_reconnect: bool = False
    """Whether the client should reconnect (automatic reconnect policies)."""

    type: ClassVar[MessageType] = MessageType.CLOSE


@attrs.frozen
class Ack:
    """Type 8: stateful reconnect, highest sequence id processed."""

    sequence_id: int

    type: ClassVar[MessageType] = MessageType.ACK


@attrs.frozen
class Sequence:
    """Type 9: stateful reconnect, id of the next message to be (re)sent."""

    sequence_id: int

    type: ClassVar[MessageType] = MessageType.SEQUENCE


HubMessage = (
    Invocation
    | StreamInvocation
    | StreamItem
    | Completion
    | CancelInvocation
    | Ping
    | Close
    | Ack
    | Sequence
)
"""Any of the nine hub messages."""
