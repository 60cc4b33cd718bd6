"""Negotiated connections waiting for (or using) an HTTP transport.

Keyed by connection *token* (the ``id`` of transport requests), like the
reference's ``HttpConnectionManager``. A connection negotiated but never used
is dropped after the hub's ``disconnect_timeout`` (15 s); a later request for
it gets 404.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..auth.principal import Principal
from ..auth.request import RequestInfo
from ..hub.access import Verdict, check_bound
from ..protocol import Texts
from ..protocol.negotiate import TransportType, new_connection_id

if TYPE_CHECKING:
    from ..hub.server import HubRegistration
    from .resumable import ResumableLink

__all__ = ["ConnectionTable", "HttpConnection", "Refusal", "websocket_refusal"]

log = logging.getLogger("triohub.transports")


@attrs.define(eq=False)
class HttpConnection:
    """One negotiated connection's HTTP-level state."""

    token: str
    connection_id: str
    registration: HubRegistration
    created: float
    transport: TransportType | None = None
    """Bound by the first transport request; it never changes afterwards."""
    active: bool = False
    """A WebSocket or SSE request is serving it right now."""
    principal: Principal | None = None
    """Who negotiated it; every transport request must come from the same
    user (403 otherwise, ``check_bound``)."""
    channel: Any = None
    """The SSE / long-polling transport object, once bound."""
    issued: float | None = None
    """Unix time its cluster token was issued (``transports.cluster``): this
    node claimed it in the backplane and must mark it ended. ``None`` on one node."""
    stateful: bool = False
    """Negotiate granted stateful reconnect (``useStatefulReconnect``)."""
    link: ResumableLink | None = None
    """The WebSocket connection's ``ResumableLink`` (``stateful`` only): a later
    WebSocket request with this token resumes it."""


@attrs.frozen
class Refusal:
    """An HTTP answer refusing a request (status and plain-text body)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()


_NO_WEBSOCKETS = Refusal(
    404, Texts.transport_not_supported(TransportType.WEBSOCKETS.value).encode()
)


def websocket_refusal(connection: HttpConnection) -> Refusal | None:
    """Why a WebSocket request may not take ``connection`` (``None``: it may):
    404 WebSockets disabled on its hub, 409 a WebSocket serves it already,
    400 it uses another transport."""
    if TransportType.WEBSOCKETS not in connection.registration.options.transports:
        return _NO_WEBSOCKETS
    if connection.transport is not None:
        if connection.transport is TransportType.WEBSOCKETS and connection.active:
            return Refusal(409)
        return Refusal(400, Texts.CANNOT_CHANGE_TRANSPORT.encode())
    return None


class ConnectionTable:
    """The negotiated connections of one ASGI app."""

    def __init__(self, on_remove: Callable[[HttpConnection], None] | None = None) -> None:
        self._by_token: dict[str, HttpConnection] = {}
        self._on_remove = on_remove

    def add(
        self,
        token: str,
        connection_id: str,
        registration: HubRegistration,
        principal: Principal | None = None,
        *,
        stateful: bool = False,
    ) -> HttpConnection:
        connection = HttpConnection(
            token,
            connection_id,
            registration,
            trio.current_time(),
            principal=principal,
            stateful=stateful,
        )
        self._by_token[token] = connection
        return connection

    def get(self, token: str) -> HttpConnection | None:
        return self._by_token.get(token)

    def claim_websocket(
        self, token: str, registration: HubRegistration, verdict: Verdict, request: RequestInfo
    ) -> tuple[str, HttpConnection | None] | Refusal:
        """Bind a WebSocket upgrade to its negotiated connection (``id=token``),
        or create the connection when the client skipped negotiation (no token).

        Returns the connection id and the bound table entry (``None`` without
        negotiation; remove it when the socket ends), or the refusal to answer
        with: 404 unknown id or WebSockets disabled, 401 / 403 not the user who
        negotiated it, 409 already connected, 400 the id already uses another
        transport.
        """
        connection: HttpConnection | None = None
        if token:
            connection = self.get(token)
            if connection is None or connection.registration is not registration:
                return Refusal(404, Texts.NO_CONNECTION.encode())
            if connection.principal is not None:
                checked = check_bound(verdict, connection.principal, request)
                if not checked.allowed:
                    return Refusal(checked.status, b"", checked.headers)
        if connection is None:
            if TransportType.WEBSOCKETS not in registration.options.transports:
                return _NO_WEBSOCKETS
            return new_connection_id(), None
        refused = websocket_refusal(connection)
        if refused is not None:
            return refused
        connection.transport = TransportType.WEBSOCKETS
        connection.active = True
        connection.principal = verdict.principal
        return connection.connection_id, connection

    def remove(self, token: str) -> None:
        connection = self._by_token.pop(token, None)
        if connection is not None and self._on_remove is not None:
            self._on_remove(connection)

    def __len__(self) -> int:
        return len(self._by_token)

    def __iter__(self) -> Iterator[HttpConnection]:
        return iter(list(self._by_token.values()))

    async def reap(self, *, interval: float = 1.0) -> None:
        """Drop connections negotiated but never used (the reference's 1 s scan)."""
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            for connection in self:
                timeout = connection.registration.options.disconnect_timeout
                if connection.transport is None and now - connection.created >= timeout:
                    log.debug("dropping unused negotiated connection %s", connection.connection_id)
                    self.remove(connection.token)
