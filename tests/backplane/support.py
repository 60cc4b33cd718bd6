"""Nodes in one Trio run, each a HubServer with its own RedisBackplane on a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from triohub import Hub, HubServer, Principal
from triohub.backplane.redis import RedisBackplane
from triohub.protocol import Invocation
from triohub.testing import HubTestClient, open_test_client

PATH = "/hubs/cluster"
PREFIX = "tests.ClusterHub"


class ClusterHub(Hub):
    async def join(self, group: str) -> None:
        await self.groups.add(self.context.connection_id, group)

    async def others(self, label: str) -> None:
        await self.clients.others.send("Got", label)

    async def others_in_group(self, group: str, label: str) -> None:
        await self.clients.others_in_group(group).send("Got", label)

    async def ask(self, connection_id: str) -> Any:
        return await self.clients.client(connection_id).invoke("Answer", 20)


class Node:
    def __init__(self, server: HubServer, backplane: RedisBackplane) -> None:
        self.server = server
        self.backplane = backplane

    @property
    def hub(self) -> Any:
        return self.server.hub_context(PATH)

    async def settled(self) -> None:
        """Every send queued so far is fanned out and handed to the backplane."""
        await self.server.hubs[PATH].router.barrier()


def make_server(url: str, **backplane: Any) -> tuple[HubServer, RedisBackplane]:
    link = RedisBackplane(url, **backplane)
    server = HubServer(backplane=link)
    server.map_hub(PATH, ClusterHub, channel_prefix=PREFIX)
    return server, link


@asynccontextmanager
async def open_nodes(url: str, count: int, **backplane: Any) -> AsyncIterator[list[Node]]:
    async with trio.open_nursery() as nursery:
        nodes = []
        for _ in range(count):
            server, link = make_server(url, **backplane)
            await nursery.start(server.run)
            await link.wait_connected()
            await link.sync()
            nodes.append(Node(server, link))
        yield nodes
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_clients(
    specs: list[tuple[Node, str, str]],
) -> AsyncIterator[dict[str, HubTestClient]]:
    """``(node, connection id, user)`` each: connected, with a ``Got`` log."""
    async with AsyncExitStack() as stack:
        clients = {}
        for node, connection_id, user in specs:
            clients[connection_id] = await stack.enter_async_context(
                open_test_client(
                    node.server,
                    PATH,
                    connection_id=connection_id,
                    principal=Principal({"sub": user}, scheme="Test"),
                )
            )
        yield clients


async def labels_until(client: HubTestClient, marker: str, times: int = 1) -> list[str]:
    """The ``Got`` labels received until ``marker`` came ``times`` times (markers
    excluded), sorted: sends from different nodes have no order between them."""
    seen = []
    while times:
        message = await client.next_message()
        assert isinstance(message, Invocation), message
        label = message.arguments[0]
        if label == marker:
            times -= 1
        else:
            seen.append(label)
    return sorted(seen)


async def end_from_every_node(nodes: list[Node], marker: str) -> None:
    """``marker`` to everyone from each node, after what each node sent before:
    a node's publishes reach every other node in order."""
    for node in nodes:
        await node.hub.clients.all.send("Got", marker)
