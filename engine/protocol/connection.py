"""One hub connection's protocol state, server side, h11-style (sans-IO).

Three verbs and no I/O: ``receive_data(bytes)`` what the transport read,
``next_event()`` until ``NEED_DATA``, and ``send(message) -> bytes`` /
``close(message) -> bytes`` for what the transport must write. The lifecycle::

    AWAITING_HANDSHAKE --handshake ok--> OPEN --Close either way / bad record--> CLOSED
             \\--handshake failed, or close() (cancel)--> CLOSED

is the ``_TRANSITIONS`` table below; a verb that has no row for the current
state is a caller bug and raises ``LocalProtocolError``. A peer that breaks the
protocol after the handshake moves the connection to CLOSED and raises
``RemoteProtocolError``; its ``close`` is the record to send back with
``close(exc.close)``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import Enum
from types import MappingProxyType
from typing import Final, TypeAlias

import attrs

from .base import HubProtocol, MessageDecoder, TransferFormat
from .errors import LocalProtocolError, RemoteProtocolError, Texts
from .handshake import (
    DEFAULT_MAX_MESSAGE_SIZE,
    SUCCESS_REPLY,
    HandshakeFailure,
    HandshakeParser,
    failure_reply,
    resolve_protocol,
)
from .messages import Close, HubMessage

__all__ = [
    "NEED_DATA",
    "ConnectionState",
    "Event",
    "HandshakeCompleted",
    "HandshakeFailed",
    "HubConnection",
    "NeedData",
]


class ConnectionState(Enum):
    """Where a connection is in its life."""

    AWAITING_HANDSHAKE = "AWAITING_HANDSHAKE"
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class NeedData(Enum):
    """The type of ``NEED_DATA``: ``next_event`` has nothing until more bytes arrive."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


@attrs.frozen
class HandshakeCompleted:
    """The handshake succeeded; send ``reply``, then hub records may flow."""

    protocol: HubProtocol
    """The agreed hub protocol (also ``HubConnection.protocol`` from now on)."""
    version: int
    """The version the client asked for; stateful reconnect needs 2."""
    reply: bytes = SUCCESS_REPLY
    """Exactly ``{}\\x1e``; over WebSockets it goes in the protocol's frame type."""
    stateful_reconnect: bool = False
    """Whether this connection resumes after a dropped transport: negotiate
    granted ``useStatefulReconnect`` and the client asked for version 2 (see
    ``HubConnection``). Then every record goes through a ``ResumableStream``."""


@attrs.frozen
class HandshakeFailed:
    """The handshake was refused; send ``reply``, then end the transport."""

    error: str
    """The exact text sent to the client."""
    reply: bytes
    """``{"error":"<error>"}\\x1e``."""
    detail: str | None = None
    """Why, for logs; never sent (see ``handshake.HandshakeFailure.detail``)."""


Event: TypeAlias = HandshakeCompleted | HandshakeFailed | HubMessage | NeedData
"""What ``next_event`` returns. A ``Close`` from the client is an event too."""


class _Trigger(Enum):
    HANDSHAKE_COMPLETED = "handshake completed"
    HANDSHAKE_FAILED = "handshake failed"
    CLOSE_RECEIVED = "receive a Close"
    CLOSE_SENT = "close"
    PROTOCOL_ERROR = "protocol error"


_S = ConnectionState
_TRANSITIONS: Final[Mapping[tuple[ConnectionState, _Trigger], ConnectionState]] = MappingProxyType(
    {
        (_S.AWAITING_HANDSHAKE, _Trigger.HANDSHAKE_COMPLETED): _S.OPEN,
        (_S.AWAITING_HANDSHAKE, _Trigger.HANDSHAKE_FAILED): _S.CLOSED,
        # close() before the handshake is done cancels it (e.g. the timeout).
        (_S.AWAITING_HANDSHAKE, _Trigger.CLOSE_SENT): _S.CLOSED,
        (_S.OPEN, _Trigger.CLOSE_RECEIVED): _S.CLOSED,
        (_S.OPEN, _Trigger.CLOSE_SENT): _S.CLOSED,
        (_S.OPEN, _Trigger.PROTOCOL_ERROR): _S.CLOSED,
        # Our own Close still goes out after the peer's Close or its error.
        (_S.CLOSED, _Trigger.CLOSE_SENT): _S.CLOSED,
    }
)
"""Every legal (state, trigger) pair and where it leads; nothing else is legal."""

