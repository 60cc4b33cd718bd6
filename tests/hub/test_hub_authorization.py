"""Authorization in the engine: ``@authorize`` on hub methods and hub classes,
policies whose handlers see the invocation, failing closed (raising and slow
handlers), and the audit of every decision; through a real ``HubServer`` and
the in-memory test client, with the exact texts the client receives."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hub_support import PATH, StartServer, drain

from triohub import (
    ANONYMOUS,
    AuditRecord,
    AuthorizationContext,
    AuthorizationPolicy,
    Hub,
    HubInvocationContext,
    HubOptions,
    HubRequestContext,
    HubServer,
    PolicyRegistry,
    Principal,
    RequestInfo,
    Requirement,
    UnknownPolicyError,
    allow_anonymous,
    authorize,
)
from triohub.testing import HubTestClient, InvocationError, open_test_client

AUDIT = "triohub.audit"
AUTHORIZATION = "triohub.authorization"
SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.SIGNATURE"
"""A credential-looking claim value that must never reach a log."""


def user(name: str, *roles: str, **claims: Any) -> Principal:
    """An authenticated principal with ``sub`` = ``name`` (the default user id)."""
    everything: dict[str, Any] = {"sub": name, **claims}
    if roles:
        everything["role"] = list(roles)
    return Principal(everything, scheme="Bearer")


def unauthorized(target: str) -> str:
    return f"Failed to invoke '{target}' because user is unauthorized"


async def error_of(client: HubTestClient, target: str, *args: Any) -> str:
    with pytest.raises(InvocationError) as error:
        await client.invoke(target, *args)
    return str(error.value)


@attrs.frozen
class Inspected(Requirement):
    """Decided by a handler registered with ``registry.add_handler``."""


@attrs.frozen
class FirstArgumentOk(Requirement):
    """Its own handler: holds when the first decoded argument is ``"ok"``."""

    def handle(self, context: AuthorizationContext) -> None:
        resource = context.resource
        if isinstance(resource, HubInvocationContext) and resource.arguments[:1] == ("ok",):
            context.succeed(self)


@attrs.frozen
class Slow(Requirement):
    """Decided by an async handler that may take its time."""


@attrs.frozen
class Broken(Requirement):
    """Decided by a handler that raises."""


class Ran:
    """What hub methods ran, and what handlers saw."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.resources: list[HubInvocationContext] = []


