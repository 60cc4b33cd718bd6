"""The interface every hub protocol codec implements (sans-IO)."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from .messages import HubMessage

__all__ = ["HubProtocol", "MessageDecoder", "TransferFormat"]


class TransferFormat(StrEnum):
    """What a transport can carry (negotiate's ``transferFormats``)."""

    TEXT = "Text"
    BINARY = "Binary"


class MessageDecoder(Protocol):
    """Turns a byte stream into hub messages, keeping partial records.

    ``receive_data`` may be called with any split of the stream (a WebSocket
    frame, a POST body, one byte at a time); ``next_message`` returns each
    complete record's message in order, ``None`` when it needs more bytes.
    Records of unknown message types are skipped, as the reference does.

    Raises:
        RemoteProtocolError: from ``next_message``, for a malformed record or
            one larger than ``max_message_size``. The decoder is then unusable
            and the connection must be closed with the error's ``close`` record.
    """

    def receive_data(self, data: bytes) -> None: ...

    def next_message(self) -> HubMessage | None: ...


class HubProtocol(Protocol):
    """A hub protocol: a name, a version, a transfer format and a codec."""

    @property
    def name(self) -> str:
        """The handshake name: ``"json"`` or ``"messagepack"``."""
        ...

    @property
    def version(self) -> int:
        """The highest version understood; handshakes asking for more fail."""
        ...

    @property
    def transfer_format(self) -> TransferFormat: ...

    def encode(self, message: HubMessage) -> bytes:
        """One complete, framed record (0x1E-terminated or varint-prefixed)."""
        ...

    def decoder(self, max_message_size: int | None = None) -> MessageDecoder:
        """A fresh decoder for one connection's incoming byte stream."""
        ...