# The states as module names: the checks below run for every message, and an
# enum member lookup (``ConnectionState.OPEN``) costs several times a global's
# in CPython 3.11.
_AWAITING_HANDSHAKE: Final = ConnectionState.AWAITING_HANDSHAKE
_OPEN: Final = ConnectionState.OPEN
_CLOSED: Final = ConnectionState.CLOSED

_NORMAL_CLOSE: Final = Close()


class HubConnection:
    """The protocol side of one client connection, after negotiate.

    Args:
        protocols: the hub protocols the server offers, by name
            (``{"json": JsonHubProtocol(), "messagepack": ...}``); the handshake
            matches names case-insensitively.
        transfer_formats: what this connection's transport can carry
            (``TransportType.transfer_formats``; SSE is Text only).
        max_message_size: the largest incoming record (the handshake
            included), in bytes; ``None`` for no limit.
        stateful_reconnect: whether negotiate granted ``useStatefulReconnect``
            to this connection. The handshake turns it on only with version 2;
            version 1 (what clients send when negotiate did not grant it) turns
            it off. A version 2 handshake on a connection that was not granted
            it is accepted as the reference accepts it, and runs as version 1:
            no Ack, no Sequence, no resume.
    """

    def __init__(
        self,
        protocols: Mapping[str, HubProtocol],
        transfer_formats: Collection[TransferFormat],
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        *,
        stateful_reconnect: bool = False,
    ) -> None:
        self._protocols = MappingProxyType(dict(protocols))
        self._transfer_formats = frozenset(transfer_formats)
        self._max_message_size = max_message_size
        self._stateful_reconnect = stateful_reconnect
        self._state = ConnectionState.AWAITING_HANDSHAKE
        self._handshake = HandshakeParser(max_message_size)
        self._inbox = bytearray()
        self._protocol: HubProtocol | None = None
        self._decoder: MessageDecoder | None = None
        # Our last word (a Close record or the handshake reply) goes out once.
        self._ended = False

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def protocol(self) -> HubProtocol:
        """The agreed hub protocol.

        Raises:
            LocalProtocolError: before a successful handshake.
        """
        if self._protocol is None:
            raise LocalProtocolError(f"no hub protocol was agreed (state {self._state.name})")
        return self._protocol

    def receive_data(self, data: bytes) -> None:
        """Hand over bytes read from the transport, in any split.

        Bytes received once CLOSED are dropped: the reference stops reading at
        a Close or an error, and so does everything after it here.
        """
        if self._state is _OPEN:
            if self._decoder is not None:
                self._decoder.receive_data(data)
        elif self._state is _AWAITING_HANDSHAKE:
            self._inbox += data

    def transport_lost(self) -> None:
        """The transport under a resumable connection dropped; another may resume it.

        The bytes of a record the old transport cut short are discarded: the
        next transport's bytes start a new record (the peer resends whatever
        we did not acknowledge). Records already complete are discarded too;
        read them with ``next_event`` first to keep them. Does nothing unless
        OPEN (after a Close or an error there is nothing to resume).
        """
        if self._state is ConnectionState.OPEN and self._protocol is not None:
            self._decoder = self._protocol.decoder(self._max_message_size)

    def next_event(self) -> Event:
        """The next thing that happened on the connection, or ``NEED_DATA``.

        Returns:
            ``HandshakeCompleted`` or ``HandshakeFailed`` first, then hub
            messages in order; a ``Close`` from the client moves to CLOSED.
            Records the client batched behind its handshake come right after
            ``HandshakeCompleted``, without another ``receive_data``.

        Raises:
            RemoteProtocolError: a malformed or oversize record; the state is
                now CLOSED and ``exc.close`` is the record to send back.
            LocalProtocolError: called in CLOSED (stop reading after a Close,
                a handshake failure or an error).
        """
        if self._state is _AWAITING_HANDSHAKE:
            return self._next_handshake_event()
        if self._state is _CLOSED or self._decoder is None:
            raise LocalProtocolError("the connection is closed; it has no more events")
        try:
            message = self._decoder.next_message()
        except RemoteProtocolError:
            self._transition(_Trigger.PROTOCOL_ERROR)
            raise
        if message is None:
            return NEED_DATA
        if isinstance(message, Close):
            self._transition(_Trigger.CLOSE_RECEIVED)
        return message

    def send(self, message: HubMessage) -> bytes:
        """Encode one hub message with the agreed protocol.

        Raises:
            LocalProtocolError: unless OPEN, or for a ``Close`` (use ``close``,
                which also ends the connection).
        """
        if isinstance(message, Close):
            raise LocalProtocolError("send a Close with close(), which also ends the connection")
        if self._state is not _OPEN or self._protocol is None:
            raise LocalProtocolError(
                f"can't send a {type(message).__name__} in state {self._state.name}"
            )
        return self._protocol.encode(message)

    def close(self, message: Close = _NORMAL_CLOSE) -> bytes:
        """End the connection from our side; return the last bytes to write.

        Args:
            message: the Close record, e.g. ``exc.close`` after a
                ``RemoteProtocolError``, or ``Close(allow_reconnect=True)`` on
                credential expiry. Default: a plain ``{"type":7}``.

        Returns:
            Before the handshake: the ``Handshake was canceled.`` reply (how the
            reference answers a handshake timeout). After it, even once the
            client closed or erred: the encoded ``message``. ``b""`` when our
            last word is already out (an earlier ``close`` or a handshake
            failure reply), so calling it twice is safe.
        """
        if self._ended:
            return b""
        self._transition(_Trigger.CLOSE_SENT)
        self._ended = True
        if self._protocol is None:
            return failure_reply(Texts.HANDSHAKE_CANCELED)
        return self._protocol.encode(message)

    def _next_handshake_event(self) -> Event:
        if not self._inbox:
            return NEED_DATA
        data = bytes(self._inbox)
        self._inbox.clear()
        parsed = self._handshake.feed(data)
        if parsed is None:
            return NEED_DATA
        if isinstance(parsed, HandshakeFailure):
            return self._handshake_failed(parsed)
        protocol = resolve_protocol(parsed, self._protocols, self._transfer_formats)
        if isinstance(protocol, HandshakeFailure):
            return self._handshake_failed(protocol)
        self._protocol = protocol
        self._decoder = protocol.decoder(self._max_message_size)
        if self._handshake.remainder:
            self._decoder.receive_data(self._handshake.remainder)
        self._transition(_Trigger.HANDSHAKE_COMPLETED)
        return HandshakeCompleted(
            protocol=protocol,
            version=parsed.version,
            stateful_reconnect=self._stateful_reconnect and parsed.version >= 2,
        )

    def _handshake_failed(self, failure: HandshakeFailure) -> HandshakeFailed:
        self._transition(_Trigger.HANDSHAKE_FAILED)
        # The failure reply is our last word; close() has nothing left to add.
        self._ended = True
        return HandshakeFailed(error=failure.error, reply=failure.reply, detail=failure.detail)

    def _transition(self, trigger: _Trigger) -> None:
        new_state = _TRANSITIONS.get((self._state, trigger))
        if new_state is None:
            raise LocalProtocolError(f"can't {trigger.value} in state {self._state.name}")
        self._state = new_state
