"""``@authorize`` and ``@allow_anonymous``: metadata on hub classes and methods.

The decorators only attach data; nothing is checked or looked up when they
run. The engine reads the data once, at hub registration, and turns it into
one policy per method with ``resolve_policy``; an unknown policy name fails
there, at startup, never at the first call.

Inheritance follows ASP.NET, where ``[Authorize]`` and ``[AllowAnonymous]``
are ``Inherited = true``: a subclass of a protected hub is protected too, and
so is a method overridden in a subclass (see ``method_authorize_data``).
Removing protection therefore always takes an explicit ``@allow_anonymous``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, overload

import attrs

from .policy import AuthorizationPolicy, PolicyRegistry
from .requirements import Requirement, RolesRequirement, role_names

__all__ = [
    "AuthorizeData",
    "allow_anonymous",
    "allows_anonymous",
    "authorize",
    "authorize_data",
    "method_allows_anonymous",
    "method_authorize_data",
    "resolve_policy",
]

_AUTHORIZE_ATTR = "__triohub_authorize__"
_ANONYMOUS_ATTR = "__triohub_allow_anonymous__"

F = TypeVar("F", bound=Callable[..., Any])


def _policy_name(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"@authorize needs a non-blank policy name, got {value!r}; "
            "use a bare @authorize for the default policy"
        )
    return value


def _roles(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else role_names(value)


@attrs.frozen
class AuthorizeData:
    """One ``@authorize`` (ASP.NET's ``IAuthorizeData``)."""

    policy: str | None = attrs.field(default=None, converter=_policy_name)
    """A registered policy name, or ``None``."""
    roles: tuple[str, ...] | None = attrs.field(default=None, converter=_roles)
    """Any one of these roles is required, or ``None``."""

    @property
    def uses_default_policy(self) -> bool:
        """A bare ``@authorize``: neither a policy nor roles, so the default policy."""
        return self.policy is None and self.roles is None

    def __str__(self) -> str:
        parts = []
        if self.policy is not None:
            parts.append(repr(self.policy))
        if self.roles is not None:
            parts.append(f"roles={list(self.roles)!r}")
        return f"@authorize({', '.join(parts)})"


def _own(obj: Any, attribute: str) -> Any:
    # A class's own attributes only; getattr would return a base class's.
    if isinstance(obj, type):
        return vars(obj).get(attribute)
    return getattr(obj, attribute, None)


def _attach(target: F, data: AuthorizeData) -> F:
    existing: tuple[AuthorizeData, ...] = _own(target, _AUTHORIZE_ATTR) or ()
    try:
        # Decorators apply bottom-up; prepending keeps the data in source order.
        setattr(target, _AUTHORIZE_ATTR, (data, *existing))
    except (AttributeError, TypeError):
        raise TypeError(f"@authorize goes on a hub class or a function, got {target!r}") from None
    return target


@overload
def authorize(policy: F, /) -> F: ...
@overload
def authorize(
    policy: str | None = None, *, roles: str | Iterable[str] | None = None
) -> Callable[[F], F]: ...
def authorize(
    policy: str | F | None = None, *, roles: str | Iterable[str] | None = None
) -> F | Callable[[F], F]:
    """Require authorization to call a hub method, or any method of a hub class.

    Forms (each one stacks with the others; all of them apply)::

        @authorize                          # the default policy (authenticated user)
        @authorize()                        # the same
        @authorize("Administrators")        # a named policy
        @authorize(roles=["Admin", "Ops"])  # any one of these roles ("Admin, Ops" also works)
        @authorize(policy="DomainRestricted", roles=["Admin"])  # both

    Raises:
        ValueError: a blank policy name, or an empty roles list.
        TypeError: applied to something that cannot carry attributes.
    """
    if callable(policy):
        return _attach(policy, AuthorizeData())
    data = AuthorizeData(policy=policy, roles=roles)

    def decorate(target: F) -> F:
        return _attach(target, data)

    return decorate


def allow_anonymous(target: F) -> F:
    """Exempt a hub class or method from the hub-level policy (``[AllowAnonymous]``).

    What it exempts from is the engine's decision; see ``allows_anonymous``.
    """
    try:
        setattr(target, _ANONYMOUS_ATTR, True)
    except (AttributeError, TypeError):
        raise TypeError(
            f"@allow_anonymous goes on a hub class or a function, got {target!r}"
        ) from None
    return target


def authorize_data(obj: Any) -> tuple[AuthorizeData, ...]:
    """The ``@authorize`` data on a class or a function, in source order.

    For a class, that of its bases follows its own, along the MRO (ASP.NET's
    ``GetCustomAttributes(inherit: true)``). For a function, only its own; use
    ``method_authorize_data`` to include overridden methods of base classes.
    """
    if isinstance(obj, type):
        return tuple(data for klass in obj.__mro__ for data in _own(klass, _AUTHORIZE_ATTR) or ())
    return tuple(_own(obj, _AUTHORIZE_ATTR) or ())


def allows_anonymous(obj: Any) -> bool:
    """Whether ``@allow_anonymous`` is on the object (for a class: or on a base class).

    In ASP.NET SignalR ``[AllowAnonymous]`` on a hub class lets anonymous
    connections through the hub-level policy; on a hub method it cannot
    bypass the hub-level policy (method attributes only restrict further,
    dotnet/aspnetcore#21800), and method-level ``[Authorize]`` still applies.
    """
    if isinstance(obj, type):
        return any(_own(klass, _ANONYMOUS_ATTR) is True for klass in obj.__mro__)
    return _own(obj, _ANONYMOUS_ATTR) is True


def _definitions(owner: type, name: str) -> list[Any]:
    found: list[Any] = []
    for klass in owner.__mro__:
        member = vars(klass).get(name)
        if member is not None and all(member is not seen for seen in found):
            found.append(member)
    return found


def method_authorize_data(owner: type, name: str) -> tuple[AuthorizeData, ...]:
    """The ``@authorize`` data of method ``name`` of ``owner``, overridden versions included.

    Walks the MRO, so overriding a protected method without repeating its
    ``@authorize`` keeps the protection (ASP.NET's attribute inheritance).
    """
    return tuple(data for member in _definitions(owner, name) for data in authorize_data(member))


def method_allows_anonymous(owner: type, name: str) -> bool:
    """Whether method ``name`` of ``owner`` (or an overridden version) has ``@allow_anonymous``."""
    return any(allows_anonymous(member) for member in _definitions(owner, name))


def resolve_policy(
    registry: PolicyRegistry, data: Sequence[Any], *, where: str | None = None
) -> AuthorizationPolicy | None:
    """Combine ``@authorize`` data into one policy (ASP.NET's ``AuthorizationPolicy.CombineAsync``).

    Each datum contributes its named policy's requirements and a
    ``RolesRequirement`` for its roles; a datum with neither contributes the
    registry's default policy. Everything contributed must succeed. Items of
    ``data`` that are not ``AuthorizeData`` are ignored, so the engine may pass
    all the metadata of a method.

    Args:
        registry: where named policies and the default policy come from.
        data: the ``@authorize`` data, e.g. from ``method_authorize_data``.
        where: what the data is on (``"ChatHub.ban_user"``), for error messages.

    Returns:
        The combined policy, or ``None`` when there is no ``AuthorizeData``
        (nothing to check, as in ASP.NET).

    Raises:
        UnknownPolicyError: a policy name is not registered.
    """
    requirements: list[Requirement] = []
    found = False
    for datum in data:
        if not isinstance(datum, AuthorizeData):
            continue
        found = True
        if datum.policy is not None:
            requirements.extend(registry.get(datum.policy, where=where).requirements)
        if datum.roles is not None:
            requirements.append(RolesRequirement(datum.roles))
        if datum.uses_default_policy:
            requirements.extend(registry.default_policy.requirements)
    if not found:
        return None
    return AuthorizationPolicy(requirements)
