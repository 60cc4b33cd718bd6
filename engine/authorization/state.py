"""The authorization state of one server: what changes while it runs.

An immutable value: every change makes a new one (``ban`` and ``unban`` return
the next state), so a reader holding a snapshot sees it whole. The server's
authorization actor (``triohub.actors.authorization``) is its single writer;
policy evaluations and request checks read the actor's current snapshot
without waiting. Pure: no trio, no I/O.
"""

from __future__ import annotations

import attrs

from ..auth.principal import Principal
from .revocation import Revocation, Revocations

__all__ = ["AuthorizationState"]


@attrs.frozen
class AuthorizationState:
    """Who is banned and which credentials are revoked."""

    banned: frozenset[str] = frozenset()
    """User ids (as each hub's user-id provider gives them) refused everywhere:
    their new connections get a 403 and their open ones are closed."""
    revocations: Revocations = attrs.field(factory=Revocations)
    """Credentials refused before their own expiry (each entry forgotten at its
    ``until``): their requests get a 401 and their connections are closed."""

    def ban(self, user_id: str) -> AuthorizationState:
        """The state with ``user_id`` banned (the same state if it already was).

        Raises:
            ValueError: ``user_id`` is empty or not a string.
        """
        if not isinstance(user_id, str) or not user_id:
            raise ValueError(f"a user id to ban must be a non-empty string, got {user_id!r}")
        if user_id in self.banned:
            return self
        return attrs.evolve(self, banned=self.banned | {user_id})

    def unban(self, user_id: str) -> AuthorizationState:
        """The state without a ban on ``user_id`` (the same state if there was none)."""
        if user_id not in self.banned:
            return self
        return attrs.evolve(self, banned=self.banned - {user_id})

    def is_banned(self, user_id: str | None) -> bool:
        """Whether ``user_id`` is banned (``None``, a connection without a user, never is)."""
        return user_id is not None and user_id in self.banned

    def revoke(self, revocation: Revocation, now: float) -> AuthorizationState:
        """The state with ``revocation`` in force and the revocations past
        their ``until`` at ``now`` (Unix time) forgotten."""
        return attrs.evolve(self, revocations=self.revocations.add(revocation, now))

    def forget_expired(self, now: float) -> AuthorizationState:
        """The state without the revocations past their ``until`` at ``now``."""
        revocations = self.revocations.forget_expired(now)
        if revocations is self.revocations:
            return self
        return attrs.evolve(self, revocations=revocations)

    def revoked(self, principal: Principal, user_id: str | None, now: float) -> Revocation | None:
        """The revocation refusing ``principal``'s credential at ``now``, if any."""
        return self.revocations.refusing(principal, user_id, now)
