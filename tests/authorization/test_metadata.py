"""@authorize / @allow_anonymous metadata and resolve_policy (ASP.NET's CombineAsync)."""

from __future__ import annotations

import attrs
import pytest

from triohub.authorization import (
    AuthenticatedUserRequirement,
    AuthorizationContext,
    AuthorizationPolicy,
    AuthorizeData,
    ClaimRequirement,
    HubInvocationContext,
    PolicyRegistry,
    Requirement,
    RolesRequirement,
    UnknownPolicyError,
    allow_anonymous,
    allows_anonymous,
    authorize,
    authorize_data,
    method_allows_anonymous,
    method_authorize_data,
    resolve_policy,
)

from .support import ANONYMOUS, invocation, run_policy, user

# -- the decorators only attach data --------------------------------------------


def test_decorator_forms() -> None:
    @authorize
    async def bare() -> None: ...

    @authorize()
    async def called() -> None: ...

    @authorize("Administrators")
    async def named() -> None: ...

    @authorize(roles=["Admin", "Ops"])
    async def roles() -> None: ...

    @authorize(roles="Admin, Ops")
    async def roles_string() -> None: ...

    @authorize(policy="DomainRestricted", roles=["Admin"])
    async def both() -> None: ...

    assert authorize_data(bare) == (AuthorizeData(),)
    assert authorize_data(called) == (AuthorizeData(),)
    assert authorize_data(named) == (AuthorizeData(policy="Administrators"),)
    assert authorize_data(roles) == (AuthorizeData(roles=("Admin", "Ops")),)
    assert authorize_data(roles_string) == (AuthorizeData(roles=("Admin", "Ops")),)
    assert authorize_data(both) == (AuthorizeData("DomainRestricted", ("Admin",)),)
    assert str(authorize_data(both)[0]) == "@authorize('DomainRestricted', roles=['Admin'])"


def test_decorators_return_the_same_object() -> None:
    async def method() -> None: ...

    assert authorize(method) is method
    assert authorize("P")(method) is method
    assert allow_anonymous(method) is method


def test_stacked_decorators_all_apply_in_source_order() -> None:
    @authorize("Administrators")
    @authorize("DomainRestricted")
    @authorize
    async def ban_user(user_name: str) -> None: ...

    assert authorize_data(ban_user) == (
        AuthorizeData(policy="Administrators"),
        AuthorizeData(policy="DomainRestricted"),
        AuthorizeData(),
    )


def test_no_metadata() -> None:
    async def method() -> None: ...

    assert authorize_data(method) == ()
    assert not allows_anonymous(method)


@pytest.mark.parametrize("policy", ["", "  "])
def test_blank_policy_name_is_an_error(policy: str) -> None:
    with pytest.raises(ValueError, match="non-blank policy name"):
        authorize(policy)


@pytest.mark.parametrize("roles", [[], "", " , "])
def test_empty_roles_is_an_error(roles: object) -> None:
    with pytest.raises(ValueError, match="at least one role"):
        authorize(roles=roles)  # type: ignore[call-overload]


def test_decorating_something_that_cannot_carry_metadata() -> None:
    with pytest.raises(TypeError, match="hub class or a function"):
        authorize(len)
    with pytest.raises(TypeError, match="hub class or a function"):
        allow_anonymous(len)


# -- classes and inheritance ---------------------------------------------------


@authorize
class BaseHub:
    @authorize("Administrators")
    async def ban_user(self, name: str) -> None: ...

    async def send(self, message: str) -> None: ...


@authorize(roles=["Chatters"])
class ChatHub(BaseHub):
    async def ban_user(self, name: str) -> None:  # overridden without repeating @authorize
        ...

    @allow_anonymous
    async def ping(self) -> None: ...


@allow_anonymous
class OpenHub(ChatHub):
    pass


def test_class_metadata_includes_base_classes_like_aspnet_inherited_true() -> None:
    assert authorize_data(BaseHub) == (AuthorizeData(),)
    assert authorize_data(ChatHub) == (AuthorizeData(roles=("Chatters",)), AuthorizeData())


def test_decorating_a_subclass_does_not_touch_its_base() -> None:
    assert vars(BaseHub)["__triohub_authorize__"] == (AuthorizeData(),)


def test_function_metadata_is_its_own() -> None:
    assert authorize_data(ChatHub.ban_user) == ()
    assert authorize_data(BaseHub.ban_user) == (AuthorizeData(policy="Administrators"),)
    assert authorize_data(ChatHub().send) == ()  # bound methods read their function


def test_method_metadata_includes_overridden_versions() -> None:
    assert method_authorize_data(ChatHub, "ban_user") == (AuthorizeData(policy="Administrators"),)
    assert method_authorize_data(ChatHub, "send") == ()
    assert method_authorize_data(ChatHub, "missing") == ()


def test_allow_anonymous() -> None:
    assert allows_anonymous(ChatHub.ping)
    assert not allows_anonymous(ChatHub.send)
    assert not allows_anonymous(ChatHub)
    assert allows_anonymous(OpenHub)  # its own
    assert not allows_anonymous(BaseHub)

    @allow_anonymous
    class Anonymous:
        pass

    class Derived(Anonymous):
        pass

    assert allows_anonymous(Derived)  # inherited, like [AllowAnonymous]
    assert method_allows_anonymous(OpenHub, "ping")
    assert not method_allows_anonymous(OpenHub, "ban_user")


