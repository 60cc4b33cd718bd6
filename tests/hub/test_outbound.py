"""Outbound authorization: ``clients.<audience>.send(..., policy="X")`` reaches only the
recipients whose *current* principal meets the policy, decided once per distinct
principal per send."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hub_support import PATH

from triohub import Hub, HubOptions, HubServer, Principal
from triohub.authorization import (
    AuthorizationContext,
    AuthorizationPolicy,
    PolicyRegistry,
    UnknownPolicyError,
)
from triohub.protocol import Invocation
from triohub.testing import HubTestClient, InvocationError, open_test_client


class StaffHub(Hub):
    async def join(self, group: str) -> None:
        await self.groups.add(self.context.connection_id, group)

    async def announce(self, group: str, text: str, policy: str) -> None:
        await self.clients.group(group).send("Said", text, policy=policy)

    async def announce_all(self, text: str) -> None:
        await self.clients.all.send("Said", text, policy="Administrators")

    async def mark(self) -> None:
        await self.clients.caller.send("Said", "marker")


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def is_admin(self, context: AuthorizationContext) -> bool:
        self.calls += 1
        return context.user.is_in_role("Administrators")


async def start(nursery: trio.Nursery, counter: Counter) -> HubServer:
    registry = PolicyRegistry()
    registry.add_policy("Administrators", AuthorizationPolicy.build(roles=["Administrators"]))
    registry.add_policy("Counted", AuthorizationPolicy.build(assertions=[counter.is_admin]))

    async def slow(context: AuthorizationContext) -> bool:
        await trio.lowlevel.checkpoint()
        return True

    registry.add_policy("Slow", AuthorizationPolicy.build(assertions=[slow]))
    server = HubServer(policies=registry)
    server.map_hub(PATH, StaffHub, options=HubOptions(allow_authentication_refresh=True))
    await nursery.start(server.run)
    return server


def person(name: str, *roles: str) -> Principal:
    return Principal({"sub": name, "role": list(roles)}, scheme="Bearer")


async def received(client: HubTestClient) -> list[Any]:
    """What ``client`` was sent up to a marker sent to it alone."""
    await client.invoke("Mark")
    seen = []
    while True:
        message = await client.next_message()
        assert isinstance(message, Invocation)
        if message.arguments == ("marker",):
            return seen
        seen.append(message.arguments[0])


async def test_only_recipients_who_meet_the_policy_receive(nursery: trio.Nursery) -> None:
    server = await start(nursery, Counter())
    async with (
        open_test_client(server, PATH, principal=person("alice", "Administrators")) as alice,
        open_test_client(server, PATH, principal=person("bob")) as bob,
        open_test_client(
            server, PATH, principal=person("carol", "Administrators"), connection_id="c-1"
        ) as carol,
    ):
        for client in (alice, bob, carol):
            await client.invoke("Join", "staff")
        await alice.invoke("Announce", "staff", "for admins", "Administrators")
        await alice.invoke("AnnounceAll", "everyone who is an admin")
        assert await received(alice) == ["for admins", "everyone who is an admin"]
        assert await received(carol) == ["for admins", "everyone who is an admin"]
        assert await received(bob) == []
        # Carol's refreshed credential no longer has the role: she stops receiving.
        await server.refresh_authentication("c-1", person("carol"))
        await alice.invoke("Announce", "staff", "after the refresh", "Administrators")
        assert await received(carol) == []
        assert await received(alice) == ["after the refresh"]


async def test_each_distinct_principal_is_decided_once_per_send(nursery: trio.Nursery) -> None:
    counter = Counter()
    server = await start(nursery, counter)
    alice = person("alice", "Administrators")
    async with (
        open_test_client(server, PATH, principal=alice) as first,
        open_test_client(server, PATH, principal=person("alice", "Administrators")) as second,
        open_test_client(server, PATH, principal=person("bob")) as bob,
    ):
        for client in (first, second, bob):
            await client.invoke("Join", "staff")
        await first.invoke("Announce", "staff", "hello", "Counted")
        assert counter.calls == 2  # alice's two equal principals, and bob's
        assert await received(second) == ["hello"]
        assert await received(bob) == []
        await first.invoke("Announce", "staff", "again", "Counted")
        assert counter.calls == 4  # a new send decides again


@pytest.mark.parametrize(
    ("policy", "text"),
    [
        ("Nobody", "An unexpected error occurred invoking 'Announce' on the server."),
        ("Slow", "An unexpected error occurred invoking 'Announce' on the server."),
    ],
)
async def test_a_send_policy_must_exist_and_decide_at_once(
    nursery: trio.Nursery, policy: str, text: str
) -> None:
    server = await start(nursery, Counter())
    async with open_test_client(server, PATH, principal=person("alice", "Administrators")) as a:
        await a.invoke("Join", "staff")
        with pytest.raises(InvocationError, match="^" + text):
            await a.invoke("Announce", "staff", "x", policy)
        assert await received(a) == []
    context = server.hub_context(StaffHub)
    with pytest.raises(UnknownPolicyError, match="Nobody"):
        await context.clients.all.send("Said", "x", policy="Nobody")
    with pytest.raises(ValueError, match="must decide at once"):
        await context.clients.all.send("Said", "x", policy="Slow")
