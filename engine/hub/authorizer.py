"""Authorization in the hub engine: policies resolved once at registration,
checked through the authorization actor for every HTTP request of a protected
hub and every invocation of a protected method, each decision audited."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..actors.authorization import AuthorizationActor, Decision
from ..actors.kit import ActorStopped
from ..auth.principal import Principal
from ..auth.request import RequestInfo
from ..authorization import (
    AuthorizationPolicy,
    AuthorizeData,
    HubInvocationContext,
    HubRequestContext,
    PolicyRegistry,
    allows_anonymous,
    authorize_data,
    method_authorize_data,
    resolve_policy,
)
from ..authorization.context import Deferred
from ..authorization.evaluator import AuthorizationResult, Continuation, begin
from .audit import Auditor, AuditRecord
from .audit import log as _audit_log
from .context import HubCallerContext

if TYPE_CHECKING:
    from .binding import BoundMethod

__all__ = ["Guard", "HubAuthorizer"]

log = logging.getLogger("triohub.authorization")
_DEBUG = logging.DEBUG


@attrs.frozen
class Guard:
    """The resolved policy of a hub or a hub method, and how to name it in audits."""

    policy: AuthorizationPolicy | None
    label: str
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

_Where = tuple[Guard, Principal, HubCallerContext | str | None]
"""Whose check it was, for its audit record: the guard, the principal, and the
connection's caller context (for an HTTP request of the hub, before any
connection exists: the user id the hub's provider gives the principal)."""


def _label(data: Sequence[AuthorizeData]) -> str:
    parts = []
    for datum in data:
        if datum.policy is not None:
            parts.append(datum.policy)
        if datum.roles is not None:
            parts.append("roles=" + "|".join(datum.roles))
        if datum.uses_default_policy:
            parts.append("default")
    return "+".join(parts) or "none"


class HubAuthorizer:
    """Owned by the ``HubServer``; one per server."""

    def __init__(
        self, registry: PolicyRegistry, actor: AuthorizationActor, auditor: Auditor
    ) -> None:
        self.registry = registry
        self.actor = actor
        self.auditor = auditor

    # -- registration (startup; errors here name the hub and method) ------------

    def hub_guard(self, hub_class: type) -> Guard:
        if allows_anonymous(hub_class):
            return OPEN
        data = authorize_data(hub_class)
        policy = resolve_policy(self.registry, data, where=hub_class.__name__)
        if policy is None:
            return OPEN
        label = _label(data)
        hub = hub_class.__name__
        subject = f"{hub}.<connect> policy={label}"
        return Guard(policy, label, subject, hub, None, self.auditor.cell(hub, None))

    def method_guard(self, hub_class: type, name: str, wire_name: str | None = None) -> Guard:
        # Method metadata only restricts further: @allow_anonymous on a method
        # never cancels its @authorize (dotnet/aspnetcore#21800).
        data = method_authorize_data(hub_class, name)
        policy = resolve_policy(self.registry, data, where=f"{hub_class.__name__}.{name}")
        if policy is None:
            return OPEN
        label = _label(data)
        hub, method = hub_class.__name__, wire_name or name
        subject = f"{hub}.{method} policy={label}"
        return Guard(policy, label, subject, hub, method, self.auditor.cell(hub, method))

    # -- checks -----------------------------------------------------------------

    async def authorize_request(
        self,
        hub_class: type,
        path: str,
        guard: Guard,
        principal: Principal,
        request: RequestInfo,
        *,
        user_id: str | None = None,
    ) -> bool:
        """Whether ``principal`` may make this HTTP request of the hub.

        ``user_id`` is what the hub's user-id provider makes of the principal:
        the audit record names the user by it, as the method checks do.
        """
        policy = guard.policy
        if policy is None:
            return True
        resource = HubRequestContext(request=request, hub=hub_class, path=path)
        where = (guard, principal, user_id)
        try:
            first = self.actor.decide_now(
                begin,
                policy,
                principal,
                resource,
                self.registry,
                label=guard.subject,
                later=Continuation,
            )
        except ActorStopped:
            return self._stopped(where)
        verdict = self._settle(first, where)
        return verdict if verdict is True or verdict is False else await verdict

    def check_invocation(
        self,
        hub_class: type,
        caller: HubCallerContext,
        method: BoundMethod,
        target: str,
        arguments: tuple[Any, ...],
    ) -> bool | Awaitable[bool]:
        """Whether ``caller`` may invoke ``method``: the verdict when the policy
        decided without awaiting anything (the usual case), otherwise an
        awaitable of it.

        In the calling task, not the actor's: every caller here is already a
        task of its own, and the trip through the actor cost more than a
        typical policy. This runs on every guarded call, so it is written flat
        (each Python call a guarded call makes shows in ``make bench``).
        """
        guard: Guard = method.guard
        policy = guard.policy
        if policy is None:
            return True
        principal = caller.principal
        try:
            first = self.actor.decide_now(
                begin,
                policy,
                principal,
                # Built only if a handler reads context.resource (most decide
                # from the principal): one object less on every guarded call.
                Deferred(
                    HubInvocationContext,
                    caller,
                    hub_class,
                    target,
                    method.name,
                    method.wire_name,
                    arguments,
                ),
                self.registry,
                label=guard.subject,
                later=Continuation,
            )
        except ActorStopped:
            return self._stopped((guard, principal, caller))
        if (
            type(first) is Decision
            and first.allowed
            and self.auditor.hook is None
            and not _audit_log.isEnabledFor(_DEBUG)
        ):
            guard.allowed[0] += 1  # allowed, and nobody listens for the record: counted
            return True
        return self._settle(first, (guard, principal, caller))

    def _settle(self, first: Decision[Any] | Continuation, where: _Where) -> bool | Awaitable[bool]:
        """What follows ``decide_now``: the verdict (recorded), or the rest of
        an evaluation that awaits."""
        if isinstance(first, Continuation):
            return self._finish(first, where)
        return self._conclude(first, where)

    async def _finish(
        self,
        rest: Continuation,
        where: _Where,
    ) -> bool:
        """The evaluation of a handler that awaits, under the actor's timeout."""
        try:
            decision = await self.actor.evaluate_here(
                rest.finish, label=where[0].subject, cooperative=True
            )
        except ActorStopped:
            return self._stopped(where)
        return self._conclude(decision, where)

    def _stopped(self, where: _Where) -> bool:
        log.warning("authorization actor stopped: denying %s", where[0].subject)
        self._record(where, "denied", "actor stopped")
        return False

    def _conclude(
        self,
        decision: Decision[AuthorizationResult],
        where: _Where,
    ) -> bool:
        if decision.allowed:
            self._record(where, "allowed")
            return True
        result = decision.result
        if result is not None:
            failed = result.failed_requirement_name or (
                "fail() called" if result.fail_called else None
            )
            detail = result.description
        else:
            failed = decision.error or "error"
            detail = f"evaluation failed closed ({decision.error})"
        self._record(where, "denied", failed, detail)
        return False

    def _record(
        self,
        where: _Where,
        outcome: str,
        failed: str | None = None,
        detail: str = "",
    ) -> None:
        guard, principal, caller = where
        if isinstance(caller, HubCallerContext):
            user_id, connection_id = caller.user_id, caller.connection_id
        else:
            user_id, connection_id = caller, None
        self.auditor.record(
            AuditRecord(
                hub=guard.hub,
                method=guard.method,
                policy=guard.label,
                outcome=outcome,
                user_id=user_id,
                connection_id=connection_id,
                failed_requirement=failed,
                detail=detail,
                anonymous=not principal.is_authenticated,
            )
        )