class GuardedHub(Hub):
    ran: Ran

    async def on_connected(self) -> None:
        self.context.items["tenant"] = "t-1"

    async def open(self) -> str:
        self.ran.methods.append("open")
        return "open"

    @authorize
    async def secret(self) -> str:
        self.ran.methods.append("secret")
        return "secret"

    @authorize(roles=["Admin", "Ops"])
    async def restart(self) -> str:
        return "restarted"

    @authorize("Adults")
    async def buy_wine(self) -> str:
        return "wine"

    @authorize("Adults")
    @authorize(roles=["Admin"])
    async def sell_wine(self) -> str:
        return "sold"

    @authorize("Inspect")
    async def ban_user(self, name: str, days: float) -> str:
        self.ran.methods.append(f"ban {name}")
        return f"banned {name} for {days!r} days"

    @authorize("FirstArgumentOk")
    async def publish(self, verdict: str) -> str:
        self.ran.methods.append(f"publish {verdict}")
        return "published"

    @allow_anonymous
    @authorize
    async def anonymous_above(self) -> str:
        return "above"

    @authorize
    @allow_anonymous
    async def anonymous_below(self) -> str:
        return "below"

    @allow_anonymous
    async def anonymous_only(self) -> str:
        return "anyone"

    @authorize
    async def feed(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @authorize("Slow")
    async def slow_call(self) -> str:
        return f"done at {trio.current_time():g}"

    @authorize("Broken")
    async def check(self) -> str:
        return "checked"


@pytest.fixture
def ran() -> Ran:
    return Ran()


@pytest.fixture
def registry(ran: Ran) -> PolicyRegistry:
    registry = PolicyRegistry()
    registry.add_policy("Adults", AuthorizationPolicy.build(claims={"age_group": "adult"}))
    registry.add_policy("Inspect", AuthorizationPolicy([Inspected()]))
    registry.add_policy("FirstArgumentOk", AuthorizationPolicy([FirstArgumentOk()]))
    registry.add_policy("Slow", AuthorizationPolicy([Slow()]))
    registry.add_policy("Broken", AuthorizationPolicy([Broken()]))

    def inspect(context: AuthorizationContext) -> None:
        resource = context.resource
        assert isinstance(resource, HubInvocationContext)
        ran.resources.append(resource)
        if resource.arguments[0] == "ok":
            for requirement in context.pending(Inspected):
                context.succeed(requirement)

    async def slow(context: AuthorizationContext) -> None:
        if context.principal.name_identifier == "slow":
            await trio.sleep(10)
        for requirement in context.pending(Slow):
            context.succeed(requirement)

    def broken(context: AuthorizationContext) -> None:
        raise RuntimeError("the role service is down")

    registry.add_handler(Inspected, inspect)
    registry.add_handler(Slow, slow)
    registry.add_handler(Broken, broken)
    return registry


@pytest.fixture
def audits() -> list[AuditRecord]:
    return []


@pytest.fixture
def start(
    start_server: StartServer, registry: PolicyRegistry, ran: Ran, audits: list[AuditRecord]
) -> StartServer:
    async def start(**kwargs: Any) -> HubServer:
        def make() -> GuardedHub:
            hub = GuardedHub()
            hub.ran = ran
            return hub

        return await start_server(
            GuardedHub, factory=make, policies=registry, audit_hook=audits.append, **kwargs
        )

    return start


# -- method-level policies ----------------------------------------------------------


async def test_bare_authorize_requires_an_authenticated_user(start: StartServer, ran: Ran) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        assert await error_of(client, "Secret") == unauthorized("Secret")
        assert await error_of(client, "secret") == unauthorized("secret")
        # Denied, not closed: the connection goes on serving.
        assert await client.invoke("Open") == "open"
        assert not client.closed.is_set()
    async with open_test_client(server, PATH, principal=user("alice")) as client:
        assert await client.invoke("Secret") == "secret"
    assert ran.methods == ["open", "secret"]


async def test_roles_require_any_one_of_them(start: StartServer) -> None:
    server = await start()
    for principal, allowed in [
        (user("ops", "Ops"), True),
        (user("admin", "Viewer", "Admin"), True),
        (user("lower", "admin"), False),  # role names are case-sensitive
        (user("viewer", "Viewer"), False),
        (user("nobody"), False),
        (ANONYMOUS, False),
    ]:
        async with open_test_client(server, PATH, principal=principal) as client:
            if allowed:
                assert await client.invoke("Restart") == "restarted"
            else:
                assert await error_of(client, "Restart") == unauthorized("Restart")


async def test_a_named_policy_applies(start: StartServer) -> None:
    server = await start()
    async with open_test_client(server, PATH, principal=user("ann", age_group="adult")) as client:
        assert await client.invoke("buyWine") == "wine"
    async with open_test_client(server, PATH, principal=user("kid", age_group="minor")) as client:
        assert await error_of(client, "buyWine") == unauthorized("buyWine")


async def test_stacked_decorators_all_apply(start: StartServer) -> None:
    server = await start()
    for principal, allowed in [
        (user("both", "Admin", age_group="adult"), True),
        (user("adult", age_group="adult"), False),
        (user("admin", "Admin", age_group="minor"), False),
        (ANONYMOUS, False),
    ]:
        async with open_test_client(server, PATH, principal=principal) as client:
            if allowed:
                assert await client.invoke("SellWine") == "sold"
            else:
                assert await error_of(client, "SellWine") == unauthorized("SellWine")


async def test_a_registered_handler_sees_the_invocation(start: StartServer, ran: Ran) -> None:
    server = await start()
    alice = user("alice", "Moderator")
    async with open_test_client(server, PATH, principal=alice, connection_id="conn-a") as client:
        # Arguments are decoded (and converted: 3 -> 3.0) before the handler sees them.
        assert await client.invoke("banUser", "ok", 3) == "banned ok for 3.0 days"
        assert await error_of(client, "BanUser", "mallory", 1) == unauthorized("BanUser")
        assert await client.invoke("ban_user", "ok", 2.5) == "banned ok for 2.5 days"
    first, second, third = ran.resources
    assert first.caller.principal is alice
    assert first.principal is alice
    assert first.user_id == first.caller.user_id == "alice"
    assert first.connection_id == "conn-a"
    assert first.caller.items == {"tenant": "t-1"}
    assert first.hub is GuardedHub
    assert (first.target, first.method_name, first.wire_name) == ("banUser", "ban_user", "BanUser")
    assert first.arguments == ("ok", 3.0)
    assert type(first.arguments[1]) is float
    assert (second.target, second.arguments) == ("BanUser", ("mallory", 1.0))
    assert (third.target, third.wire_name) == ("ban_user", "BanUser")
    # The denied call never ran.
    assert ran.methods == ["ban ok", "ban ok"]


async def test_a_self_handling_requirement_sees_the_arguments(start: StartServer, ran: Ran) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        assert await client.invoke("Publish", "ok") == "published"
        assert await error_of(client, "publish", "not ok") == unauthorized("publish")
        assert await client.invoke("Open") == "open"
    assert ran.methods == ["publish ok", "open"]


async def test_a_denied_send_gets_nothing_back_and_does_not_run(
    start: StartServer, ran: Ran
) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        await client.send("Secret")
        await client.send("BanUser", "mallory", 1)
        await client.send("Publish", "ok")  # allowed: it runs, and answers nothing
        assert await client.invoke("Open") == "open"
        await trio.testing.wait_all_tasks_blocked()
        assert drain(client) == []
        assert not client.closed.is_set()
    assert ran.methods == ["publish ok", "open"]


async def test_allow_anonymous_does_not_cancel_authorize_on_a_method(
    start: StartServer, audits: list[AuditRecord]
) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        assert await error_of(client, "AnonymousAbove") == unauthorized("AnonymousAbove")
        assert await error_of(client, "AnonymousBelow") == unauthorized("AnonymousBelow")
        assert await client.invoke("AnonymousOnly") == "anyone"
    async with open_test_client(server, PATH, principal=user("bob")) as client:
        assert await client.invoke("AnonymousAbove") == "above"
        assert await client.invoke("AnonymousBelow") == "below"
    # @allow_anonymous alone leaves the method open: no decision, no audit.
    assert [(a.method, a.outcome) for a in audits] == [
        ("AnonymousAbove", "denied"),
        ("AnonymousBelow", "denied"),
        ("AnonymousAbove", "allowed"),
        ("AnonymousBelow", "allowed"),
    ]


async def test_streams_are_authorized_before_the_invocation_mode_is_checked(
    start: StartServer,
) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        with pytest.raises(InvocationError) as denied:
            async for _ in client.stream("feed", 2):
                pass
        assert str(denied.value) == unauthorized("feed")
        # The wrong kind of call is refused for being unauthorized first (as in ASP.NET).
        with pytest.raises(InvocationError) as wrong_kind:
            async for _ in client.stream("Secret"):
                pass
        assert str(wrong_kind.value) == unauthorized("Secret")
        assert await error_of(client, "Feed", 1) == unauthorized("Feed")
    async with open_test_client(server, PATH, principal=user("bob")) as client:
        assert [item async for item in client.stream("Feed", 3)] == [0, 1, 2]
        assert await error_of(client, "Feed", 1) == (
            "The client attempted to invoke the streaming 'Feed' method "
            "with a non-streaming invocation."
        )


# -- hub-level policies (checked on HTTP requests) -------------------------------------


@authorize
class LockedHub(Hub):
    async def hello(self) -> str:
        return "hello"


@authorize(roles=["Admin"])
class AdminHub(Hub):
    async def hello(self) -> str:
        return "hello"


@allow_anonymous
class OpenedHub(LockedHub):
    """Inherits ``@authorize`` and exempts itself with ``@allow_anonymous``."""


def negotiate(path: str = PATH) -> RequestInfo:
    return RequestInfo(
        "POST",
        f"{path}/negotiate",
        query={"negotiateVersion": ("1",)},
        headers={"authorization": (f"Bearer {SECRET}",)},
        hub_path=path,
    )


async def test_hub_level_authorize_is_checked_on_requests_not_invocations(
    start_server: StartServer, audits: list[AuditRecord]
) -> None:
    server = await start_server(LockedHub, audit_hook=audits.append)
    registration = server.hubs[PATH]
    async with open_test_client(server, PATH) as client:
        assert await client.invoke("Hello") == "hello"
    assert audits == []  # invocations of an unguarded method are not decisions
    assert await server.authorize_hub(registration, ANONYMOUS, negotiate()) is False
    assert await server.authorize_hub(registration, user("alice"), negotiate()) is True
    assert audits == [
        AuditRecord(
            hub="LockedHub",
            method=None,
            policy="default",
            outcome="denied",
            failed_requirement="AuthenticatedUserRequirement",
            detail="denied (unmet: an authenticated user)",
            anonymous=True,
        ),
        AuditRecord(
            hub="LockedHub", method=None, policy="default", outcome="allowed", user_id="alice"
        ),
    ]
    assert server.authorization_counters[("LockedHub", None, "denied")] == 1
    assert server.authorization_counters[("LockedHub", None, "allowed")] == 1


async def test_hub_level_roles_and_allow_anonymous(start_server: StartServer) -> None:
    admin = await start_server(AdminHub)
    registration = admin.hubs[PATH]
    assert await admin.authorize_hub(registration, user("root", "Admin"), negotiate()) is True
    assert await admin.authorize_hub(registration, user("bob", "Viewer"), negotiate()) is False
    assert await admin.authorize_hub(registration, ANONYMOUS, negotiate()) is False
    opened = await start_server(OpenedHub)
    assert await opened.authorize_hub(opened.hubs[PATH], ANONYMOUS, negotiate()) is True


async def test_a_hub_level_handler_sees_the_request(start_server: StartServer) -> None:
    seen: list[HubRequestContext] = []

    def internal(context: AuthorizationContext) -> None:
        resource = context.resource
        assert isinstance(resource, HubRequestContext)
        seen.append(resource)
        if resource.request.header("x-internal") == "yes":
            for requirement in context.pending(Inspected):
                context.succeed(requirement)

    registry = PolicyRegistry()
    registry.add_policy("Internal", AuthorizationPolicy([Inspected()]))
    registry.add_handler(Inspected, internal)

    @authorize("Internal")
    class InternalHub(Hub):
        async def hello(self) -> str:
            return "hello"

    server = await start_server(InternalHub, policies=registry, path="/hubs/internal")
    registration = server.hubs["/hubs/internal"]
    inside = RequestInfo("GET", "/hubs/internal", headers={"x-internal": ("yes",)})
    outside = RequestInfo("GET", "/hubs/internal")
    assert await server.authorize_hub(registration, ANONYMOUS, inside) is True
    assert await server.authorize_hub(registration, ANONYMOUS, outside) is False
    assert [(r.hub, r.path, r.request) for r in seen] == [
        (InternalHub, "/hubs/internal", inside),
        (InternalHub, "/hubs/internal", outside),
    ]


def test_an_unknown_policy_fails_at_map_hub_naming_the_method() -> None:
    class ReportsHub(Hub):
        @authorize("Auditors")
        async def export_all(self) -> str:
            return ""

    registry = PolicyRegistry()
    registry.add_policy("Admins", AuthorizationPolicy.build(roles=["Admin"]))
    server = HubServer(policies=registry)
    with pytest.raises(UnknownPolicyError) as error:
        server.map_hub("/reports", ReportsHub)
    assert error.value.name == "Auditors"
    assert str(error.value) == (
        "no authorization policy named 'Auditors' (used by ReportsHub.export_all); "
        "known policies: 'Admins'. Register it with "
        "registry.add_policy('Auditors', AuthorizationPolicy.build(...))"
    )
    assert "/reports" not in server.hubs


def test_an_unknown_hub_level_policy_fails_at_map_hub_naming_the_hub() -> None:
    @authorize("Auditors")
    class ReportsHub(Hub):
        async def export_all(self) -> str:
            return ""

    server = HubServer()
    with pytest.raises(UnknownPolicyError, match=r"'Auditors' \(used by ReportsHub\);"):
        server.map_hub("/reports", ReportsHub)
    assert "/reports" not in server.hubs


# -- failing closed, concurrently ------------------------------------------------------


async def test_a_slow_policy_delays_nobody_else(
    autojump_clock: trio.testing.MockClock, start: StartServer, audits: list[AuditRecord]
) -> None:
    server = await start(authorization_timeout=60)
    started = trio.current_time()
    finished: dict[str, float] = {}
    async with (
        open_test_client(server, PATH, principal=user("slow")) as slow,
        open_test_client(server, PATH, principal=user("fast")) as fast,
    ):

        async def call(name: str, client: HubTestClient) -> None:
            assert await client.invoke("SlowCall") == f"done at {10 if name == 'slow' else 0}"
            finished[name] = trio.current_time() - started

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "slow", slow)
            await trio.testing.wait_all_tasks_blocked()  # slow's handler is sleeping
            nursery.start_soon(call, "fast", fast)
        # Slow's own connection is fine afterwards too.
        assert await slow.invoke("Open") == "open"
    assert finished == {"fast": 0, "slow": 10}
    assert [(a.user_id, a.outcome) for a in audits] == [("fast", "allowed"), ("slow", "allowed")]