# -- resolve_policy: CombineAsync -------------------------------------------------


@attrs.frozen
class DomainRestricted(Requirement):
    def handle(self, context: AuthorizationContext) -> None:
        email = context.principal.email or ""
        resource = context.resource
        if isinstance(resource, HubInvocationContext) and (
            resource.target.casefold() == "banuser" and email == "asdf42@contoso.example"
        ):
            return
        if email.endswith("@contoso.example"):
            context.succeed(self)


def demo_registry() -> PolicyRegistry:
    registry = PolicyRegistry()
    registry.add_policy("Administrators", AuthorizationPolicy.build(roles=["Administrators"]))
    registry.add_policy("DomainRestricted", AuthorizationPolicy([DomainRestricted()]))
    return registry


AUTHENTICATED = AuthenticatedUserRequirement()
ADMINS = RolesRequirement(["Administrators"])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], None),
        (["not authorize data", 42], None),  # other metadata is ignored
        ([AuthorizeData()], (AUTHENTICATED,)),
        ([AuthorizeData(), AuthorizeData()], (AUTHENTICATED, AUTHENTICATED)),
        ([AuthorizeData("Administrators")], (ADMINS,)),
        ([AuthorizeData("administrators")], (ADMINS,)),
        ([AuthorizeData(roles=("A", "B"))], (RolesRequirement(["A", "B"]),)),
        (
            [AuthorizeData("Administrators", roles=("Ops",))],
            (ADMINS, RolesRequirement(["Ops"])),
        ),
        # The default policy is per datum: a bare @authorize stacked with a named
        # one still requires an authenticated user (CombineAsync's useDefaultPolicy).
        (
            [AuthorizeData(), AuthorizeData(roles=("Ops",))],
            (AUTHENTICATED, RolesRequirement(["Ops"])),
        ),
        (
            [AuthorizeData("Administrators"), AuthorizeData("DomainRestricted")],
            (ADMINS, DomainRestricted()),
        ),
    ],
)
def test_resolve_policy(data: list[object], expected: tuple[Requirement, ...] | None) -> None:
    policy = resolve_policy(demo_registry(), data)
    assert (policy.requirements if policy is not None else None) == expected


def test_resolve_policy_uses_the_registrys_default_policy() -> None:
    registry = demo_registry()
    registry.default_policy = AuthorizationPolicy.build(claims={"email": None})
    policy = resolve_policy(registry, [AuthorizeData()])
    assert policy is not None
    assert policy.requirements == (ClaimRequirement("email"),)


def test_resolve_policy_unknown_name_fails_with_a_clear_message() -> None:
    with pytest.raises(UnknownPolicyError) as caught:
        resolve_policy(
            demo_registry(),
            [AuthorizeData("Administrators"), AuthorizeData("Moderators")],
            where="ChatHub.ban_user",
        )
    assert str(caught.value) == (
        "no authorization policy named 'Moderators' (used by ChatHub.ban_user); "
        "known policies: 'Administrators', 'DomainRestricted'. "
        "Register it with registry.add_policy('Moderators', AuthorizationPolicy.build(...))"
    )


# -- end to end: stacked decorators, resolved and evaluated ------------------------


class DemoHub:
    @authorize("Administrators")
    @authorize("DomainRestricted")
    async def ban_user(self, user_name: str) -> None: ...

    @authorize("DomainRestricted")
    async def view_user_history(self, user_name: str) -> None: ...

    async def send_message(self, message: str) -> None: ...


ALICE = user("alice", "Administrators", email="alice@contoso.example")
BOB = user("bob", email="bob@contoso.example")
ASDF42 = user("asdf42", "Administrators", email="asdf42@contoso.example")
MALLORY = user("mallory", "Administrators", email="mallory@fabrikam.example")


@pytest.mark.parametrize(
    ("principal", "method", "target", "expected"),
    [
        (ALICE, "ban_user", "BanUser", True),
        (BOB, "ban_user", "BanUser", False),  # not an administrator
        (ASDF42, "ban_user", "banUser", False),  # the domain rule's exception
        (MALLORY, "ban_user", "BanUser", False),  # wrong domain
        (ANONYMOUS, "ban_user", "BanUser", False),
        (ALICE, "view_user_history", "ViewUserHistory", True),
        (BOB, "view_user_history", "ViewUserHistory", True),
        (ASDF42, "view_user_history", "ViewUserHistory", True),
        (MALLORY, "view_user_history", "ViewUserHistory", False),
        (ANONYMOUS, "send_message", "SendMessage", True),  # no metadata: no check
    ],
)
def test_the_demo_matrix(principal: object, method: str, target: str, expected: bool) -> None:
    registry = demo_registry()
    policy = resolve_policy(registry, method_authorize_data(DemoHub, method), where=method)
    if policy is None:
        allowed = True
    else:
        resource = invocation(principal, target)  # type: ignore[arg-type]
        allowed = run_policy(policy, principal, resource, registry).succeeded  # type: ignore[arg-type]
    assert allowed is expected
