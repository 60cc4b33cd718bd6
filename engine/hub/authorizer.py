"""The hub's policy runner: ``@authorize`` policies resolved once at
registration, evaluated in the task that asks for every HTTP request of a
protected hub and every invocation of a protected method, each decision
audited; and the reading side of the server's authorization state (bans).

Evaluations do not go through an actor: the task that asks (a request
handler, a connection's invocation task) is already a task of its own, so a
slow handler delays only its own caller. What an evaluation runs is known
from the policy's plan (``triohub.authorization.policy.Plan``):

* every handler a plain ``def``: the fast path, evaluated in place by a
  function call. No timeout applies: Trio cancels only at a checkpoint, and a
  plain function has none.
* some handler an ``async def``: awaited, under ``trio.move_on_after(timeout)``;
  past the timeout the call is denied.

Either way it fails closed: a handler that raises, or returns anything but
``None``, denies, logged (logger ``triohub.authorization``) with what was
guarded, never with credentials.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..actors.authorization import AuthorizationActor
from ..auth.principal import Principal
from ..auth.request import RequestInfo
from ..authorization import (
    AuthorizationResult,
    AuthorizationState,
    AuthorizeData,
    HubGroupContext,
    HubInvocationContext,
    HubRequestContext,
    HubSendContext,
    PolicyRegistry,
    Revocation,
    allows_anonymous,
    authorize_data,
    method_authorize_data,
    resolve_policy,
)
from ..authorization.evaluator import evaluate_plan, evaluate_plan_async
from ..authorization.policy import Plan
from .audit import Auditor, AuditRecord
from .context import HubCallerContext
from .guard import OPEN, Guard, guard_label

if TYPE_CHECKING:
    from .binding import BoundMethod

__all__ = ["HubAuthorizer"]

log = logging.getLogger("triohub.authorization")


@attrs.frozen
class _FailedClosed:
    """An evaluation that produced no verdict, and so denies."""

    error: str
    """``"timeout"`` or the exception's type name."""


_Outcome = AuthorizationResult | _FailedClosed

_Where = tuple[Guard, Principal, HubCallerContext | str | None]
"""Whose check it was, for its audit record: the guard, the principal, and the
connection's caller context (for an HTTP request of the hub, before any
connection exists: the user id the hub's provider gives the principal)."""