async def test_a_slow_policy_does_not_hold_back_other_calls_of_its_connection(
    autojump_clock: trio.testing.MockClock, start: StartServer
) -> None:
    """The policy runs inside the invocation's own task, under the parallelism
    limit (as in ASP.NET), not in the connection's reader: while slow's call is
    being authorized, another call of the same connection is read and answered."""
    server = await start(authorization_timeout=60, options=HubOptions(max_parallel_invocations=2))
    async with (
        open_test_client(server, PATH, principal=user("slow")) as client,
        trio.open_nursery() as nursery,
    ):

        async def slow_call() -> None:
            assert await client.invoke("SlowCall") == "done at 10"

        nursery.start_soon(slow_call)
        await trio.testing.wait_all_tasks_blocked()  # slow's handler is sleeping
        assert await client.invoke("Open") == "open"
        assert trio.current_time() == 0


async def test_a_raising_handler_denies_and_is_logged_without_credentials(
    start: StartServer, audits: list[AuditRecord], caplog: pytest.LogCaptureFixture
) -> None:
    server = await start()
    principal = user("alice", "Admin", access_token=SECRET)
    caplog.set_level(logging.DEBUG)
    async with open_test_client(server, PATH, principal=principal, connection_id="c-9") as client:
        assert await error_of(client, "check") == unauthorized("check")
        assert not client.closed.is_set()
        assert await client.invoke("Open") == "open"
    [logged] = [r for r in caplog.records if r.name == AUTHORIZATION]
    assert logged.levelno == logging.ERROR
    assert "GuardedHub.Check policy=Broken" in logged.getMessage()
    assert "RuntimeError" in logged.getMessage()
    assert SECRET not in caplog.text
    assert all(SECRET not in repr(vars(record)) for record in caplog.records)
    assert audits == [
        AuditRecord(
            hub="GuardedHub",
            method="Check",
            policy="Broken",
            outcome="denied",
            user_id="alice",
            connection_id="c-9",
            failed_requirement="RuntimeError",
            detail="evaluation failed closed (RuntimeError)",
        )
    ]


