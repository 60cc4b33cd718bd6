"""The built-in requirements, and a requirement that is its own handler."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.lowlevel
from hypothesis import given
from hypothesis import strategies as st

from triohub.auth.principal import Principal
from triohub.authorization import (
    AssertionRequirement,
    AsyncAssertionRequirement,
    AuthenticatedUserRequirement,
    AuthorizationContext,
    AuthorizationPolicy,
    ClaimRequirement,
    HubInvocationContext,
    Requirement,
    RolesRequirement,
)

from .support import ANONYMOUS, invocation, run_policy, user


def allowed(requirement: Requirement, principal: Principal, resource: Any = None) -> bool:
    policy = AuthorizationPolicy([requirement])
    return run_policy(policy, principal, resource).succeeded


# -- authenticated user -----------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        (ANONYMOUS, False),
        (Principal(claims={"sub": "x"}), False),  # claims but no scheme: anonymous
        (Principal(scheme="Cookies"), True),
        (user("bob"), True),
    ],
)
def test_authenticated_user(principal: Principal, expected: bool) -> None:
    assert allowed(AuthenticatedUserRequirement(), principal) is expected


# -- roles: any of ------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "required", "expected"),
    [
        ((), ["Admin"], False),
        (("Admin",), ["Admin"], True),
        (("Admin",), ["Admin", "Ops"], True),
        (("Ops",), ["Admin", "Ops"], True),
        (("Sales",), ["Admin", "Ops"], False),
        (("Sales", "Ops"), ["Admin", "Ops"], True),
        (("admin",), ["Admin"], False),  # ordinal, as ClaimsPrincipal.IsInRole
    ],
)
def test_roles_any_of(held: tuple[str, ...], required: list[str], expected: bool) -> None:
    assert allowed(RolesRequirement(required), user("u", *held)) is expected


def test_roles_from_the_roles_claim_and_a_single_string_role() -> None:
    principal = Principal(claims={"role": "Admin", "roles": ["Ops"]}, scheme="Bearer")
    assert allowed(RolesRequirement(["Ops"]), principal)
    assert allowed(RolesRequirement(["Admin"]), principal)


def test_anonymous_is_in_no_role() -> None:
    assert not allowed(RolesRequirement(["Admin"]), ANONYMOUS)


def test_roles_as_comma_separated_string_like_aspnet() -> None:
    assert RolesRequirement("Admin, Ops ,,").roles == ("Admin", "Ops")
    assert RolesRequirement("Admin").roles == ("Admin",)  # one role, not five letters


@pytest.mark.parametrize("roles", [[], "", " , ", ()])
def test_roles_must_not_be_empty(roles: Any) -> None:
    with pytest.raises(ValueError, match="at least one role"):
        RolesRequirement(roles)


def test_role_names_must_be_strings() -> None:
    with pytest.raises(TypeError, match="non-empty strings"):
        RolesRequirement(["Admin", 3])  # type: ignore[list-item]


@given(
    held=st.frozensets(st.sampled_from("ABCDEF")),
    required=st.lists(st.sampled_from("ABCDEF"), min_size=1),
)
def test_roles_property(held: frozenset[str], required: list[str]) -> None:
    assert allowed(RolesRequirement(required), user("u", *held)) == bool(held & set(required))


# -- claims -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "requirement", "expected"),
    [
        ({}, ClaimRequirement("email"), False),
        ({"email": "a@b"}, ClaimRequirement("email"), True),
        ({"Email": "a@b"}, ClaimRequirement("email"), True),  # type: case-insensitive
        ({"email": "a@b"}, ClaimRequirement("EMAIL"), True),
        ({"dept": "Sales"}, ClaimRequirement("dept", ["Sales", "HR"]), True),
        ({"dept": "HR"}, ClaimRequirement("dept", ["Sales", "HR"]), True),
        ({"dept": "IT"}, ClaimRequirement("dept", ["Sales", "HR"]), False),
        ({"dept": "sales"}, ClaimRequirement("dept", ["Sales"]), False),  # values: exact
        ({"dept": ["IT", "HR"]}, ClaimRequirement("dept", ["HR"]), True),  # list-valued
        ({"dept": ["IT", "Ops"]}, ClaimRequirement("dept", ["HR"]), False),
        ({"dept": []}, ClaimRequirement("dept", ["HR"]), False),
        ({"dept": []}, ClaimRequirement("dept"), True),  # present, any value
        ({"dept": "Sales"}, ClaimRequirement("dept", []), True),  # empty values = presence
        ({"dept": "Sales"}, ClaimRequirement("dept", "Sales"), True),  # one value
        ({"dept": "S"}, ClaimRequirement("dept", "Sales"), False),  # ...not its letters
        ({"level": 3}, ClaimRequirement("level", [3]), True),
        ({"Dept": "IT", "dept": "HR"}, ClaimRequirement("DEPT", ["HR"]), True),
    ],
)
def test_claim_requirement(
    claims: dict[str, Any], requirement: ClaimRequirement, expected: bool
) -> None:
    assert allowed(requirement, Principal(claims=claims, scheme="Bearer")) is expected


def test_claim_requirement_needs_a_claim_type() -> None:
    with pytest.raises(ValueError, match="claim_type"):
        ClaimRequirement("")


@given(
    value=st.one_of(st.sampled_from("abcd"), st.lists(st.sampled_from("abcd"), max_size=3)),
    allowed_values=st.lists(st.sampled_from("abcd"), min_size=1, max_size=3),
)
def test_claim_values_property(value: str | list[str], allowed_values: list[str]) -> None:
    held = set(value) if isinstance(value, list) else {value}
    principal = Principal(claims={"k": value}, scheme="Bearer")
    expected = bool(held & set(allowed_values))
    assert allowed(ClaimRequirement("k", allowed_values), principal) is expected


# -- assertions -----------------------------------------------------------------


def test_assertion_sync() -> None:
    requirement = AssertionRequirement(lambda c: c.principal.name_identifier == "alice")
    assert allowed(requirement, user("alice"))
    assert not allowed(requirement, user("bob"))


def test_assertion_async() -> None:
    async def is_alice(context: AuthorizationContext) -> bool:
        await trio.lowlevel.checkpoint()
        return context.principal.name_identifier == "alice"

    assert allowed(AsyncAssertionRequirement(is_alice), user("alice"))
    assert not allowed(AsyncAssertionRequirement(is_alice), user("bob"))
    assert AsyncAssertionRequirement(is_alice).description.endswith("is_alice")


def test_each_assertion_takes_its_kind_of_predicate() -> None:
    async def is_alice(context: AuthorizationContext) -> bool:
        return context.principal.name_identifier == "alice"

    def is_bob(context: AuthorizationContext) -> bool:
        return context.principal.name_identifier == "bob"

    with pytest.raises(TypeError, match="use AsyncAssertionRequirement"):
        AssertionRequirement(is_alice)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="use AssertionRequirement"):
        AsyncAssertionRequirement(is_bob)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async def predicate"):
        AsyncAssertionRequirement(None)  # type: ignore[arg-type]


def test_a_plain_predicate_returning_an_awaitable_is_an_error_not_a_grant() -> None:
    """A coroutine is truthy: taken for a verdict, it would allow everyone."""

    async def lookup(context: AuthorizationContext) -> bool:  # pragma: no cover - never run
        return False

    with pytest.raises(TypeError, match="declare it 'async def'"):
        allowed(AssertionRequirement(lambda c: lookup(c)), user())  # type: ignore[arg-type,return-value]


def test_assertion_sees_the_resource() -> None:
    requirement = AssertionRequirement(lambda c: c.resource.target == "SendMessage")
    assert allowed(requirement, user(), invocation(user(), "SendMessage"))
    assert not allowed(requirement, user(), invocation(user(), "BanUser"))


def test_assertion_uses_truthiness() -> None:
    assert not allowed(AssertionRequirement(lambda c: None), user())  # type: ignore[arg-type,return-value]
    assert allowed(AssertionRequirement(lambda c: "yes"), user())  # type: ignore[arg-type,return-value]


def test_assertion_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        AssertionRequirement(True)  # type: ignore[arg-type]


def test_assertion_that_raises_propagates() -> None:
    def broken(context: AuthorizationContext) -> bool:
        raise LookupError("directory down")

    with pytest.raises(LookupError):
        allowed(AssertionRequirement(broken), user())


# -- descriptions (for audit logs) ----------------------------------------------


def test_descriptions() -> None:
    def on_weekdays(context: AuthorizationContext) -> bool:
        return True

    assert AuthenticatedUserRequirement().description == "an authenticated user"
    assert RolesRequirement(["A", "B"]).description == "any of the roles: A, B"
    assert ClaimRequirement("email").description == "claim 'email'"
    assert ClaimRequirement("d", ["x", "y"]).description == "claim 'd' with one of: 'x', 'y'"
    assert AssertionRequirement(on_weekdays).description.startswith("assertion ")
    assert AssertionRequirement(on_weekdays).description.endswith("on_weekdays")


# -- a requirement that is its own handler (the seed's DomainRestrictedRequirement) --


@attrs.frozen
class DomainRestricted(Requirement):
    """Email in @contoso.example; asdf42 may not call BanUser."""

    def handle(self, context: AuthorizationContext) -> None:
        resource = context.resource
        email = context.principal.email or ""
        if not isinstance(resource, HubInvocationContext):
            return
        if resource.target.casefold() == "banuser" and email == "asdf42@contoso.example":
            return
        if email.endswith("@contoso.example"):
            context.succeed(self)


@attrs.frozen
class AsyncDomainRestricted(DomainRestricted):
    async def handle(self, context: AuthorizationContext) -> None:  # type: ignore[override]
        DomainRestricted.handle(self, context)


@pytest.mark.parametrize("requirement", [DomainRestricted(), AsyncDomainRestricted()])
@pytest.mark.parametrize(
    ("email", "target", "expected"),
    [
        ("alice@contoso.example", "BanUser", True),
        ("alice@contoso.example", "ViewUserHistory", True),
        ("asdf42@contoso.example", "BanUser", False),
        ("asdf42@contoso.example", "banuser", False),  # case-insensitive method name
        ("asdf42@contoso.example", "ViewUserHistory", True),
        ("mallory@fabrikam.example", "ViewUserHistory", False),
        ("mallory@fabrikam.example", "BanUser", False),
    ],
)
def test_self_handling_requirement(
    requirement: Requirement, email: str, target: str, expected: bool
) -> None:
    principal = user(email.split("@")[0], email=email)
    assert allowed(requirement, principal, invocation(principal, target)) is expected


def test_a_plain_requirement_decides_nothing_by_itself() -> None:
    @attrs.frozen
    class Unhandled(Requirement):
        pass

    assert Unhandled().description == "Unhandled"
    assert not allowed(Unhandled(), user())


def test_invocation_context_exposes_the_caller() -> None:
    principal = user("alice", email="alice@contoso.example")
    resource = invocation(principal, "SendMessage", "hi")
    assert resource.principal is principal
    assert resource.connection_id == "conn-1"
    assert resource.user_id == "alice@contoso.example"
    assert resource.arguments == ("hi",)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        resource.target = "BanUser"  # type: ignore[misc]
