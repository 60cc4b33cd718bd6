"""Negotiated connections waiting for (or using) an HTTP transport.

Keyed by connection *token* (the ``id`` of transport requests), like the
reference's ``HttpConnectionManager``. A connection negotiated but never used
is dropped after the hub's ``disconnect_timeout`` (15 s); a later request for
it gets 404.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..auth.principal import Principal
from ..protocol.negotiate import TransportType

if TYPE_CHECKING:
    from ..hub.server import HubRegistration

__all__ = ["ConnectionTable", "HttpConnection"]

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
    """Fixed by the first transport request."""
    channel: Any = None
    """The SSE / long-polling transport object, once bound."""


class ConnectionTable:
    """The negotiated connections of one ASGI app."""

    def __init__(self) -> None:
        self._by_token: dict[str, HttpConnection] = {}

    def add(self, token: str, connection_id: str, registration: HubRegistration) -> HttpConnection:
        connection = HttpConnection(token, connection_id, registration, trio.current_time())
        self._by_token[token] = connection
        return connection

    def get(self, token: str) -> HttpConnection | None:
        return self._by_token.get(token)

    def remove(self, token: str) -> None:
        self._by_token.pop(token, None)

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
