"""Many connections coming and going leave nothing behind: no router entries,
users or groups, no live connection count and no task."""

from __future__ import annotations

import trio
from hub_support import PATH, task_tree

from triohub import Hub, HubServer, Principal
from triohub.actors.routing import RouterStats
from triohub.protocol import Close
from triohub.testing import open_test_client

CYCLES = 1_000
BATCH = 50


class ChurnHub(Hub):
    async def join(self, group: str) -> None:
        await self.groups.add(self.context.connection_id, group)

    async def shout(self, group: str) -> None:
        await self.clients.group(group).send("Shout", self.context.connection_id)

    async def abort(self) -> None:
        self.context.abort()


async def cycle(server: HubServer, n: int, live: list[int]) -> None:
    principal = Principal({"sub": f"user{n % 7}"}, scheme="Test")
    async with open_test_client(server, PATH, connection_id=f"c{n}", principal=principal) as client:
        await client.invoke("Join", f"group{n % 5}")
        await client.invoke("Join", "everyone")
        await client.invoke("Shout", "everyone")
        live.append(server.live_connections)
        # Three ways to end: a client Close, a hub abort, the transport dropped.
        if n % 3 == 0:
            await client.close()
            await client.closed.wait()
            assert client.close_message == Close()
        elif n % 3 == 1:
            await client.send("Abort")
            await client.closed.wait()
            assert client.close_message == Close()


async def test_a_thousand_connect_disconnect_cycles_leave_nothing_behind(
    autojump_clock: trio.abc.Clock,
) -> None:
    server = HubServer()
    server.map_hub(PATH, ChurnHub)
    with trio.fail_after(60):  # virtual seconds: a hang fails instead of spinning
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            idle_tasks = task_tree(nursery)  # the server and its actors
            live: list[int] = []
            for first in range(0, CYCLES, BATCH):
                async with trio.open_nursery() as clients:
                    for n in range(first, first + BATCH):
                        clients.start_soon(cycle, server, n, live)
            assert len(live) == CYCLES
            assert max(live) > BATCH // 2  # the connections of a batch really overlapped

            assert await server.stats(PATH) == RouterStats(
                connections=0, users=0, groups=0, slow_consumers=0
            )
            assert server.live_connections == 0
            assert task_tree(nursery) == idle_tasks
            assert any(name.endswith("Router.run") for name in idle_tasks)

            stopping = trio.current_time()
            server.stop()
        assert trio.current_time() == stopping  # no grace period was needed
    assert not server.running
