"""The ``Hub`` base class and ``HubError``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .clients import GroupManager, HubCallerClients
    from .context import HubCallerContext

__all__ = ["Hub", "HubError", "LimitExceeded", "Unauthorized"]


class HubError(Exception):
    """An error whose message the caller may see.

    Raised from a hub method, it reaches the client as
    ``An unexpected error occurred invoking 'M' on the server. HubException: <message>``
    (any other exception shows no details unless detailed errors are on).
    """


class LimitExceeded(HubError):
    """A request went past one of the connection's limits (``HubOptions``).

    The caller sees it as any ``HubError``; each one raised out of a hub
    method also counts as a refusal of the calling connection, and too many
    refusals close it (``HubOptions.max_refusals``).
    """


class Unauthorized(HubError):
    """A connection may not join a guarded group (``map_hub(group_policies=...)``).

    An invocation that raises it fails as a denied method does:
    ``Failed to invoke 'X' because user is unauthorized``.
    """


class Hub:
    """Subclass this and add ``async def`` methods; clients call them by name.

    A new instance serves each invocation (as in ASP.NET Core), so keep
    per-connection state in ``self.context.items`` and shared state outside.

    Attributes:
        context: who is calling (connection id, principal, user id, items).
        clients: who to send to (``all``, ``caller``, ``user(uid)``, ...).
        groups: add and remove connections to and from groups.
    """

    context: HubCallerContext
    clients: HubCallerClients
    groups: GroupManager

    async def on_connected(self) -> None:
        """Called once the handshake is done and the connection is registered.

        Raising closes the connection with an error (no reconnect).
        """

    async def on_disconnected(self, error: BaseException | None) -> None:
        """Called once when the connection ends (``error`` if it ended with one)."""

    async def on_authentication_refreshed(self) -> None:
        """Called after the connection's credential was refreshed in place
        (``self.context.principal`` is the new one). Raising is logged; the
        refresh stands."""
