"""The evaluator: run every handler of a policy, then read the verdict.

Pure: no I/O, no trio. It awaits only what handlers return, so it runs under
any event loop (and under none, when no handler suspends). Timeouts, failure
isolation and concurrency belong to the authorization actor.
"""

from __future__ import annotations

import inspect
from typing import Any

import attrs

from ..auth.principal import Principal
from .context import AuthorizationContext
from .handlers import HandlerFunction
from .policy import AuthorizationPolicy, PolicyRegistry
from .requirements import Requirement

__all__ = ["AuthorizationResult", "evaluate"]


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
        return cls(
            succeeded=context.has_succeeded,
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


async def _call(handler: HandlerFunction, context: AuthorizationContext) -> None:
    outcome: Any = handler(context)
    if outcome is None:
        return  # a plain handler, the common case
    if inspect.isawaitable(outcome):
        outcome = await outcome
    if outcome is not None:
        # A handler that returns True thinks it granted access; it did not.
        raise TypeError(
            f"authorization handler {getattr(handler, '__qualname__', handler)!r} returned "
            f"{outcome!r}; handlers decide by calling context.succeed(requirement) or "
            "context.fail(reason) and return None"
        )


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
    them run, whatever the earlier ones decided.

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
            the authorization actor turns it into a deny).
        TypeError: a handler returned something other than ``None``.
    """
    context = AuthorizationContext(principal, resource, policy.requirements)
    seen: list[Requirement] = []
    for requirement in policy.requirements:
        if any(requirement is done for done in seen):
            continue
        seen.append(requirement)
        await _call(requirement.handle, context)
    if registry is not None:
        for handler in registry.handlers_for(policy.requirements):
            await _call(handler, context)
    return AuthorizationResult.of(context)