async def test_a_handler_over_the_timeout_denies_at_the_timeout(
    autojump_clock: trio.testing.MockClock,
    start: StartServer,
    audits: list[AuditRecord],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start(authorization_timeout=2)
    caplog.set_level(logging.WARNING, logger=AUTHORIZATION)
    async with open_test_client(server, PATH, principal=user("slow")) as client:
        started = trio.current_time()
        assert await error_of(client, "SlowCall") == unauthorized("SlowCall")
        assert trio.current_time() - started == pytest.approx(2)
        assert not client.closed.is_set()
        assert await client.invoke("Open") == "open"
        assert trio.current_time() - started == pytest.approx(2)
    async with open_test_client(server, PATH, principal=user("fast")) as client:
        assert await client.invoke("SlowCall") == f"done at {trio.current_time():g}"
    [logged] = [r for r in caplog.records if r.name == AUTHORIZATION]
    assert logged.getMessage() == (
        "authorization of GuardedHub.SlowCall policy=Slow took longer than 2 s; denied"
    )
    assert [(a.user_id, a.outcome, a.failed_requirement) for a in audits] == [
        ("slow", "denied", "timeout"),
        ("fast", "allowed", None),
    ]


# -- audit ------------------------------------------------------------------------------


async def test_every_decision_is_audited_once(
    start: StartServer, audits: list[AuditRecord], caplog: pytest.LogCaptureFixture
) -> None:
    server = await start()
    caplog.set_level(logging.DEBUG, logger=AUDIT)
    adult_admin = user("ann", "Admin", age_group="adult", access_token=SECRET)
    async with open_test_client(server, PATH, principal=adult_admin, connection_id="c-1") as a:
        assert await a.invoke("sellWine") == "sold"
        assert await a.invoke("Open") == "open"  # no policy: no decision
        assert await a.invoke("AnonymousOnly") == "anyone"
    async with open_test_client(server, PATH, principal=user("kid"), connection_id="c-2") as b:
        assert await error_of(b, "SellWine") == unauthorized("SellWine")
        assert await error_of(b, "Restart") == unauthorized("Restart")
    async with open_test_client(server, PATH, connection_id="c-3") as c:
        assert await error_of(c, "secret") == unauthorized("secret")
        await c.send("Publish", "no")
        assert await c.invoke("Open") == "open"

    expected = [
        AuditRecord(
            hub="GuardedHub",
            method="SellWine",
            policy="Adults+roles=Admin",
            outcome="allowed",
            user_id="ann",
            connection_id="c-1",
        ),
        AuditRecord(
            hub="GuardedHub",
            method="SellWine",
            policy="Adults+roles=Admin",
            outcome="denied",
            user_id="kid",
            connection_id="c-2",
            failed_requirement="ClaimRequirement",
            detail=(
                "denied (unmet: claim 'age_group' with one of: 'adult'; "
                "unmet: any of the roles: Admin)"
            ),
        ),
        AuditRecord(
            hub="GuardedHub",
            method="Restart",
            policy="roles=Admin|Ops",
            outcome="denied",
            user_id="kid",
            connection_id="c-2",
            failed_requirement="RolesRequirement",
            detail="denied (unmet: any of the roles: Admin, Ops)",
        ),
        AuditRecord(
            hub="GuardedHub",
            method="Secret",  # the wire name, whatever the client called
            policy="default",
            outcome="denied",
            user_id=None,
            connection_id="c-3",
            failed_requirement="AuthenticatedUserRequirement",
            detail="denied (unmet: an authenticated user)",
            anonymous=True,
        ),
        AuditRecord(
            hub="GuardedHub",
            method="Publish",
            policy="FirstArgumentOk",
            outcome="denied",
            user_id=None,
            connection_id="c-3",
            failed_requirement="FirstArgumentOk",
            detail="denied (unmet: FirstArgumentOk)",
            anonymous=True,
        ),
    ]
    assert audits == expected
    logged = [r for r in caplog.records if r.name == AUDIT]
    assert [r.audit for r in logged] == [attrs.asdict(record) for record in expected]  # type: ignore[attr-defined]
    # Anonymous callers' denials (connection c-3) are expected traffic: INFO.
    assert [r.levelno for r in logged] == [logging.DEBUG] + [logging.WARNING] * 2 + [
        logging.INFO
    ] * 2
    assert logged[1].getMessage() == (
        "authorization denied: hub=GuardedHub method=SellWine policy=Adults+roles=Admin "
        "user=kid connection=c-2 failed=ClaimRequirement"
    )
    assert SECRET not in caplog.text
    assert dict(server.authorization_counters) == {
        ("GuardedHub", "SellWine", "allowed"): 1,
        ("GuardedHub", "SellWine", "denied"): 1,
        ("GuardedHub", "Restart", "denied"): 1,
        ("GuardedHub", "Secret", "denied"): 1,
        ("GuardedHub", "Publish", "denied"): 1,
    }


async def test_counters_count_every_decision(start: StartServer) -> None:
    server = await start()
    async with open_test_client(server, PATH, principal=user("ann")) as client:
        for _ in range(3):
            assert await client.invoke("Secret") == "secret"
        for _ in range(2):
            assert await error_of(client, "Restart") == unauthorized("Restart")
        for _ in range(5):
            assert await client.invoke("Open") == "open"
    assert dict(server.authorization_counters) == {
        ("GuardedHub", "Secret", "allowed"): 3,
        ("GuardedHub", "Restart", "denied"): 2,
    }


async def test_a_raising_audit_hook_changes_no_decision(
    start_server: StartServer, registry: PolicyRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(record: AuditRecord) -> None:
        raise ValueError("the audit sink is full")

    server = await start_server(GuardedHub, policies=registry, audit_hook=hook)
    caplog.set_level(logging.ERROR, logger=AUDIT)
    async with open_test_client(server, PATH, principal=user("ann")) as client:
        assert await client.invoke("AnonymousBelow") == "below"
        assert await error_of(client, "Restart") == unauthorized("Restart")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "the audit hook raised",
        "the audit hook raised",
    ]
    assert server.authorization_counters[("GuardedHub", "AnonymousBelow", "allowed")] == 1
