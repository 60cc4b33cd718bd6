"""Negotiate: the query the client sends and the body the server answers (sans-IO).

``POST {hub}/negotiate?negotiateVersion=1`` creates a connection and lists the
transports. Everything the HTTP layer needs is computed here: the parsed query,
fresh ids, and the response body byte for byte (``signalr-protocol.md`` section
2). Errors are answered with HTTP 200 and an ``{"error":"<text>"}`` body, so they
are values here (``NegotiateError``), not exceptions.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any, Final
from urllib.parse import parse_qsl

import attrs
import orjson

from .base import TransferFormat
from .errors import Texts

__all__ = [
    "MAX_NEGOTIATE_VERSION",
    "NegotiateError",
    "NegotiateRequest",
    "NegotiateResponse",
    "TransportType",
    "negotiate",
    "new_connection_id",
    "parse_negotiate_query",
]

MAX_NEGOTIATE_VERSION: Final = 1
"""The highest negotiate version; clients asking for more are served this one."""

Query = str | bytes | Mapping[str, str | Sequence[str]]
"""A query as transports have it: ASGI's raw ``query_string`` (bytes), a decoded
string, or a mapping (a multi-valued one maps a key to a sequence of values)."""


class TransportType(Enum):
    """The three transports, in the order negotiate lists them."""

    WEBSOCKETS = "WebSockets"
    SERVER_SENT_EVENTS = "ServerSentEvents"
    LONG_POLLING = "LongPolling"

    @property
    def transfer_formats(self) -> tuple[TransferFormat, ...]:
        """What the transport can carry; SSE is a text stream, so Text only."""
        if self is TransportType.SERVER_SENT_EVENTS:
            return (TransferFormat.TEXT,)
        return (TransferFormat.TEXT, TransferFormat.BINARY)


def _wire_order(transports: Iterable[TransportType]) -> tuple[TransportType, ...]:
    # JS clients try transports in server order, so the order is part of the
    # contract; whatever order the caller used, write the reference's.
    enabled = frozenset(transports)
    unknown = [transport for transport in enabled if not isinstance(transport, TransportType)]
    if unknown:
        # An unknown value would silently drop out of the list, and a client
        # offered no transport fails far from here; say so now.
        raise TypeError(f"unknown transports {unknown!r}; use triohub.TransportType members")
    return tuple(transport for transport in TransportType if transport in enabled)


@attrs.frozen
class NegotiateRequest:
    """What a negotiate query asks for, after validation."""

    negotiate_version: int
    """0 or 1: absent means 0, anything above 1 is clamped to 1."""
    use_stateful_reconnect: bool = False
    """Whether the client asked for stateful reconnect (the server may refuse)."""


@attrs.frozen
class NegotiateError:
    """A refused negotiate; answer HTTP 200 with ``body``."""

    error: str = attrs.field(validator=attrs.validators.min_len(1))
    """One of the reference's negotiate texts."""

    @property
    def body(self) -> bytes:
        """``{"error":"<text>"}``: clients throw with the text and stop."""
        return orjson.dumps({"error": self.error})


@attrs.frozen
class NegotiateResponse:
    """A created connection; answer HTTP 200 with ``body``.

    The server's connection table is keyed by ``connection_token`` (the ``id``
    query parameter of every transport request); ``connection_id`` is the public
    id hub code and groups use. For version 0 they are the same value.
    """

    negotiate_version: int
    connection_id: str
    connection_token: str
    available_transports: tuple[TransportType, ...] = attrs.field(converter=_wire_order)
    """Enabled transports; kept in the reference's order whatever the input order."""
    use_stateful_reconnect: bool = False
    """True only when the client asked and the server allows it."""
    token_lifetime_seconds: int | None = None
    """Whole seconds until the credential expires, for a hub that accepts
    refresh (``tokenLifetimeSeconds``, as ASP.NET Core 11); ``None``: not sent."""

    def __attrs_post_init__(self) -> None:
        if self.negotiate_version < 1 and self.connection_token != self.connection_id:
            raise ValueError(
                "negotiate version 0 has no separate token: connection_token must equal "
                "connection_id, because v0 clients send the id as the token"
            )

    @property
    def body(self) -> bytes:
        """The JSON body, in the reference's field order (clients ignore order,
        but byte-exact bodies make comparisons with the reference trivial)."""
        document: dict[str, Any] = {}
        if self.use_stateful_reconnect:
            document["useStatefulReconnect"] = True
        document["negotiateVersion"] = self.negotiate_version
        document["connectionId"] = self.connection_id
        if self.negotiate_version >= 1:
            document["connectionToken"] = self.connection_token
        document["availableTransports"] = [
            {
                "transport": transport.value,
                "transferFormats": [fmt.value for fmt in transport.transfer_formats],
            }
            for transport in self.available_transports
        ]
        if self.token_lifetime_seconds is not None:
            document["tokenLifetimeSeconds"] = self.token_lifetime_seconds
        return orjson.dumps(document)


