"""Requirements: what a policy demands of a caller.

A requirement is a value; deciding whether it holds is the job of handlers.
The built-in requirements here are their own handlers (as ASP.NET Core's
``RolesAuthorizationRequirement`` and friends are), and so is any subclass of
``Requirement`` that overrides ``handle``. A requirement that nobody marks as
succeeded fails: authorization is closed by default.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from .handlers import is_async_handler, returned_something

if TYPE_CHECKING:
    from .context import AuthorizationContext

__all__ = [
    "AssertionRequirement",
    "AsyncAssertionRequirement",
    "AsyncPredicate",
    "AuthenticatedUserRequirement",
    "ClaimRequirement",
    "Predicate",
    "Requirement",
    "RolesRequirement",
]


class Requirement:
    """Base class of every requirement (ASP.NET's ``IAuthorizationRequirement``).

    Subclass it to define a requirement. Either register handlers for the new
    type with ``PolicyRegistry.add_handler``, or make the requirement its own
    handler by overriding ``handle`` (a plain method, the fast path, or an
    ``async def``, awaited)::

        @attrs.frozen
        class DomainRestricted(Requirement):
            domain: str

            def handle(self, context: AuthorizationContext) -> None:
                email = context.principal.email or ""
                if email.endswith("@" + self.domain):
                    context.succeed(self)

    Both kinds of handler run, for every evaluation of a policy that holds the
    requirement.
    """

    __slots__ = ()

    @property
    def description(self) -> str:
        """A short text for audit logs (never holds credentials)."""
        return type(self).__name__

    def handle(self, context: AuthorizationContext) -> Awaitable[None] | None:
        """Decide this requirement: call ``context.succeed(self)`` or ``context.fail()``.

        The default decides nothing, so the requirement stays pending unless a
        registered handler succeeds it.
        """
        return None


def role_names(roles: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise a roles argument: a list of names, or one comma-separated string.

    The string form follows ASP.NET's ``[Authorize(Roles = "A, B")]``: split on
    commas, trimmed, blanks dropped.

    Raises:
        TypeError: an element is not a string.
        ValueError: no role is left.
    """
    if isinstance(roles, str):
        names = tuple(part.strip() for part in roles.split(",") if part.strip())
    else:
        names = tuple(roles)
        for name in names:
            if not isinstance(name, str) or not name:
                raise TypeError(f"role names must be non-empty strings, got {name!r} in {roles!r}")
    if not names:
        raise ValueError(
            f"at least one role is required, got {roles!r}; "
            'pass role names such as roles=["Administrators"]'
        )
    return names


@attrs.frozen
class AuthenticatedUserRequirement(Requirement):
    """The caller must be authenticated (ASP.NET's ``DenyAnonymousAuthorizationRequirement``).

    This is what the default policy requires.
    """

    @property
    def description(self) -> str:
        return "an authenticated user"

    def handle(self, context: AuthorizationContext) -> None:
        if context.principal.is_authenticated:
            context.succeed(self)


@attrs.frozen
class RolesRequirement(Requirement):
    """The caller must be in at least one of ``roles`` (role names are case-sensitive).

    Args:
        roles: a non-empty list of role names, or one comma-separated string.
    """

    roles: tuple[str, ...] = attrs.field(converter=role_names)

    @property
    def description(self) -> str:
        return "any of the roles: " + ", ".join(self.roles)

    def handle(self, context: AuthorizationContext) -> None:
        if any(context.principal.is_in_role(role) for role in self.roles):
            context.succeed(self)


def _allowed_values(values: Any) -> tuple[Any, ...] | None:
    if values is None:
        return None
    if isinstance(values, str | bytes):
        return (values,)
    values = tuple(values)
    return values or None


@attrs.frozen
class ClaimRequirement(Requirement):
    """The caller must hold the claim ``claim_type``, with one of ``allowed_values`` if given.

    As in ASP.NET, the claim type is compared case-insensitively and values
    exactly (``==``). A list-valued claim (``"role": ["a", "b"]``) matches when
    any of its elements is allowed. ``None`` or an empty list of values means
    "present, with any value"; a single string is one value, not a list of
    characters.
    """

    claim_type: str = attrs.field()
    allowed_values: tuple[Any, ...] | None = attrs.field(default=None, converter=_allowed_values)

    @claim_type.validator
    def _check_claim_type(self, _: object, value: object) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"claim_type must be a non-empty string, got {value!r}")

    @property
    def description(self) -> str:
        if self.allowed_values is None:
            return f"claim {self.claim_type!r}"
        allowed = ", ".join(repr(value) for value in self.allowed_values)
        return f"claim {self.claim_type!r} with one of: {allowed}"

    def handle(self, context: AuthorizationContext) -> None:
        wanted = self.claim_type.casefold()
        for claim_type, value in context.principal.claims.items():
            if claim_type.casefold() == wanted and self._matches(value):
                context.succeed(self)
                return

    def _matches(self, value: Any) -> bool:
        if self.allowed_values is None:
            return True
        present = value if isinstance(value, tuple | list) else (value,)
        return any(item == allowed for item in present for allowed in self.allowed_values)


