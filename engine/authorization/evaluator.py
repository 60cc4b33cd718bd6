"""The evaluator: run every handler of a policy, then read the verdict.

Pure: no I/O, no trio. It awaits only what handlers return, so it runs under
any event loop (and under none, when no handler suspends). Timeouts, failure
isolation and concurrency belong to the authorization actor.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from ..auth.principal import Principal
from .context import AuthorizationContext
from .handlers import code_may_suspend
from .policy import AuthorizationPolicy, Plan, PolicyRegistry
from .requirements import Requirement

__all__ = ["AuthorizationResult", "Continuation", "begin", "evaluate"]


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


def _run_to_end(coroutine: Any) -> Any:
    """The value of a coroutine that has no suspension point, without an event
    loop: it runs to its end on the first ``send``."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()  # pragma: no cover - code_may_suspend said it could not
    raise RuntimeError("a coroutine without suspension points suspended")


def _check_returned_none(handler: Any, outcome: Any) -> None:
    if outcome is not None:
        # A handler that returns True thinks it granted access; it did not.
        raise TypeError(
            f"authorization handler {getattr(handler, '__qualname__', handler)!r} "
            f"returned {outcome!r}; handlers decide by calling "
            "context.succeed(requirement) or context.fail(reason) and return None"
        )


class Continuation:
    """An evaluation that met a handler whose awaitable may suspend: ``begin``
    stopped there; ``finish`` awaits it and runs the rest of the plan."""

    __slots__ = ("_awaitable", "_context", "_index", "_plan")

    def __init__(
        self,
        context: AuthorizationContext,
        plan: Plan,
        index: int,
        awaitable: Awaitable[Any],
    ) -> None:
        self._context = context
        self._plan = plan
        self._index = index
        """Where in ``plan.steps`` the handler that returned ``awaitable`` is."""
        self._awaitable = awaitable

    async def finish(
        self, timed: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None
    ) -> AuthorizationResult:
        """Await the pending handler (through ``timed`` when given), then the
        remaining handlers, awaiting what they return likewise.

        Raises:
            Exception: whatever a handler raises (see ``evaluate``).
        """
        context, plan = self._context, self._plan
        index = self._index
        awaitable: Any = self._awaitable
        while True:
            _check_returned_none(
                plan.steps[index][0], await (timed(awaitable) if timed is not None else awaitable)
            )
            step = _advance(context, plan, index + 1)
            if not isinstance(step, Continuation):
                return step
            index, awaitable = step._index, step._awaitable


def begin(
    policy: AuthorizationPolicy,
    principal: Principal,
    resource: Any = None,
    registry: PolicyRegistry | None = None,
) -> AuthorizationResult | Continuation:
    """``evaluate`` without an event loop, as far as it goes without one.

    Runs the policy's handlers in order; a plain handler, and an ``async def``
    that has no suspension point (no ``await``, ``async for``, ``async with``),
    run to their end here. At the first handler whose awaitable may suspend it
    stops and returns a ``Continuation`` to ``finish``; otherwise it returns
    the verdict. The usual policy (claims, roles, a cache lookup) is decided
    here: no coroutine, no scheduler.

    Raises:
        Exception: whatever a handler raises (see ``evaluate``).
    """
    plan = (registry if registry is not None else _NO_HANDLERS).plan(policy)
    context = AuthorizationContext(principal, resource, plan.requirements, _distinct=plan.distinct)
    return _advance(context, plan, 0)


def _advance(
    context: AuthorizationContext, plan: Plan, start: int
) -> AuthorizationResult | Continuation:
    """Run the plan's steps from ``start`` until one returns an awaitable that
    may suspend (the ``Continuation`` there), or to the end (the verdict)."""
    steps = plan.steps
    for index in range(start, len(steps)):
        handler, finishes = steps[index]
        outcome: Any = handler(context)  # None or an awaitable, unless it is a mistake
        if finishes:
            # An async def that neither suspends nor returns anything but None
            # (known from its code, at plan time): iterating it runs it to its
            # end, and its end raises no StopIteration.
            for _ in outcome.__await__():  # pragma: no cover - the plan said it could not
                outcome.close()
                raise RuntimeError(f"authorization handler {handler!r} suspended")
            continue
        if outcome is None:
            continue  # a plain handler
        elif type(outcome) is types.CoroutineType and not code_may_suspend(outcome.cr_code):
            outcome = _run_to_end(outcome)
        elif inspect.isawaitable(outcome):
            return Continuation(context, plan, index, outcome)
        if outcome is not None:
            _check_returned_none(handler, outcome)
    # context.has_succeeded, read without two calls on every guarded call.
    if not context._pending and not context._fail_called and plan.requirements:
        return _SUCCEEDED
    return AuthorizationResult.of(context)


_SUCCEEDED = AuthorizationResult(succeeded=True)

_NO_HANDLERS = PolicyRegistry()
"""Plans for evaluations without a registry: the requirements' own handles."""


async def evaluate(
    policy: AuthorizationPolicy,
    principal: Principal,
    resource: Any = None,
    registry: PolicyRegistry | None = None,
    timed: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None,
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
        timed: if given, every handler's awaitable that may suspend is awaited
            as ``await timed(awaitable)`` (the authorization actor's timeout);
            one that provably cannot suspend (an ``async def`` without
            ``await``, ``async for`` or ``async with``) runs to its end directly.

    Returns:
        The verdict: succeeded iff every requirement succeeded and no handler
        called ``fail()``.

    Raises:
        Exception: whatever a handler raises, unchanged (callers fail closed;
            the authorization actor turns it into a deny).
        TypeError: a handler returned something other than ``None``.
    """
    step = begin(policy, principal, resource, registry)
    if isinstance(step, Continuation):
        return await step.finish(timed)
    return step