def new_connection_id() -> str:
    """16 random bytes as Base64Url without padding: 22 URL-safe characters.

    Used for connection ids and tokens alike; the token is the only secret that
    lets a request act on a connection, hence ``secrets``.
    """
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")


def _values(query: Query, key: str) -> list[str]:
    """Every value of ``key``, matching keys case-insensitively as ASP.NET does."""
    if isinstance(query, bytes):
        # ASGI's query_string is percent-encoded ASCII; latin-1 never fails.
        query = query.decode("latin-1")
    if isinstance(query, str):
        pairs: Iterable[tuple[str, str | Sequence[str]]] = parse_qsl(query, keep_blank_values=True)
    else:
        pairs = query.items()
    found: list[str] = []
    for name, value in pairs:
        if name.lower() == key:
            found.extend([value] if isinstance(value, str) else value)
    return found


# .NET int.TryParse with NumberStyles.Integer: optional white space around an
# optional sign and ASCII digits; nothing else (no "1_0", "1.0" or Arabic-Indic digits).
_DOTNET_INT: Final = re.compile(r"[\t\n\v\f\r ]*[+-]?[0-9]+[\t\n\v\f\r ]*")
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1


def _parse_int32(text: str) -> int | None:
    if _DOTNET_INT.fullmatch(text) is None:
        return None
    value = int(text)
    return value if _INT32_MIN <= value <= _INT32_MAX else None


def parse_negotiate_query(
    query: Query, *, minimum_version: int = 0
) -> NegotiateRequest | NegotiateError:
    """Validate the negotiate query as the reference's dispatcher does.

    Keys are case-insensitive (``negotiateVersion`` / ``NegotiateVersion``). A
    repeated key is read as its values joined by commas (``"1,1"``), which is
    not an integer, like ASP.NET's ``StringValues``.

    Args:
        query: the request's query (raw bytes, string or mapping).
        minimum_version: the lowest negotiate version the server accepts.

    Returns:
        The request, or an error: ``Texts.NEGOTIATE_NON_INTEGER`` for a
        ``negotiateVersion`` that is not an int32, or
        ``Texts.negotiate_version_unsupported(n)`` below ``minimum_version``
        (``n`` is 0 when the key is absent).
    """
    versions = _values(query, "negotiateversion")
    if versions:
        version = _parse_int32(",".join(versions))
        if version is None:
            return NegotiateError(Texts.NEGOTIATE_NON_INTEGER)
    else:
        version = 0
    if version < minimum_version:
        return NegotiateError(Texts.negotiate_version_unsupported(version))
    stateful = _values(query, "usestatefulreconnect")
    # .NET bool.TryParse: "true"/"false" in any case, surrounding white space
    # ignored; anything unparsable means "not asked".
    asked = bool(stateful) and ",".join(stateful).strip().lower() == "true"
    return NegotiateRequest(
        negotiate_version=min(version, MAX_NEGOTIATE_VERSION),
        use_stateful_reconnect=asked,
    )


def negotiate(
    query: Query,
    *,
    transports: Iterable[TransportType],
    minimum_version: int = 0,
    allow_stateful_reconnect: bool = False,
) -> NegotiateResponse | NegotiateError:
    """Answer one negotiate request: validate the query, mint the ids.

    Args:
        query: the request's query (raw bytes, string or mapping).
        transports: the transports this endpoint enables (any order).
        minimum_version: the lowest negotiate version accepted (default 0, so
            ``pysignalr`` and ``signalrcore``, which send none, can connect).
        allow_stateful_reconnect: grant ``useStatefulReconnect`` to clients that
            ask for it.

    Returns:
        The response to register and send (``body``), or the error to send.
        Version 0 gets ``connection_token == connection_id``; version 1 gets an
        independent token.
    """
    request = parse_negotiate_query(query, minimum_version=minimum_version)
    if isinstance(request, NegotiateError):
        return request
    connection_id = new_connection_id()
    token = new_connection_id() if request.negotiate_version >= 1 else connection_id
    return NegotiateResponse(
        negotiate_version=request.negotiate_version,
        connection_id=connection_id,
        connection_token=token,
        available_transports=tuple(transports),
        use_stateful_reconnect=allow_stateful_reconnect and request.use_stateful_reconnect,
    )
