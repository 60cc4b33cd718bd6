"""Policies on groups (``map_hub(group_policies=...)``): only connections that meet a
group's policy may be added to it (refused as a denied method is), and a refreshed
principal that no longer meets it leaves the group."""

from __future__ import annotations

import pytest
import trio
from hub_support import PATH

from triohub import Hub, HubOptions, HubServer, Principal
from triohub.authorization import AuthorizationPolicy, PolicyRegistry, UnknownPolicyError
from triohub.protocol import Invocation
from triohub.testing import HubTestClient, InvocationError, open_test_client

DENIED = "Failed to invoke '{}' because user is unauthorized"


class GroupsHub(Hub):
    async def join(self, group: str) -> None:
        await self.groups.add(self.context.connection_id, group)

    async def add_other(self, connection_id: str, group: str) -> None:
        await self.groups.add(connection_id, group)

    async def leave(self, group: str) -> None:
        await self.groups.remove(self.context.connection_id, group)

    async def tell(self, group: str, text: str) -> None:
        await self.clients.group(group).send("Said", text)

    async def mark(self) -> None:
        await self.clients.caller.send("Said", "marker")


def policies() -> PolicyRegistry:
    registry = PolicyRegistry()
    registry.add_policy("Administrators", AuthorizationPolicy.build(roles=["Administrators"]))
    registry.add_policy("Operators", AuthorizationPolicy.build(roles=["Operators"]))
    return registry


def person(name: str, *roles: str) -> Principal:
    return Principal({"sub": name, "role": list(roles)}, scheme="Bearer")


async def start(nursery: trio.Nursery) -> HubServer:
    server = HubServer(policies=policies())
    server.map_hub(
        PATH,
        GroupsHub,
        group_policies={"admins": "Administrators", "ops:*": "Operators"},
        options=HubOptions(allow_authentication_refresh=True),
    )
    await nursery.start(server.run)
    return server


async def heard(client: HubTestClient, group: str) -> bool:
    """Whether ``client`` receives what is said to ``group`` (a marker sent to the
    client alone comes right after)."""
    await client.invoke("Tell", group, "to " + group)
    await client.invoke("Mark")
    first = await client.next_message()
    assert isinstance(first, Invocation)
    if first.arguments == ("marker",):
        return False
    assert first.arguments == ("to " + group,)
    assert (await client.next_message()).arguments == ("marker",)  # type: ignore[attr-defined]
    return True


async def test_only_members_who_meet_the_policy_join(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    async with (
        open_test_client(server, PATH, principal=person("alice", "Administrators")) as alice,
        open_test_client(server, PATH, principal=person("bob"), connection_id="bob-1") as bob,
        open_test_client(server, PATH, principal=person("olga", "Operators")) as olga,
    ):
        for client in (alice, bob, olga):
            await client.invoke("Join", "lobby")  # no policy: anyone
        await alice.invoke("Join", "admins")
        assert await heard(alice, "admins")
        with pytest.raises(InvocationError, match="^" + DENIED.format("Join") + "$"):
            await bob.invoke("Join", "admins")
        assert not await heard(bob, "admins")
        # The policy is the added connection's, not the caller's: alice cannot add bob.
        with pytest.raises(InvocationError, match="^" + DENIED.format("AddOther") + "$"):
            await alice.invoke("AddOther", "bob-1", "admins")
        assert not await heard(bob, "admins")
        # A prefix pattern guards every group it starts.
        await olga.invoke("Join", "ops:east")
        assert await heard(olga, "ops:east")
        with pytest.raises(InvocationError, match="because user is unauthorized"):
            await alice.invoke("Join", "ops:west")
        # A connection this node does not hold cannot be checked: refused from a
        # guarded group (fail closed), while elsewhere an unknown id is a no-op.
        with pytest.raises(InvocationError, match="^" + DENIED.format("AddOther") + "$"):
            await alice.invoke("AddOther", "far-away", "admins")
        assert await alice.invoke("AddOther", "far-away", "lobby") is None
        # A denial does not end the connection.
        assert await alice.invoke("Join", "lobby") is None


async def test_a_refresh_without_the_role_leaves_the_guarded_groups(
    nursery: trio.Nursery,
) -> None:
    server = await start(nursery)
    alice = person("alice", "Administrators", "Operators")
    async with open_test_client(server, PATH, principal=alice, connection_id="a-1") as client:
        for group in ("lobby", "admins", "ops:east", "news"):
            await client.invoke("Join", group)
        await server.refresh_authentication("a-1", person("alice", "Operators"))
        assert not await heard(client, "admins")
        assert await heard(client, "ops:east")  # still an Operator
        assert await heard(client, "news")  # no policy
        with pytest.raises(InvocationError, match="because user is unauthorized"):
            await client.invoke("Join", "admins")
        # Regaining the role lets it join again.
        await server.refresh_authentication("a-1", alice)
        await client.invoke("Join", "admins")
        assert await heard(client, "admins")


async def test_a_group_policy_must_be_registered() -> None:
    server = HubServer(policies=policies())
    with pytest.raises(UnknownPolicyError, match="Auditors"):
        server.map_hub(PATH, GroupsHub, group_policies={"audit": "Auditors"})
