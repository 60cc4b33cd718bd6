"""Who may stay connected after the handshake: bans, revocations, and credentials
refreshed in place.

``Credentials`` is owned by the ``HubServer`` (which exposes its operations as
``ban``, ``unban``, ``revoke`` and ``refresh_authentication``). Bans and
revocations are changes of the authorization state, made through its single
writer (the authorization actor); each closes the open connections it
concerns at once. A refresh replaces one connection's principal and the
deadline of its expiry scope, and touches nothing else: not the transport, not
the user id, not the router's entry.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import attrs
import trio

from ..actors.authorization import AuthorizationActor
from ..actors.control import CloseReason
from ..auth.principal import Principal
from ..auth.user_id import resolve_user_id
from ..authorization import AuthorizationState, Revocation, Revocations
from .access import same_user

if TYPE_CHECKING:
    from ..backplane.revocations import SharedRevocations
    from .options import HubOptions
    from .session import HubSession

__all__ = ["Credentials", "RefreshRefused", "Refreshed"]

log = logging.getLogger("triohub.auth")


@attrs.frozen
class Refreshed:
    """A connection whose principal was replaced."""

    connection_id: str
    refreshed_at: float
    """Unix time of the refresh."""
    token_lifetime: float | None
    """Seconds until the new credential expires (``None``: it does not)."""


class RefreshRefused(Exception):
    """A refresh that changed nothing, with the HTTP answer it deserves.

    Attributes:
        status: 401 (the credential), 403 (another user's), 404 (no such
            connection, or refresh disabled on its hub).
        error: the OAuth-style code (``invalid_token``, ``forbidden``,
            ``connection_not_found``, ``refresh_disabled``).
        description: one sentence for the caller (never the credential).
    """

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class Credentials:
    """A server's bans, revocations and refreshes.

    Args:
        actor: the authorization state's single writer.
        sessions: the server's live connections by connection id (read here).
        check_running: raises ``RuntimeError`` when the server does not run.
        clock: Unix time.
        credential_lifetime: seconds; how long a revocation outlives the
            newest credential it can match.
    """

    def __init__(
        self,
        actor: AuthorizationActor[AuthorizationState],
        sessions: Mapping[str, HubSession],
        *,
        check_running: Callable[[], None],
        clock: Callable[[], float],
        credential_lifetime: float,
    ) -> None:
        if not credential_lifetime > 0:
            raise ValueError(
                f"credential_lifetime must be positive (seconds), got {credential_lifetime!r}"
            )
        self._actor = actor
        self._sessions = sessions
        self._check_running = check_running
        self._clock = clock
        self.credential_lifetime = credential_lifetime
        self.shared: SharedRevocations | None = None
        """Where ``revoke`` shares its revocations with the other nodes (set by
        the server when it has a backplane)."""

    # -- bans -------------------------------------------------------------------

    async def ban(self, user_id: str) -> int:
        """Ban a user: refuse their new connections and close their open ones.

        ``user_id`` is a user id as the hubs' user-id providers give it (what
        ``clients.user(...)`` takes). From the moment this returns, negotiate and
        every transport request of that user get a 403 on every hub, a
        connection that was past those checks is closed when its handshake
        completes, and every open connection of the user has been sent
        ``{"type":7}`` without ``allowReconnect`` and is closing. The ban lasts
        until ``unban`` (it is kept in memory, per server).

        Returns:
            how many open connections were closed.

        Raises:
            ValueError: ``user_id`` is not a non-empty string.
            RuntimeError: the server is not running.
        """
        self._check_running()
        await self._actor.change(lambda state: state.ban(user_id))
        # Every connection whose user id was known before the change is here;
        # one that learns its user id later checks the ban itself (HubSession).
        return self._close_where(
            lambda session: session.context is not None and session.context.user_id == user_id,
            CloseReason.ABORTED,
        )

    async def unban(self, user_id: str) -> None:
        """Lift a ban (nothing happens if ``user_id`` is not banned).

        Raises:
            RuntimeError: the server is not running.
        """
        self._check_running()
        await self._actor.change(lambda state: state.unban(user_id))

    # -- revocations ------------------------------------------------------------

    async def revoke(
        self,
        *,
        user: str | None = None,
        token_id: str | None = None,
        issued_before: float | None = None,
        expires_at: float | None = None,
    ) -> int:
        """Refuse credentials before their own expiry, and close their connections.

        What is refused is every credential that matches all the arguments given:

        * ``user``: the credentials of this user id (as the hubs' user-id
          providers give it); alone, every credential of the user issued
          before now (new sign-ins work);
        * ``token_id``: the credential whose ``jti`` (or, without one, ``sid``)
          claim is this;
        * ``issued_before``: credentials whose ``iat`` is before this Unix time
          (one without an ``iat`` is refused: it cannot show it is newer).

        From the moment this returns, negotiate and every transport request
        with such a credential get a 401 (``error="invalid_token"``, "The
        credential has been revoked."), a connection that was past those
        checks is closed when its handshake completes, and every open
        connection holding one has been sent
        ``{"type":7,"error":"Authentication revoked."}`` (no ``allowReconnect``)
        and is closing. With a backplane, the same holds on every node one
        broker round trip after this returns, and on a node that starts later
        (the revocation is kept in the broker). The revocation is kept until ``expires_at`` (the
        credential's own expiry, if known) or else until ``credential_lifetime``
        after the newest credential it can match was issued; then it is
        forgotten, the credentials having expired anyway.

        Returns:
            how many open connections were closed on this node (the other
            nodes close theirs).

        Raises:
            ValueError: none of ``user``, ``token_id``, ``issued_before`` is given,
                or one is not of its type.
            RuntimeError: the server is not running.
        """
        if user is None and token_id is None and issued_before is None:
            raise ValueError("revoke what? give a user, a token_id or an issued_before")
        now = self._clock()
        if token_id is None and issued_before is None:
            issued_before = now
        # The latest a matching credential can have been issued: it expires by
        # then plus the longest lifetime. One named by its id exists already.
        if issued_before is None:
            newest = now
        elif token_id is None:
            newest = issued_before  # later ones too, until that time comes
        else:
            newest = min(now, issued_before)
        until = expires_at if expires_at is not None else newest + self.credential_lifetime
        revocation = Revocation(
            until=until, user_id=user, token_id=token_id, issued_before=issued_before
        )
        closed = await self.apply_revocation(revocation)
        if self.shared is not None:
            await self.shared.share(revocation)
        return closed

    async def apply_revocation(self, revocation: Revocation) -> int:
        """Put ``revocation`` in force here (``revoke`` builds one; a backplane
        delivers those of other nodes) and close the connections it matches.

        Returns:
            how many open connections were closed.

        Raises:
            RuntimeError: the server is not running.
        """
        self._check_running()
        return await self.put_in_force(revocation)

    async def put_in_force(self, revocation: Revocation) -> int:
        """``apply_revocation`` without the check that the server runs: for
        the revocations a node loads while it starts (the authorization actor
        runs already)."""
        now = self._clock()
        await self._actor.change(lambda state: state.revoke(revocation, now))
        # As for bans: every connection whose user id is known is here; one
        # that learns it later checks the revocation itself (HubSession.opened).
        return self._close_where(
            lambda session: (
                session.context is not None
                and revocation.matches(session.context.principal, session.context.user_id)
            ),
            CloseReason.REVOKED,
        )

    @property
    def revocations(self) -> Revocations:
        """The revocations in force (a snapshot)."""
        return self._actor.current.revocations

    def _close_where(self, predicate: Callable[[HubSession], bool], reason: CloseReason) -> int:
        closed = 0
        for session in list(self._sessions.values()):
            if predicate(session):
                session.close(reason)
                closed += 1
        return closed

    # -- refresh ----------------------------------------------------------------

    async def refresh(self, connection_id: str, principal: Principal) -> Refreshed:
        """Replace a live connection's principal with ``principal`` (a fresh
        credential of the same user), and move its expiry deadline to the new
        credential's.

        The transport, the user id and the router's entry are not touched;
        the connection's guarded groups are checked again with the new
        principal and left where their policy no longer holds. With ``close_on_authentication_expiration`` the connection
        now closes at the new credential's expiry (``Authentication expired.``).
        Afterwards the hub's ``on_authentication_refreshed`` runs (in this
        task; what it raises is logged, the refresh stands).

        Raises:
            RefreshRefused: nothing changed: 404 ``connection_not_found`` (no
                such open connection) or ``refresh_disabled`` (its hub's
                ``allow_authentication_refresh`` is off); 401 ``invalid_token``
                (``principal`` is anonymous, or its credential revoked); 403
                ``forbidden`` (another user, a connection without a user, or
                a banned one).
        """
        session = self._live(connection_id)
        registration = session.registration
        if not registration.options.allow_authentication_refresh:
            raise RefreshRefused(
                404, "refresh_disabled", "Authentication refresh is not enabled on this hub."
            )
        if not principal.is_authenticated:
            raise RefreshRefused(401, "invalid_token", "A valid credential is required.")
        user_id = await resolve_user_id(registration.user_id_provider, principal)
        session = self._live(connection_id)  # still open after the await?
        context = session.context
        assert context is not None  # _live checked
        bound = session.principal
        if not bound.is_authenticated or user_id is None:
            raise RefreshRefused(403, "forbidden", "The connection has no user to refresh.")
        if user_id != context.user_id or not same_user(bound, principal):
            log.warning("refused a refresh with another user's credential")
            raise RefreshRefused(403, "forbidden", "The credential is of another user.")
        state = self._actor.current
        if state.is_banned(user_id):
            raise RefreshRefused(403, "forbidden", "The user is banned.")
        now = self._clock()
        if state.revoked(principal, user_id, now) is not None:
            raise RefreshRefused(401, "invalid_token", "The credential has been revoked.")
        deadline = self.deadline_for(principal, registration.options)
        session.replace_principal(principal, math.inf if deadline is None else deadline)
        admission = registration.lifetime.admission
        if admission is not None:
            await admission.recheck(session)
        await session.authentication_refreshed()
        lifetime = None if principal.expires_at is None else max(0.0, principal.expires_at - now)
        return Refreshed(connection_id, now, lifetime)

    def deadline_for(self, principal: Principal, options: HubOptions) -> float | None:
        """The Trio deadline at which a connection of ``principal`` must end
        (``close_on_authentication_expiration``), or ``None``."""
        return self.deadline_at(principal.expires_at, options)

    def deadline_at(self, expires_at: float | None, options: HubOptions) -> float | None:
        """``deadline_for`` a credential that expires at ``expires_at`` (Unix
        time; ``None``: never): what a resume relayed from another node carries."""
        if not options.close_on_authentication_expiration or expires_at is None:
            return None
        return trio.current_time() + (expires_at - self._clock())

    def token_lifetime(self, principal: Principal, refresh_allowed: bool) -> int | None:
        """What negotiate reports as ``tokenLifetimeSeconds``: whole seconds until
        ``principal``'s credential expires, on a hub that accepts refresh
        (``None``: not reported)."""
        if not refresh_allowed or principal.expires_at is None:
            return None
        return max(0, int(principal.expires_at - self._clock()))

    def _live(self, connection_id: str) -> HubSession:
        session = self._sessions.get(connection_id)
        if session is None or session.context is None or not session.open:
            raise RefreshRefused(404, "connection_not_found", "No such connection.")
        return session
