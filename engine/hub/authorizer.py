"""Authorization in the hub engine: policies resolved once at registration,
checked through the authorization actor for every HTTP request of a protected
hub and every invocation of a protected method, each decision audited."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from actors.authorization import AuthorizationActor, Decision
from actors.kit import ActorStopped

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
from .context import HubCallerContext

if TYPE_CHECKING:
    from .binding import BoundMethod

__all__ = ["Guard", "HubAuthorizer"]

log = logging.getLogger("triohub.authorization")


@attrs.frozen
class Guard:
    """The resolved policy of a hub or a hub method, and how to name it in audits."""

    policy: AuthorizationPolicy | None
    label: str
    subject: str = ""
    """What is guarded, for logs: ``"ChatHub.ban_user policy=Administrators"``."""

    @property
    def open(self) -> bool:
        return self.policy is None


OPEN = Guard(None, "none")


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
        return Guard(policy, label, f"{hub_class.__name__}.<connect> policy={label}")

    def method_guard(self, hub_class: type, name: str, wire_name: str | None = None) -> Guard:
        # Method metadata only restricts further: @allow_anonymous on a method
        # never cancels its @authorize (dotnet/aspnetcore#21800).
        data = method_authorize_data(hub_class, name)
        policy = resolve_policy(self.registry, data, where=f"{hub_class.__name__}.{name}")
        if policy is None:
            return OPEN
        label = _label(data)
        return Guard(policy, label, f"{hub_class.__name__}.{wire_name or name} policy={label}")

    # -- checks -----------------------------------------------------------------

    async def authorize_request(
        self, hub_class: type, path: str, guard: Guard, principal: Principal, request: RequestInfo
    ) -> bool:
        if guard.policy is None:
            return True
        resource = HubRequestContext(request=request, hub=hub_class, path=path)
        return await self._decide(
            guard, principal, resource, hub_class.__name__, None, principal.name_identifier, None
        )

    async def authorize_invocation(
        self,
        hub_class: type,
        caller: HubCallerContext,
        method: BoundMethod,
        target: str,
        arguments: tuple[Any, ...],
    ) -> bool:
        guard: Guard = method.guard
        if guard.policy is None:
            return True
        # Built only if a handler reads context.resource (most decide from the
        # principal): one object less on every guarded call.
        resource = Deferred(
            HubInvocationContext,
            caller,
            hub_class,
            target,
            method.name,
            method.wire_name,
            arguments,
        )
        return await self._decide(
            guard,
            caller.principal,
            resource,
            hub_class.__name__,
            method.wire_name,
            caller.user_id,
            caller.connection_id,
        )

    async def _decide(
        self,
        guard: Guard,
        principal: Principal,
        resource: Any,
        hub: str,
        method: str | None,
        user_id: str | None,
        connection_id: str | None,
    ) -> bool:
        policy = guard.policy
        assert policy is not None
        label = guard.subject
        where = (guard, hub, method, user_id, connection_id)
        try:
            # In this task, not the actor's: every caller here is already a task
            # of its own (a connection's reader, an HTTP request), and the trip
            # through the actor cost more than a typical policy (benchmarks/).
            # Most policies decide without awaiting anything: no coroutine at all.
            first = self.actor.decide_now(
                begin, policy, principal, resource, self.registry, label=label, later=Continuation
            )
            decision: Decision[AuthorizationResult]
            if isinstance(first, Continuation):
                decision = await self.actor.evaluate_here(
                    first.finish, label=label, cooperative=True
                )
            else:
                decision = first  # type: ignore[assignment]  # begin() returns AuthorizationResult
        except ActorStopped:
            log.warning("authorization actor stopped: denying %s", label)
            self._record(where, "denied", "actor stopped")
            return False
        if decision.allowed:
            # On every guarded call: a record is built only for a listener.
            auditor = self.auditor
            if auditor.wants_records:
                self._record(where, "allowed")
            else:
                auditor.counters[(hub, method, "allowed")] += 1
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
        where: tuple[Guard, str, str | None, str | None, str | None],
        outcome: str,
        failed: str | None = None,
        detail: str = "",
    ) -> None:
        guard, hub, method, user_id, connection_id = where
        self.auditor.record(
            AuditRecord(
                hub=hub,
                method=method,
                policy=guard.label,
                outcome=outcome,
                user_id=user_id,
                connection_id=connection_id,
                failed_requirement=failed,
                detail=detail,
            )
        )
