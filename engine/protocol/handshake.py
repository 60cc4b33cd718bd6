"""The hub handshake: the client's first record, and the server's reply (sans-IO).

The request is JSON + 0x1E even when the client then speaks MessagePack, so it is
parsed here, before any hub protocol is chosen::

    {"protocol":"json","version":1}\\x1e

The server answers ``{}\\x1e`` or ``{"error":"<text>"}\\x1e`` and, after an error,
ends the connection. The rules mirror ASP.NET Core's ``HandshakeProtocol`` and
``HubConnectionContext.HandshakeAsync`` (``signalr-protocol.md`` section 4.1):

* ``protocol`` (a string) and ``version`` (a 32-bit integer) are required; other
  properties are skipped. A record that is not such an object fails with the
  generic ``Texts.HANDSHAKE_UNEXPECTED``: the reference appends the inner reason
  (``Missing required property 'protocol'. ...``) only with detailed errors, which
  are off by default, so the reason is kept in ``HandshakeFailure.detail`` for
  logs and never put on the wire.
* Protocol names match case-insensitively (the reference's resolver uses
  ``OrdinalIgnoreCase``); the version error quotes the name as the client sent it.
* A handshake that does not fit in ``max_message_size`` bytes (0x1E included)
  fails with ``Texts.HANDSHAKE_CANCELED``, the text the reference uses for both
  the size limit and the handshake timeout.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Final

import attrs
import orjson

from .base import HubProtocol, TransferFormat
from .errors import LocalProtocolError, Texts

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "RECORD_SEPARATOR",
    "SUCCESS_REPLY",
    "HandshakeFailure",
    "HandshakeParser",
    "HandshakeRequest",
    "failure_reply",
    "parse_handshake_request",
    "resolve_protocol",
]

RECORD_SEPARATOR: Final = b"\x1e"
"""Ends every JSON record, the handshake included."""

DEFAULT_MAX_MESSAGE_SIZE: Final = 32 * 1024
"""The reference's ``MaximumReceiveMessageSize`` default, in bytes."""

SUCCESS_REPLY: Final = b"{}" + RECORD_SEPARATOR
"""The only success reply clients accept: no ``type``, no other property."""

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1


def failure_reply(error: str) -> bytes:
    """The reply that rejects a handshake: ``{"error":"<text>"}`` + 0x1E.

    orjson escapes like the reference's relaxed writer: quotes, backslashes and
    control characters only, so ``'`` and non-ASCII text stay as they are.
    """
    return orjson.dumps({"error": error}) + RECORD_SEPARATOR


@attrs.frozen
class HandshakeRequest:
    """A well-formed handshake request, not yet checked against the server."""

    protocol: str
    """The hub protocol name exactly as the client wrote it (``"json"``)."""
    version: int
    """The protocol version the client wants; 2 means stateful reconnect."""


@attrs.frozen
class HandshakeFailure:
    """A handshake the server refuses; send ``reply`` and end the connection."""

    error: str = attrs.field(validator=attrs.validators.min_len(1))
    """The exact text for the client (one of the handshake ``Texts``)."""
    detail: str | None = None
    """Why, for logs only; never sent (the reference hides it by default)."""

    @property
    def reply(self) -> bytes:
        """The bytes to send: ``{"error":"<error>"}`` + 0x1E."""
        return failure_reply(self.error)


def _unexpected(detail: str) -> HandshakeFailure:
    return HandshakeFailure(Texts.HANDSHAKE_UNEXPECTED, detail=detail)


def parse_handshake_request(payload: bytes) -> HandshakeRequest | HandshakeFailure:
    """Parse one handshake record, without its 0x1E.

    Returns:
        The request, or a failure carrying ``Texts.HANDSHAKE_UNEXPECTED`` for
        anything that is not a JSON object with a string ``protocol`` and an
        int32 ``version`` (as the reference, ``1.0``, ``"1"`` and ``null`` are
        not versions). Never raises for bad input: a peer's mistake is a reply.
    """
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return _unexpected(f"The handshake request is not valid JSON: {exc}")
    if not isinstance(document, dict):
        return _unexpected("The handshake request is not a JSON object.")
    protocol = document.get("protocol")
    if protocol is None:
        return _unexpected(Texts.missing_property("protocol"))
    if not isinstance(protocol, str):
        return _unexpected("Expected 'protocol' to be of type String.")
    version = document.get("version")
    if version is None:
        return _unexpected(Texts.missing_property("version"))
    # bool is an int subclass, but `true` is no version number.
    if type(version) is not int or not _INT32_MIN <= version <= _INT32_MAX:
        return _unexpected("Expected 'version' to be a 32-bit integer.")
    return HandshakeRequest(protocol=protocol, version=version)


