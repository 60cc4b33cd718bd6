"""``HubServer``'s credential operations: bans, revocations, refreshes in place,
and the authorization decisions so far. ``Credentials`` does the work; this is
the server's public face of it (with the metrics each operation counts)."""

from __future__ import annotations

from collections.abc import Mapping

from ..auth.principal import Principal
from ..authorization import Revocations
from ..observability import Telemetry
from .audit import Auditor
from .authorizer import HubAuthorizer
from .credentials import Credentials, Refreshed, RefreshRefused

__all__ = ["CredentialOperations"]


class CredentialOperations:
    """Mixed into ``HubServer``, which sets these attributes."""

    credentials: Credentials
    authorizer: HubAuthorizer
    telemetry: Telemetry
    _auditor: Auditor

    @property
    def banned(self) -> frozenset[str]:
        """The banned user ids (a snapshot)."""
        return self.authorizer.state.banned

    @property
    def revocations(self) -> Revocations:
        """The revocations in force (a snapshot)."""
        return self.credentials.revocations

    async def ban(self, user_id: str) -> int:
        """Refuse a user's new connections and close their open ones (``Credentials.ban``)."""
        return await self.credentials.ban(user_id)

    async def unban(self, user_id: str) -> None:
        """Lift a ban (``Credentials.unban``)."""
        await self.credentials.unban(user_id)

    async def revoke(
        self,
        *,
        user: str | None = None,
        token_id: str | None = None,
        issued_before: float | None = None,
        expires_at: float | None = None,
    ) -> int:
        """Refuse matching credentials and close their connections (``Credentials.revoke``)."""
        closed = await self.credentials.revoke(
            user=user, token_id=token_id, issued_before=issued_before, expires_at=expires_at
        )
        kind = "token" if token_id is not None else "user" if user is not None else "issued_before"
        self.telemetry.metrics.revoked(kind)
        return closed

    async def refresh_authentication(self, connection_id: str, principal: Principal) -> Refreshed:
        """Replace a live connection's principal and expiry (``Credentials.refresh``)."""
        try:
            refreshed = await self.credentials.refresh(connection_id, principal)
        except RefreshRefused as refused:
            self.telemetry.metrics.refreshed(refused.error)
            raise
        self.telemetry.metrics.refreshed("ok")
        return refreshed

    @property
    def authorization_counters(self) -> Mapping[tuple[str, str | None, str], int]:
        """Decisions so far, by ``(hub, method, outcome)`` (method ``None``: hub level)."""
        return self._auditor.counters
