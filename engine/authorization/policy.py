"""Policies (sets of requirements that must all hold) and the registry of named ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import attrs

from .handlers import AuthorizationHandler, HandlerFunction, as_handler_function, is_async_handler
from .requirements import (
    AssertionRequirement,
    AsyncAssertionRequirement,
    AsyncPredicate,
    AuthenticatedUserRequirement,
    ClaimRequirement,
    Predicate,
    Requirement,
    RolesRequirement,
)

if TYPE_CHECKING:
    from .context import AuthorizationContext

__all__ = ["AuthorizationPolicy", "Plan", "PolicyRegistry", "Step", "UnknownPolicyError"]


def _requirements(value: Iterable[Requirement]) -> tuple[Requirement, ...]:
    requirements = tuple(value)
    if not requirements:
        raise ValueError(
            "an authorization policy needs at least one requirement; "
            "use AuthorizationPolicy.build(authenticated=True) for 'any signed-in user'"
        )
    for requirement in requirements:
        if not isinstance(requirement, Requirement):
            raise TypeError(
                f"policy requirements must be Requirement instances, got {requirement!r}"
            )
    return requirements


@attrs.frozen
class AuthorizationPolicy:
    """Requirements that must all succeed (ASP.NET's ``AuthorizationPolicy``).

    Build one with ``AuthorizationPolicy.build(...)`` or from requirements
    directly: ``AuthorizationPolicy([RolesRequirement(["Admin"])])``.

    Raises:
        ValueError: no requirement (as in ASP.NET, an empty policy is an error,
            never an "allow everyone").
    """

    requirements: tuple[Requirement, ...] = attrs.field(converter=_requirements)

    @classmethod
    def build(
        cls,
        *,
        authenticated: bool = False,
        roles: str | Iterable[str] | None = None,
        claims: Mapping[str, Iterable[Any] | str | None] | None = None,
        assertions: Iterable[Predicate | AsyncPredicate] = (),
        requirements: Iterable[Requirement] = (),
    ) -> AuthorizationPolicy:
        """A policy from the common requirements, in this order.

        Args:
            authenticated: require an authenticated user.
            roles: require any one of these roles (a list, or "A, B").
            claims: ``{claim_type: allowed values or None}``; one requirement per claim.
            assertions: predicates of the context, each a requirement: an
                ``AssertionRequirement`` for a plain function, an
                ``AsyncAssertionRequirement`` for an ``async def``.
            requirements: any other requirements, appended as given.

        Raises:
            ValueError: nothing is required.
        """
        built: list[Requirement] = []
        if authenticated:
            built.append(AuthenticatedUserRequirement())
        if roles is not None:
            built.append(RolesRequirement(roles))
        for claim_type, values in (claims or {}).items():
            built.append(ClaimRequirement(claim_type, values))
        for predicate in assertions:
            if is_async_handler(predicate):
                built.append(AsyncAssertionRequirement(cast("AsyncPredicate", predicate)))
            else:
                built.append(AssertionRequirement(cast("Predicate", predicate)))
        built.extend(requirements)
        return cls(built)

    @classmethod
    def combine(cls, *policies: AuthorizationPolicy) -> AuthorizationPolicy:
        """One policy requiring everything the given policies require, in order."""
        return cls(requirement for policy in policies for requirement in policy.requirements)

    @property
    def description(self) -> str:
        return "; ".join(requirement.description for requirement in self.requirements)


class UnknownPolicyError(KeyError):
    """A policy name that the registry does not know.

    Attributes:
        name: the name asked for.
        known: the names the registry knows.
    """

    def __init__(self, name: str, known: Sequence[str], where: str | None = None) -> None:
        self.name = name
        self.known = tuple(known)
        used = f" (used by {where})" if where else ""
        if self.known:
            listed = "known policies: " + ", ".join(repr(k) for k in self.known)
        else:
            listed = "no policy is registered yet"
        self.message = (
            f"no authorization policy named {name!r}{used}; {listed}. "
            f"Register it with registry.add_policy({name!r}, AuthorizationPolicy.build(...))"
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        # KeyError's own __str__ shows repr(message), quotes and all.
        return self.message


class PolicyRegistry:
    """Named policies, the default policy and the handlers of one server.

    There are no globals: each server gets its own registry. Configure it
    before the server starts; policies named by ``@authorize`` are resolved
    once, at hub registration.

    Args:
        default_policy: what a bare ``@authorize`` requires; an authenticated
            user unless given.
    """

    def __init__(self, *, default_policy: AuthorizationPolicy | None = None) -> None:
        self._policies: dict[str, tuple[str, AuthorizationPolicy]] = {}
        self._handlers: list[tuple[type[Requirement], HandlerFunction]] = []
        self._handlers_by_types: dict[tuple[type, ...], tuple[HandlerFunction, ...]] = {}
        """``handlers_for`` answers by the requirements' types, which every
        guarded call asks again: cached, and cleared by ``add_handler``."""
        self._plans: dict[int, tuple[AuthorizationPolicy, Plan]] = {}
        self._default_policy = AuthorizationPolicy.build(authenticated=True)
        if default_policy is not None:
            self.default_policy = default_policy

    @property
    def default_policy(self) -> AuthorizationPolicy:
        """Applied by each ``@authorize`` that names neither a policy nor roles."""
        return self._default_policy

    @default_policy.setter
    def default_policy(self, policy: AuthorizationPolicy) -> None:
        if not isinstance(policy, AuthorizationPolicy):
            raise TypeError(f"default_policy must be an AuthorizationPolicy, got {policy!r}")
        self._default_policy = policy

    def add_policy(self, name: str, policy: AuthorizationPolicy) -> None:
        """Register ``policy`` under ``name``.

        Names are case-insensitive and a second registration under the same
        name replaces the first, as in ASP.NET's ``AuthorizationOptions``.

        Raises:
            ValueError: ``name`` is empty or blank.
            TypeError: ``policy`` is not an ``AuthorizationPolicy``.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a policy name must be a non-blank string, got {name!r}")
        if not isinstance(policy, AuthorizationPolicy):
            raise TypeError(
                f"add_policy({name!r}, ...) needs an AuthorizationPolicy, got {policy!r}; "
                "build one with AuthorizationPolicy.build(...)"
            )
        self._policies[name.casefold()] = (name, policy)

    def get(self, name: str, *, where: str | None = None) -> AuthorizationPolicy:
        """The policy registered as ``name`` (case-insensitive).

        Args:
            where: what asked for it, for the error message (e.g. ``ChatHub.ban_user``).

        Raises:
            UnknownPolicyError: no such policy; the message lists the known ones.
        """
        found = self._policies.get(name.casefold())
        if found is None:
            raise UnknownPolicyError(name, self.names, where)
        return found[1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.casefold() in self._policies

    @property
    def names(self) -> tuple[str, ...]:
        """Registered policy names (as spelled by the latest ``add_policy``), sorted."""
        return tuple(sorted(name for name, _ in self._policies.values()))

    def add_handler(
        self,
        requirement_type: type[Requirement],
        handler: AuthorizationHandler | HandlerFunction,
    ) -> None:
        """Run ``handler`` whenever a policy holds a ``requirement_type`` (or a subclass).

        Several handlers may serve one type; they all run, in registration
        order, after the requirements' own ``handle`` methods. One success is
        enough for a requirement unless some handler calls ``fail()``.

        Raises:
            TypeError: ``requirement_type`` is not a ``Requirement`` subclass, or
                ``handler`` is neither a handler object nor a function.
        """
        if not (isinstance(requirement_type, type) and issubclass(requirement_type, Requirement)):
            raise TypeError(
                f"add_handler() needs a Requirement subclass as its first argument, "
                f"got {requirement_type!r}"
            )
        self._handlers.append((requirement_type, as_handler_function(handler)))
        self._handlers_by_types.clear()
        self._plans.clear()

    def handlers_for(self, requirements: Iterable[Requirement]) -> tuple[HandlerFunction, ...]:
        """The registered handlers that serve at least one of ``requirements``."""
        types = tuple(map(type, requirements))
        found = self._handlers_by_types.get(types)
        if found is None:
            found = self._handlers_by_types[types] = tuple(
                handler
                for requirement_type, handler in self._handlers
                if any(issubclass(present, requirement_type) for present in types)
            )
        return found

    def plan(self, policy: AuthorizationPolicy) -> Plan:
        """What an evaluation of ``policy`` calls, prepared once per policy
        (cached; ``add_handler`` clears)."""
        cached = self._plans.get(id(policy))
        if cached is not None and cached[0] is policy:
            return cached[1]
        plan = Plan.of(policy, self.handlers_for(policy.requirements))
        if len(self._plans) > 4096:
            self._plans.clear()  # policies built on the fly: keep the cache bounded
        self._plans[id(policy)] = (policy, plan)
        return plan

    def __repr__(self) -> str:
        return f"<PolicyRegistry policies={list(self.names)} handlers={len(self._handlers)}>"


@attrs.frozen
class Step:
    """One function an evaluation calls, and whether it is awaited."""

    handler: Callable[[AuthorizationContext], Any]
    awaited: bool
    """An ``async def`` (``handlers.is_async_handler``), read once when the plan
    is made: its call is awaited. A plain function's is not, and must be ``None``."""


@attrs.frozen
class Plan:
    """An evaluation of one policy, prepared: every function it calls, in
    order, and which of them are awaited."""

    requirements: tuple[Requirement, ...]
    steps: tuple[Step, ...]
    """Each requirement's own ``handle`` (each distinct requirement once, not
    the base class's, which decides nothing), then the registered handlers
    serving the policy."""
    distinct: bool
    """No requirement equals another, so ``succeed`` removes just the one."""
    awaits: bool
    """Some step is awaited: the evaluation needs an event loop (and the engine
    puts the server's ``authorization_timeout`` around it). Otherwise every
    step is a plain call and the evaluation runs in place."""
    handlers: tuple[Callable[[AuthorizationContext], Any], ...]
    """The steps' handlers, in order (what a plan that never awaits calls)."""

    @classmethod
    def of(cls, policy: AuthorizationPolicy, handlers: Iterable[HandlerFunction]) -> Plan:
        requirements = policy.requirements
        functions = (*_own_handles(requirements), *handlers)
        distinct = all(
            not (a is b or a == b)
            for i, a in enumerate(requirements)
            for b in requirements[i + 1 :]
        )
        steps = tuple(Step(f, is_async_handler(f)) for f in functions)
        return cls(
            requirements,
            steps,
            distinct,
            awaits=any(step.awaited for step in steps),
            handlers=tuple(step.handler for step in steps),
        )


def _own_handles(requirements: tuple[Requirement, ...]) -> list[HandlerFunction]:
    """Each distinct requirement object's ``handle``, in policy order (but not
    the base class's, which decides nothing: those are left to handlers)."""
    distinct: list[Requirement] = []
    for requirement in requirements:
        if not any(requirement is seen for seen in distinct):
            distinct.append(requirement)
    return [r.handle for r in distinct if type(r).handle is not Requirement.handle]
