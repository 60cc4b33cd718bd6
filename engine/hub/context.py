"""The caller context a hub method sees as ``self.context``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..auth.principal import Principal

__all__ = ["HubCallerContext"]


class HubCallerContext:
    """One connection's identity and scratch space, shared by its invocations.

    Attributes:
        connection_id: the public connection id (never the connection token).
        principal: the caller, fixed at handshake for the connection's life.
        user_id: from the server's user-id provider, computed once; ``None``
            means the connection is reachable only by connection id.
        items: per-connection state that hub methods may keep.
    """

    __slots__ = ("_abort", "connection_id", "items", "principal", "user_id")

    def __init__(
        self,
        connection_id: str,
        principal: Principal,
        user_id: str | None,
        abort: Callable[[], None],
    ) -> None:
        self.connection_id = connection_id
        self.principal = principal
        self.user_id = user_id
        self.items: dict[Any, Any] = {}
        self._abort = abort

    @property
    def user(self) -> Principal:
        """Alias of ``principal`` (ASP.NET's ``Context.User``)."""
        return self.principal

    def abort(self) -> None:
        """Close this connection (the client gets ``{"type":7}``)."""
        self._abort()

    def __repr__(self) -> str:
        return f"<HubCallerContext {self.connection_id} user={self.user_id!r}>"
