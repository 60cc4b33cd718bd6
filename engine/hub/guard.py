"""``Guard``: the resolved policy of a hub or of a hub method.

Made once, at ``map_hub``, by the ``HubAuthorizer``; carried by the hub's
registration and by each ``BoundMethod``. A module of its own so that binding
and the authorizer both import it, and neither imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ..authorization import AuthorizationPolicy, AuthorizeData

__all__ = ["OPEN", "Guard", "guard_label"]


@attrs.frozen
class Guard:
    """The resolved policy of a hub or a hub method, and how to name it in audits."""

    policy: AuthorizationPolicy | None
    """``None``: nothing to check."""
    label: str
    """The ``@authorize`` data that made it, for audit records (``"Administrators+roles=Ops"``)."""
    subject: str = ""
    """What is guarded, for logs: ``"ChatHub.ban_user policy=Administrators"``."""
    hub: str = ""
    """The hub class's name, for audit records and counters."""
    method: str | None = None
    """The method's wire name; ``None`` for the hub itself (its HTTP requests)."""
    allowed: list[int] = attrs.field(factory=lambda: [0], eq=False, repr=False)
    """The auditor's count of this guard's "allowed" decisions (``Auditor.cell``),
    bumped on every allowed call that needs no record."""

    @property
    def open(self) -> bool:
        return self.policy is None


OPEN = Guard(None, "none")
"""The guard of what has no ``@authorize``."""


def guard_label(data: Sequence[AuthorizeData]) -> str:
    """The audit label of ``@authorize`` data: policy names, ``roles=A|B``, ``default``."""
    parts = []
    for datum in data:
        if datum.policy is not None:
            parts.append(datum.policy)
        if datum.roles is not None:
            parts.append("roles=" + "|".join(datum.roles))
        if datum.uses_default_policy:
            parts.append("default")
    return "+".join(parts) or "none"
