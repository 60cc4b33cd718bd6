"""The evaluator: run every handler of a policy, then read the verdict.

Which handlers are awaited is known before the first call: the policy's
``Plan`` read it from each handler's definition (``async def`` or not) once.
A plan without an ``async def`` handler is evaluated in place by a plain
function call (``evaluate_plan``), the fast path; one with an ``async def``
handler needs ``await evaluate_plan_async(...)``, which awaits those handlers
and calls the others.

Pure: no I/O, no trio; the async evaluation awaits only what handlers return,
so it runs under any event loop. Timeouts and failing closed belong to the
caller (the hub engine's ``HubAuthorizer``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from ..auth.principal import Principal
from .context import AuthorizationContext
from .handlers import returned_something
from .policy import AuthorizationPolicy, Plan, PolicyRegistry
from .requirements import Requirement

__all__ = [
    "AuthorizationResult",
    "evaluate",
    "evaluate_plan",
    "evaluate_plan_async",
    "evaluate_sync",
]


@attrs.frozen
class AuthorizationResult:
    """The verdict of one evaluation (ASP.NET's ``AuthorizationResult`` + ``AuthorizationFailure``)."""

    succeeded: bool
    """Every requirement succeeded and nobody called ``fail()``."""
    failed_requirements: tuple[Requirement, ...] = ()
    """The requirements nobody succeeded, in policy order."""
    fail_called: bool = False
    """Whether a handler vetoed with ``fail()``."""
    failure_reasons: tuple[str, ...] = ()
    """The reasons given to ``fail()``, in call order."""

    @classmethod
    def of(cls, context: AuthorizationContext) -> AuthorizationResult:
        """Read the verdict of a context whose handlers have all run."""
        if context.has_succeeded:
            return _SUCCEEDED  # every guarded call that is allowed: one shared value
        return cls(
            succeeded=False,
            failed_requirements=context.pending_requirements,
            fail_called=context.has_failed,
            failure_reasons=context.failure_reasons,
        )

    @property
    def failed_requirement_name(self) -> str | None:
        """The type name of the first unmet requirement (``None`` if all were met)."""
        if not self.failed_requirements:
            return None
        return type(self.failed_requirements[0]).__name__

    @property
    def description(self) -> str:
        """One line for audit logs: what was unmet and why it failed."""
        if self.succeeded:
            return "allowed"
        parts = [f"unmet: {r.description}" for r in self.failed_requirements]
        if self.fail_called:
            reasons = "; ".join(self.failure_reasons) or "no reason given"
            parts.append(f"fail() called: {reasons}")
        return "denied (" + "; ".join(parts or ["no requirement succeeded"]) + ")"


_SUCCEEDED = AuthorizationResult(succeeded=True)


def _context(
    plan: Plan, principal: Principal, resource: Any, factory: Callable[[], Any] | None
) -> AuthorizationContext:
    return AuthorizationContext(
        principal, resource, plan.requirements, resource_factory=factory, distinct=plan.distinct
    )


def evaluate_plan(
    plan: Plan,
    principal: Principal,
    resource: Any = None,
    *,
    resource_factory: Callable[[], Any] | None = None,
) -> AuthorizationResult:
    """Evaluate a plan that awaits nothing (``not plan.awaits``), in place.

    Args:
        resource_factory: makes the resource if a handler looks at it (instead
            of ``resource``).

    Raises:
        ValueError: the plan has an ``async def`` handler (use
            ``evaluate_plan_async``).
        TypeError: a handler returned something other than ``None``.
        Exception: whatever a handler raises, unchanged (callers fail closed).
    """
    if plan.awaits:
        raise ValueError("this policy has an async def handler: use evaluate_plan_async")
    context = _context(plan, principal, resource, resource_factory)
    for handler in plan.handlers:
        outcome = handler(context)
        if outcome is not None:
            raise returned_something(handler, outcome)
    return AuthorizationResult.of(context)


async def evaluate_plan_async(
    plan: Plan,
    principal: Principal,
    resource: Any = None,
    *,
    resource_factory: Callable[[], Any] | None = None,
) -> AuthorizationResult:
    """Evaluate any plan: the ``async def`` handlers awaited, the others called.

    Raises:
        TypeError: a handler returned (or an awaited one produced) something
            other than ``None``.
        Exception: whatever a handler raises, unchanged (callers fail closed).
    """
    context = _context(plan, principal, resource, resource_factory)
    for step in plan.steps:
        outcome = step.handler(context)
        if step.awaited:
            outcome = await outcome
        if outcome is not None:
            raise returned_something(step.handler, outcome)
    return AuthorizationResult.of(context)


def _plan(policy: AuthorizationPolicy, registry: PolicyRegistry | None) -> Plan:
    # Without a registry: the requirements' own handlers only (no cache to keep).
    return registry.plan(policy) if registry is not None else Plan.of(policy, ())


async def evaluate(
    policy: AuthorizationPolicy,
    principal: Principal,
    resource: Any = None,
    registry: PolicyRegistry | None = None,
) -> AuthorizationResult:
    """Evaluate ``policy`` for ``principal`` accessing ``resource``.

    ASP.NET's ``DefaultAuthorizationService`` with ``InvokeHandlersAfterFailure``:
    first every self-handling requirement's ``handle`` (each distinct
    requirement once, in policy order), then every registered handler whose
    requirement type occurs in the policy (in registration order). All of
    them run, whatever the earlier ones decided; ``async def`` handlers are
    awaited, plain ones called.

    Args:
        policy: what must hold.
        principal: the caller.
        resource: what handlers inspect: a ``HubInvocationContext``, a
            ``HubRequestContext``, or anything the caller chooses.
        registry: where registered handlers come from; ``None`` = built-in and
            self-handling requirements only.

    Returns:
        The verdict: succeeded iff every requirement succeeded and no handler
        called ``fail()``.

    Raises:
        Exception: whatever a handler raises, unchanged (callers fail closed;
            the hub engine turns it into a logged deny).
        TypeError: a handler returned something other than ``None``.
    """
    return await evaluate_plan_async(_plan(policy, registry), principal, resource)


def evaluate_sync(
    policy: AuthorizationPolicy,
    principal: Principal,
    resource: Any = None,
    registry: PolicyRegistry | None = None,
) -> AuthorizationResult:
    """``evaluate`` without an event loop, for a policy whose handlers are all
    plain functions.

    Raises:
        ValueError: a handler of the policy is an ``async def`` (use ``evaluate``).
        Exception: as ``evaluate``.
    """
    return evaluate_plan(_plan(policy, registry), principal, resource)