class HubAuthorizer:
    """Owned by the ``HubServer``; one per server.

    Args:
        registry: the server's policies and handlers.
        auditor: where decisions are recorded.
        state: the server's authorization state (its single writer); read here.
        timeout: seconds an evaluation with an ``async def`` handler may take
            before it denies (``math.inf`` for none).
        clock: Unix time, against which revocations are in force.

    Raises:
        ValueError: ``timeout`` is not positive.
    """

    def __init__(
        self,
        registry: PolicyRegistry,
        auditor: Auditor,
        state: AuthorizationActor[AuthorizationState],
        *,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive (seconds, or math.inf), got {timeout!r}")
        self.registry = registry
        self.auditor = auditor
        self.timeout = timeout
        self._clock = clock
        self._state = state

    # -- registration (startup; errors here name the hub and method) ------------

    def hub_guard(self, hub_class: type) -> Guard:
        if allows_anonymous(hub_class):
            return OPEN
        data = authorize_data(hub_class)
        policy = resolve_policy(self.registry, data, where=hub_class.__name__)
        if policy is None:
            return OPEN
        label = guard_label(data)
        hub = hub_class.__name__
        subject = f"{hub}.<connect> policy={label}"
        return Guard(policy, label, subject, hub, None, self.auditor.cell(hub, None, policy=label))

    def method_guard(self, hub_class: type, name: str, wire_name: str | None = None) -> Guard:
        # Method metadata only restricts further: @allow_anonymous on a method
        # never cancels its @authorize (dotnet/aspnetcore#21800).
        data = method_authorize_data(hub_class, name)
        policy = resolve_policy(self.registry, data, where=f"{hub_class.__name__}.{name}")
        if policy is None:
            return OPEN
        label = guard_label(data)
        hub, method = hub_class.__name__, wire_name or name
        subject = f"{hub}.{method} policy={label}"
        return Guard(
            policy, label, subject, hub, method, self.auditor.cell(hub, method, policy=label)
        )

    def group_guard(self, hub_class: type, pattern: str, policy: str) -> Guard:
        """The guard of the groups ``pattern`` names (``map_hub(group_policies=...)``)."""
        data = [AuthorizeData(policy=policy)]
        hub = hub_class.__name__
        where = f"{hub} group {pattern!r}"
        resolved = resolve_policy(self.registry, data, where=where)
        assert resolved is not None  # a named policy always resolves (or raises)
        label = guard_label(data)
        method = f"<group {pattern}>"
        return Guard(
            resolved, label, f"{where} policy={label}", hub, method, self.auditor.cell(hub, method)
        )

    # -- state ------------------------------------------------------------------

    @property
    def state(self) -> AuthorizationState:
        """The current authorization state (a snapshot; read without waiting)."""
        return self._state.current

    def is_banned(self, user_id: str | None) -> bool:
        return self._state.current.is_banned(user_id)

    def revoked(self, principal: Principal, user_id: str | None) -> Revocation | None:
        """The revocation refusing ``principal``'s credential now, if any."""
        revocations = self._state.current.revocations
        if not revocations:
            return None
        return revocations.refusing(principal, user_id, self._clock())

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
        """Whether ``principal`` may make ``request`` of the hub (its ``@authorize``).

        ``user_id`` is what the hub's user-id provider makes of the principal:
        the audit record names the user by it, as the method checks do.
        """
        policy = guard.policy
        if policy is None:
            return True
        resource = HubRequestContext(request=request, hub=hub_class, path=path)
        outcome = await self._evaluate(self.registry.plan(policy), guard, principal, resource)
        return self._conclude(outcome, (guard, principal, user_id))

    async def authorize_invocation(
        self,
        hub_class: type,
        caller: HubCallerContext,
        method: BoundMethod,
        target: str,
        arguments: tuple[Any, ...],
    ) -> bool:
        """Whether ``caller`` may invoke ``method`` (its ``@authorize``).

        Runs on every guarded call: a plan of plain functions is evaluated
        without a cancel scope, and an allowed call nobody listens for (no
        audit hook, no DEBUG audit log) is only counted.
        """
        guard = method.guard
        policy = guard.policy
        if policy is None:
            return True
        plan = self.registry.plan(policy)
        principal = caller.principal
        # The resource is made only if a handler reads context.resource (most
        # decide from the principal).
        factory = functools.partial(
            HubInvocationContext,
            caller,
            hub_class,
            target,
            method.name,
            method.wire_name,
            arguments,
        )
        if plan.awaits:
            outcome = await self._evaluate(plan, guard, principal, None, factory)
        else:
            outcome = self._evaluate_now(plan, guard, principal, None, factory)
        if type(outcome) is AuthorizationResult and outcome.succeeded and self.auditor.quiet:
            guard.allowed[0] += 1
            return True
        return self._conclude(outcome, (guard, principal, caller))

    async def authorize_member(
        self, hub_class: type, guard: Guard, member: HubCallerContext, group: str
    ) -> bool:
        """Whether ``member`` may be in ``group`` (the group's policy)."""
        policy = guard.policy
        if policy is None:
            return True
        resource = HubGroupContext(member, hub_class, group)
        plan = self.registry.plan(policy)
        outcome = await self._evaluate(plan, guard, member.principal, resource)
        return self._conclude(outcome, (guard, member.principal, member))

    def recipient_filter(self, hub_class: type, policy: str, method: str) -> Callable[[Any], bool]:
        """For a send with a policy: a filter the router applies to each
        recipient's handle (its ``HubSession``), deciding from the recipient's
        current principal, once per distinct principal per send.

        It runs in the router's task, so the policy must decide at once.
        Outbound decisions are filtering, not refusals: they are not audited
        (a handler that raises is still logged, and denies).

        Raises:
            UnknownPolicyError: ``policy`` is not registered.
            ValueError: the policy has an ``async def`` handler.
        """
        hub = hub_class.__name__
        data = [AuthorizeData(policy=policy)]
        resolved = resolve_policy(self.registry, data, where=f"a send of {hub}")
        assert resolved is not None  # a named policy always resolves (or raises)
        plan = self.registry.plan(resolved)
        if plan.awaits:
            raise ValueError(
                f"policy {policy!r} awaits (an async def handler); the policy of a send "
                "must decide at once: use plain def handlers"
            )
        guard = Guard(resolved, policy, f"{hub} send {method!r} policy={policy}", hub, method)
        decided: dict[str | None, list[tuple[Principal, bool]]] = {}

        def admits(handle: Any) -> bool:
            context = getattr(handle, "context", None)
            if not isinstance(context, HubCallerContext):
                return False  # not past its handshake: nothing to decide from
            principal = context.principal
            seen = decided.setdefault(context.user_id, [])
            for known, allowed in seen:
                if known is principal or known == principal:
                    return allowed
            resource = HubSendContext(context, hub_class, method)
            outcome = self._evaluate_now(plan, guard, principal, resource)
            allowed = type(outcome) is AuthorizationResult and outcome.succeeded
            seen.append((principal, allowed))
            return allowed

        return admits

    def _evaluate_now(
        self,
        plan: Plan,
        guard: Guard,
        principal: Principal,
        resource: Any,
        factory: functools.partial[Any] | None = None,
    ) -> _Outcome:
        """A plan of plain functions, evaluated in place (no timeout: nothing to cancel at)."""
        try:
            return evaluate_plan(plan, principal, resource, resource_factory=factory)
        except Exception as exc:
            return self._raised(guard, exc)

    async def _evaluate(
        self,
        plan: Plan,
        guard: Guard,
        principal: Principal,
        resource: Any,
        factory: functools.partial[Any] | None = None,
    ) -> _Outcome:
        """Any plan; one with an ``async def`` handler under the timeout."""
        if not plan.awaits:
            return self._evaluate_now(plan, guard, principal, resource, factory)
        outcome: _Outcome | None = None
        with trio.move_on_after(self.timeout) as scope:
            try:
                outcome = await evaluate_plan_async(
                    plan, principal, resource, resource_factory=factory
                )
            except Exception as exc:
                outcome = self._raised(guard, exc)
        if scope.cancel_called or outcome is None:  # even if a handler swallowed Cancelled
            log.warning(
                "authorization of %s took longer than %s s; denied", guard.subject, self.timeout
            )
            return _FailedClosed("timeout")
        return outcome

    @staticmethod
    def _raised(guard: Guard, exc: Exception) -> _FailedClosed:
        error = type(exc).__name__
        log.error("authorization of %s raised %s; denied", guard.subject, error, exc_info=exc)
        return _FailedClosed(error)

    def _conclude(self, outcome: _Outcome, where: _Where) -> bool:
        if isinstance(outcome, _FailedClosed):
            detail = f"evaluation failed closed ({outcome.error})"
            self._record(where, "denied", outcome.error, detail)
            return False
        if outcome.succeeded:
            self._record(where, "allowed")
            return True
        failed = outcome.failed_requirement_name or (
            "fail() called" if outcome.fail_called else None
        )
        self._record(where, "denied", failed, outcome.description)
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
