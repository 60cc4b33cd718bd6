"""Policies and the policy registry."""

from __future__ import annotations

import attrs
import pytest

from triohub.authorization import (
    AssertionRequirement,
    AsyncAssertionRequirement,
    AuthenticatedUserRequirement,
    AuthorizationContext,
    AuthorizationPolicy,
    ClaimRequirement,
    PolicyRegistry,
    Requirement,
    RolesRequirement,
    UnknownPolicyError,
)

from .support import Marker


def is_alice(context: AuthorizationContext) -> bool:
    return context.principal.name_identifier == "alice"


async def is_bob(context: AuthorizationContext) -> bool:
    return context.principal.name_identifier == "bob"


def test_build_picks_the_assertion_for_each_kind_of_predicate() -> None:
    policy = AuthorizationPolicy.build(assertions=[is_alice, is_bob])
    assert policy.requirements == (
        AssertionRequirement(is_alice),
        AsyncAssertionRequirement(is_bob),
    )
    assert not PolicyRegistry().plan(AuthorizationPolicy.build(assertions=[is_alice])).awaits
    assert PolicyRegistry().plan(policy).awaits


def test_build_puts_requirements_in_a_fixed_order() -> None:
    extra = Marker("extra")
    policy = AuthorizationPolicy.build(
        requirements=[extra],
        assertions=[is_alice],
        claims={"email": None, "dept": ["Sales"]},
        roles=["Admin", "Ops"],
        authenticated=True,
    )
    assert policy.requirements == (
        AuthenticatedUserRequirement(),
        RolesRequirement(["Admin", "Ops"]),
        ClaimRequirement("email"),
        ClaimRequirement("dept", ["Sales"]),
        AssertionRequirement(is_alice),
        extra,
    )
    assert policy.description == (
        "an authenticated user; any of the roles: Admin, Ops; claim 'email'; "
        "claim 'dept' with one of: 'Sales'; assertion is_alice; Marker"
    )


def test_build_roles_as_string() -> None:
    assert AuthorizationPolicy.build(roles="Admin, Ops").requirements == (
        RolesRequirement(["Admin", "Ops"]),
    )


@pytest.mark.parametrize("make", [AuthorizationPolicy.build, lambda: AuthorizationPolicy([])])
def test_an_empty_policy_is_an_error(make: object) -> None:
    with pytest.raises(ValueError, match="at least one requirement"):
        make()  # type: ignore[operator]


def test_requirements_must_be_requirements() -> None:
    with pytest.raises(TypeError, match="Requirement instances"):
        AuthorizationPolicy(["Admin"])  # type: ignore[list-item]


def test_combine_concatenates_in_order() -> None:
    first = AuthorizationPolicy.build(authenticated=True)
    second = AuthorizationPolicy.build(roles=["Admin"])
    combined = AuthorizationPolicy.combine(first, second)
    assert combined.requirements == first.requirements + second.requirements


def test_combine_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one requirement"):
        AuthorizationPolicy.combine()


def test_policies_are_frozen_values() -> None:
    policy = AuthorizationPolicy.build(roles=["Admin"])
    assert policy == AuthorizationPolicy.build(roles=["Admin"])
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.requirements = ()  # type: ignore[misc]


# -- the registry -----------------------------------------------------------------


def test_named_policies_are_case_insensitive_and_replaceable() -> None:
    registry = PolicyRegistry()
    admins = AuthorizationPolicy.build(roles=["Administrators"])
    registry.add_policy("Administrators", admins)
    assert registry.get("administrators") is admins
    assert "ADMINISTRATORS" in registry
    assert 42 not in registry

    replacement = AuthorizationPolicy.build(roles=["Root"])
    registry.add_policy("administrators", replacement)
    assert registry.get("Administrators") is replacement
    assert registry.names == ("administrators",)  # the latest spelling


def test_unknown_policy_error_lists_known_policies() -> None:
    registry = PolicyRegistry()
    registry.add_policy("DomainRestricted", AuthorizationPolicy.build(authenticated=True))
    registry.add_policy("Administrators", AuthorizationPolicy.build(roles=["Administrators"]))
    with pytest.raises(UnknownPolicyError) as caught:
        registry.get("Admins", where="ChatHub.ban_user")
    error = caught.value
    assert isinstance(error, KeyError)
    assert error.name == "Admins"
    assert error.known == ("Administrators", "DomainRestricted")
    assert str(error) == (
        "no authorization policy named 'Admins' (used by ChatHub.ban_user); "
        "known policies: 'Administrators', 'DomainRestricted'. "
        "Register it with registry.add_policy('Admins', AuthorizationPolicy.build(...))"
    )


def test_unknown_policy_error_in_an_empty_registry() -> None:
    with pytest.raises(UnknownPolicyError, match="no policy is registered yet"):
        PolicyRegistry().get("Anything")


@pytest.mark.parametrize("name", ["", "   ", None])
def test_policy_names_must_not_be_blank(name: object) -> None:
    with pytest.raises(ValueError, match="non-blank"):
        PolicyRegistry().add_policy(name, AuthorizationPolicy.build(authenticated=True))  # type: ignore[arg-type]


def test_add_policy_needs_a_policy() -> None:
    with pytest.raises(TypeError, match=r"AuthorizationPolicy\.build"):
        PolicyRegistry().add_policy("Admins", RolesRequirement(["Admin"]))  # type: ignore[arg-type]


def test_default_policy_is_authenticated_user_and_settable() -> None:
    registry = PolicyRegistry()
    assert registry.default_policy.requirements == (AuthenticatedUserRequirement(),)

    stricter = AuthorizationPolicy.build(authenticated=True, claims={"email": None})
    registry.default_policy = stricter
    assert registry.default_policy is stricter
    assert PolicyRegistry(default_policy=stricter).default_policy is stricter
    with pytest.raises(TypeError, match="AuthorizationPolicy"):
        registry.default_policy = None  # type: ignore[assignment]


def test_registries_are_independent() -> None:
    one, two = PolicyRegistry(), PolicyRegistry()
    one.add_policy("A", AuthorizationPolicy.build(authenticated=True))
    one.default_policy = AuthorizationPolicy.build(roles=["X"])
    assert "A" not in two
    assert two.default_policy.requirements == (AuthenticatedUserRequirement(),)


class NotARequirement:
    pass


class Handler:
    def handle(self, context: AuthorizationContext) -> None:
        pass


def test_add_handler_validates_its_arguments() -> None:
    registry = PolicyRegistry()
    with pytest.raises(TypeError, match="Requirement subclass"):
        registry.add_handler(NotARequirement, Handler())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Requirement subclass"):
        registry.add_handler(Marker("a"), Handler())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"pass Handler\(\) instead"):
        registry.add_handler(Marker, Handler)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="handle\\(context\\) method"):
        registry.add_handler(Marker, "handler")  # type: ignore[arg-type]


def test_handlers_for_selects_by_requirement_type() -> None:
    @attrs.frozen
    class Other(Requirement):
        pass

    registry = PolicyRegistry()
    marker_handler, base_handler, other_handler = Handler(), Handler(), Handler()
    registry.add_handler(Marker, marker_handler)
    registry.add_handler(Requirement, base_handler)
    registry.add_handler(Other, other_handler)
    assert registry.handlers_for([Marker()]) == (marker_handler.handle, base_handler.handle)
    assert registry.handlers_for([]) == ()
