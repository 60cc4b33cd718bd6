"""Policies on group membership.

A hub maps group names to policies (``map_hub(group_policies={"admins":
"Administrators", "ops:*": "Operators"})``: an exact name, or a prefix ending
in ``*``; the exact name wins, then the longest prefix). Adding a connection to
a guarded group checks the policy against *that connection's* principal (not
the caller's, who may be adding someone else): refused, ``groups.add`` raises
``Unauthorized`` and the invocation fails with the same text as a denied
method (``Failed to invoke 'X' because user is unauthorized``).

Only connections held by this node can be checked: adding any other connection
(another node's, through the backplane) to a guarded group is refused.

When a connection's principal changes (a refreshed credential), its guarded
memberships are checked again and dropped where the policy no longer holds. A
revoked or banned connection is closed, and its memberships go with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..actors.router import Router
from .guard import Guard
from .hub import Unauthorized

if TYPE_CHECKING:
    from .authorizer import HubAuthorizer
    from .session import HubSession

__all__ = ["GroupAdmission", "GroupPolicies", "Unauthorized"]


class GroupPolicies:
    """A hub's guarded groups: names and ``prefix*`` patterns to their guards.

    Args:
        guards: pattern -> guard (``HubAuthorizer.group_guard``).
    """

    def __init__(self, guards: Mapping[str, Guard]) -> None:
        self._exact = {p: g for p, g in guards.items() if not p.endswith("*")}
        # Longest prefix first: the most specific pattern decides.
        self._prefixes = sorted(
            ((p[:-1], g) for p, g in guards.items() if p.endswith("*")),
            key=lambda item: -len(item[0]),
        )

    def __bool__(self) -> bool:
        return bool(self._exact or self._prefixes)

    def guard_for(self, group: str) -> Guard | None:
        """The guard of ``group``, or ``None`` when it has no policy."""
        guard = self._exact.get(group)
        if guard is not None:
            return guard
        for prefix, candidate in self._prefixes:
            if group.startswith(prefix):
                return candidate
        return None


class GroupAdmission:
    """Checks connections against a hub's group policies.

    Args:
        hub_class: the hub.
        policies: its guarded groups.
        authorizer: evaluates the policies (audited like method checks).
        sessions: the server's live connections by id.
        router: the hub's router (to drop memberships that no longer hold).
    """

    def __init__(
        self,
        hub_class: type,
        policies: GroupPolicies,
        authorizer: HubAuthorizer,
        sessions: Mapping[str, HubSession],
        router: Router,
    ) -> None:
        self._hub_class = hub_class
        self._policies = policies
        self._authorizer = authorizer
        self._sessions = sessions
        self._router = router

    def _member(self, connection_id: str) -> HubSession | None:
        session = self._sessions.get(connection_id)
        if (
            session is None
            or session.context is None
            or session.registration.router is not self._router
        ):
            return None  # not a connection of this hub here: the router ignores it
        return session

    async def admit(self, connection_id: str, group: str) -> None:
        """Raise ``Unauthorized`` unless ``connection_id`` may join ``group``.

        Only a connection held here can be checked: one this node does not
        hold (another node's, through the backplane, or none) is refused from
        a guarded group, fail closed.
        """
        guard = self._policies.guard_for(group)
        if guard is None:
            return
        session = self._member(connection_id)
        if session is None or session.context is None:
            raise Unauthorized(f"'{connection_id}' is not a connection of this node.")
        if not await self._authorizer.authorize_member(
            self._hub_class, guard, session.context, group
        ):
            raise Unauthorized(f"'{connection_id}' may not join group '{group}'.")

    def joined(self, connection_id: str, group: str) -> None:
        """``connection_id`` is in ``group`` now (checked again on a refresh)."""
        session = self._member(connection_id)
        if session is not None and self._policies.guard_for(group) is not None:
            session.guarded_groups.add(group)

    def left(self, connection_id: str, group: str) -> None:
        session = self._member(connection_id)
        if session is not None:
            session.guarded_groups.discard(group)

    async def recheck(self, session: HubSession) -> list[str]:
        """Drop ``session`` from the guarded groups its principal may no longer
        be in; returns their names."""
        context = session.context
        if context is None:
            return []
        dropped = []
        for group in sorted(session.guarded_groups):
            guard = self._policies.guard_for(group)
            if guard is None:
                continue
            if not await self._authorizer.authorize_member(self._hub_class, guard, context, group):
                await self._router.remove_from_group(session.connection_id, group)
                session.guarded_groups.discard(group)
                dropped.append(group)
        return dropped