Predicate: TypeAlias = "Callable[[AuthorizationContext], bool]"
"""``predicate(context)``: whether the requirement holds."""

AsyncPredicate: TypeAlias = "Callable[[AuthorizationContext], Awaitable[bool]]"
"""``await predicate(context)``: whether the requirement holds."""


def _predicate_name(predicate: object) -> str:
    return getattr(predicate, "__qualname__", None) or repr(predicate)


@attrs.frozen
class AssertionRequirement(Requirement):
    """Holds when ``predicate(context)`` is true (ASP.NET's ``AssertionRequirement``).

    The predicate is a plain function of the whole context (principal,
    resource, requirements), called in place: the fast path. For one that
    awaits, use ``AsyncAssertionRequirement`` (``AuthorizationPolicy.build``
    picks the right one). A predicate that raises makes the evaluation raise,
    which the engine turns into a logged deny.

    Raises:
        TypeError: ``predicate`` is not callable, or is an ``async def``.
    """

    predicate: Predicate = attrs.field()

    @predicate.validator
    def _check_predicate(self, _: object, value: object) -> None:
        if not callable(value):
            raise TypeError(f"AssertionRequirement needs a callable predicate, got {value!r}")
        if is_async_handler(value):
            raise TypeError(
                f"the predicate {_predicate_name(value)!r} is async: "
                "use AsyncAssertionRequirement for it"
            )

    @property
    def description(self) -> str:
        return f"assertion {_predicate_name(self.predicate)}"

    def handle(self, context: AuthorizationContext) -> None:
        outcome: object = self.predicate(context)  # a bool, unless the predicate is wrong
        if inspect.isawaitable(outcome):
            raise returned_something(self.predicate, outcome)
        if outcome:
            context.succeed(self)


@attrs.frozen
class AsyncAssertionRequirement(Requirement):
    """Holds when ``await predicate(context)`` is true: ``AssertionRequirement``
    for a predicate that awaits (a directory lookup, a cache behind a lock).

    The evaluation awaits it in the caller's task, under the server's
    ``authorization_timeout`` (past it: denied).

    Raises:
        TypeError: ``predicate`` is not an ``async def`` (or an object whose
            ``__call__`` is one).
    """

    predicate: AsyncPredicate = attrs.field()

    @predicate.validator
    def _check_predicate(self, _: object, value: object) -> None:
        if not callable(value) or not is_async_handler(value):
            raise TypeError(
                f"AsyncAssertionRequirement needs an async def predicate, got {value!r}; "
                "use AssertionRequirement for a plain function"
            )

    @property
    def description(self) -> str:
        return f"assertion {_predicate_name(self.predicate)}"

    async def handle(self, context: AuthorizationContext) -> None:
        if await self.predicate(context):
            context.succeed(self)