def resolve_protocol(
    request: HandshakeRequest,
    protocols: Mapping[str, HubProtocol],
    transfer_formats: Collection[TransferFormat],
) -> HubProtocol | HandshakeFailure:
    """Pick the hub protocol a handshake asks for, or say why not.

    Args:
        request: the parsed handshake.
        protocols: the server's protocols by name; matched case-insensitively.
        transfer_formats: what the transport can carry (SSE: Text only).

    Returns:
        The protocol, or a failure with the reference's exact text: unknown
        name, a version above ``protocol.version``, or a protocol whose transfer
        format the transport lacks (the text names the protocol's format, e.g.
        ``'Binary'`` for MessagePack over SSE, as the reference writes it).
    """
    wanted = request.protocol.lower()
    protocol = next(
        (candidate for name, candidate in protocols.items() if name.lower() == wanted),
        None,
    )
    if protocol is None:
        return HandshakeFailure(Texts.protocol_not_supported(request.protocol))
    if request.version > protocol.version:
        return HandshakeFailure(Texts.version_not_supported(request.version, request.protocol))
    if protocol.transfer_format not in transfer_formats:
        return HandshakeFailure(
            Texts.transfer_format_not_supported(protocol.name, protocol.transfer_format.value)
        )
    return protocol


class HandshakeParser:
    """Collects bytes until the handshake record is complete, then parses it.

    Transports deliver the handshake in any split (a WebSocket frame, a POST
    body, one byte at a time), and the client may batch its first hub records
    behind it; those bytes are kept in ``remainder`` for the hub decoder.

    Args:
        max_message_size: the largest handshake record accepted, 0x1E included;
            ``None`` for no limit. Like the reference, only the first
            ``max_message_size`` bytes are searched for the separator, so a long
            handshake fails as soon as more bytes than that have arrived.
    """

    def __init__(self, max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size is not None and max_message_size < 1:
            raise ValueError(f"max_message_size must be positive or None, not {max_message_size}")
        self._max_message_size = max_message_size
        self._buffer = bytearray()
        self._searched = 0
        self._result: HandshakeRequest | HandshakeFailure | None = None
        self._remainder = b""

    @property
    def remainder(self) -> bytes:
        """Bytes received after the handshake record: the first hub records."""
        return self._remainder

    def feed(self, data: bytes) -> HandshakeRequest | HandshakeFailure | None:
        """Add bytes; return the outcome once the record is complete.

        Returns:
            ``None`` while the record is incomplete, then the parsed request or
            a failure (malformed record, or ``Texts.HANDSHAKE_CANCELED`` when it
            outgrows ``max_message_size``).

        Raises:
            LocalProtocolError: when called again after an outcome was returned;
                later bytes belong to the hub protocol's decoder.
        """
        if self._result is not None:
            raise LocalProtocolError(
                "the handshake was already parsed; give later bytes to the hub protocol decoder"
            )
        self._buffer += data
        limit = self._max_message_size
        end = self._buffer.find(RECORD_SEPARATOR, self._searched)
        if end == -1 or (limit is not None and end >= limit):
            if limit is not None and len(self._buffer) > limit:
                return self._finish(HandshakeFailure(Texts.HANDSHAKE_CANCELED), remainder=b"")
            self._searched = len(self._buffer)
            return None
        payload = bytes(self._buffer[:end])
        remainder = bytes(self._buffer[end + 1 :])
        return self._finish(parse_handshake_request(payload), remainder=remainder)

    def _finish(
        self, result: HandshakeRequest | HandshakeFailure, *, remainder: bytes
    ) -> HandshakeRequest | HandshakeFailure:
        self._result = result
        self._remainder = remainder
        self._buffer = bytearray()
        return result
