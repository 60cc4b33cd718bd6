"""Two and three nodes in one Trio run on a real redis-server: every ``clients.*``
target reaches connections on other nodes exactly once and never excluded ones;
groups, client results and aborts across nodes; a publisher that serves nobody."""

from __future__ import annotations

import pytest
import trio

from triohub import HubError
from triohub.protocol import Close

from .redis_server import RedisServer
from .support import (
    PREFIX,
    ClusterHub,
    end_from_every_node,
    labels_until,
    make_server,
    open_clients,
    open_nodes,
)

END = "end"


async def test_every_target_reaches_other_nodes_once_and_never_excluded_ones(
    redis: RedisServer,
) -> None:
    async with open_nodes(redis.url, 3) as (a, b, c):
        specs = [(a, "a1", "alice"), (a, "a2", "bob"), (b, "b1", "alice"), (b, "b2", "carol")]
        specs.append((c, "c1", "dave"))
        async with open_clients(specs) as clients:
            await clients["a1"].invoke("Join", "g1")
            await clients["b1"].invoke("Join", "g1")
            await clients["a2"].invoke("Join", "g2")
            await clients["b1"].invoke("Join", "g2")
            await clients["c1"].invoke("Join", "g2")
            hub = a.hub.clients
            await hub.all.send("Got", "all")
            await hub.all_except(["a1", "b2"]).send("Got", "all_except")
            await hub.client("b1").send("Got", "client")
            await hub.clients(["a2", "b2", "c1"]).send("Got", "clients")
            await hub.user("alice").send("Got", "user")
            await hub.users(["bob", "carol"]).send("Got", "users")
            await hub.group("g1").send("Got", "group")
            await hub.groups(["g1", "g2"]).send("Got", "groups")
            await hub.group_except("g2", ["b1"]).send("Got", "group_except")
            await clients["b2"].invoke("Others", "others")
            await clients["a2"].invoke("OthersInGroup", "g2", "others_in_group")
            # From another node than the one that holds most of them, too.
            await c.hub.clients.group("g1").send("Got", "group_from_c")
            await end_from_every_node([a, b, c], END)
            received = {
                name: await labels_until(client, END, 3) for name, client in clients.items()
            }
    assert received == {
        name: sorted(labels)
        for name, labels in {
            "a1": ["all", "user", "group", "groups", "others", "group_from_c"],
            "a2": ["all", "all_except", "clients", "users", "groups", "group_except", "others"],
            "b1": [
                "all",
                "all_except",
                "client",
                "user",
                "group",
                "groups",
                "others",
                "others_in_group",
                "group_from_c",
            ],
            "b2": ["all", "clients", "users"],
            "c1": [
                "all",
                "all_except",
                "clients",
                "groups",
                "group_except",
                "others",
                "others_in_group",
            ],
        }.items()
    }


async def test_group_add_and_remove_of_a_connection_another_node_holds(
    redis: RedisServer,
) -> None:
    async with open_nodes(redis.url, 2) as (a, b), open_clients([(b, "b1", "u")]) as clients:
        await a.hub.groups.add("b1", "remote")
        await a.hub.clients.group("remote").send("Got", "in")
        await a.hub.groups.remove("b1", "remote")
        await a.hub.clients.group("remote").send("Got", "out")
        await a.hub.clients.all.send("Got", END)
        assert await labels_until(clients["b1"], END) == ["in"]
        assert (await b.server.stats(ClusterHub)).groups == 0

        # No node holds it: PUBLISH says so, and the add fails at once.
        with trio.fail_after(5), pytest.raises(HubError, match="Connection 'nobody' does not"):
            await a.hub.groups.add("nobody", "g")


async def test_client_results_across_nodes(redis: RedisServer) -> None:
    async with open_nodes(redis.url, 2) as (a, b):
        specs = [(a, "a1", "u1"), (b, "b1", "u2")]
        async with open_clients(specs) as clients:
            clients["b1"].handlers["answer"] = lambda n: n * 2 + 2
            assert await clients["a1"].invoke("Ask", "b1") == 42
            assert await a.hub.clients.client("b1").invoke("Answer", 1) == 4

            def refuse(n: int) -> int:
                raise ValueError("no answer for you")

            clients["b1"].handlers["answer"] = refuse
            with pytest.raises(HubError, match="no answer for you"):
                await a.hub.clients.client("b1").invoke("Answer", 1)
            with pytest.raises(HubError, match=r"Connection 'gone' is not connected\."):
                await a.hub.clients.client("gone").invoke("Answer", 1)


async def test_abort_of_a_user_reaches_every_node(redis: RedisServer) -> None:
    async with open_nodes(redis.url, 3) as (a, b, c):
        specs = [(b, "b1", "bob"), (c, "c1", "bob"), (c, "c2", "carol")]
        async with open_clients(specs) as clients:
            await a.hub.clients.user("bob").abort()
            for name in ("b1", "c1"):
                await clients[name].closed.wait()
                assert clients[name].close_message == Close()
            await a.hub.clients.all.send("Got", END)
            assert await labels_until(clients["c2"], END) == []


async def test_a_process_that_serves_nobody_sends_to_users_and_groups(
    redis: RedisServer,
) -> None:
    async with open_nodes(redis.url, 1) as (b,), open_clients([(b, "b1", "bob")]) as clients:
        await clients["b1"].invoke("Join", "news")
        server, link = make_server(redis.url)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            await link.wait_connected()
            context = server.hub_context(ClusterHub)
            await context.clients.user("bob").send("Got", "to bob")
            await context.clients.group("news").send("Got", "news")
            await context.clients.user("bob").send("Got", END)
            await link.flush()
            nursery.cancel_scope.cancel()
        assert await labels_until(clients["b1"], END) == ["news", "to bob"]


async def test_subscriptions_follow_what_the_node_holds(redis: RedisServer) -> None:
    async with open_nodes(redis.url, 1) as (a,):
        fixed = [f"{PREFIX}:all", f"{PREFIX}:internal:close"]
        async with open_clients([(a, "a1", "alice"), (a, "a2", "alice")]) as clients:
            await clients["a1"].invoke("Join", "g")
            await clients["a2"].invoke("Join", "g")
            channels = redis.channels(f"{PREFIX}:*")
            for name in (*fixed, "connection:a1", "connection:a2", "user:alice", "group:g"):
                assert name in channels or f"{PREFIX}:{name}" in channels
            await clients["a1"].close()
            await clients["a1"].closed.wait()
            await a.server.stats(ClusterHub)  # the unregister is handled
            await a.backplane.sync()
            channels = redis.channels(f"{PREFIX}:*")
            assert f"{PREFIX}:connection:a1" not in channels
            assert {f"{PREFIX}:user:alice", f"{PREFIX}:group:g"} <= set(channels)
        await a.server.wait_idle()
        await a.server.stats(ClusterHub)
        await a.backplane.sync()
        left = set(redis.channels(f"{PREFIX}:*"))
        assert left == {
            *fixed,
            f"{PREFIX}:internal:ack:{a.backplane.server_name}",
            f"{PREFIX}:internal:return:{a.backplane.server_name}",
        }


async def test_a_group_command_never_overtakes_the_sends_before_it(redis: RedisServer) -> None:
    # A group command is published at once (its PUBLISH count matters) while
    # sends wait in the link's queue: it must still go after them.
    async with open_nodes(redis.url, 2) as (a, b), open_clients([(b, "b1", "u")]) as clients:
        for n in range(20):
            await a.hub.groups.add("b1", "g")
            for _ in range(50):  # a backlog in the link's queue
                await a.hub.clients.client("b1").send("Got", "filler")
            await a.hub.clients.group("g").send("Got", f"m{n:02}")
            await a.hub.groups.remove("b1", "g")
        await a.hub.clients.all.send("Got", END)
        received = [x for x in await labels_until(clients["b1"], END) if x != "filler"]
        assert received == [f"m{n:02}" for n in range(20)]
