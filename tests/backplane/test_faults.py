"""Faults are explicit: Redis killed and restarted (local delivery goes on, the
link comes back and resubscribes, held publishes arrive), and the bounded
buffer (the overflow is dropped, counted and logged once per outage).

Node B reaches Redis through a unix socket and node A through TCP, and Redis
comes back with its unix socket first: B has resubscribed before A can send
what it held, so the test does not depend on which node reconnects first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from .redis_server import RedisServer
from .support import PREFIX, Node, labels_until, make_server, open_clients

END = "end"


@pytest.fixture
def redis2(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(unix_socket=str(tmp_path / "redis.sock"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def start_node(nursery: trio.Nursery, url: str, **options: object) -> Node:
    server, link = make_server(url, **options)
    await nursery.start(server.run)
    await link.wait_connected()
    await link.sync()
    return Node(server, link)


async def outage(redis: RedisServer, a: Node, b: Node) -> None:
    """Kill Redis and wait until both nodes know."""
    redis.kill()
    await a.backplane.wait_disconnected()
    await b.backplane.wait_disconnected()


async def recover(redis: RedisServer, a: Node, b: Node) -> None:
    """Redis back: B (unix socket) resubscribed first, then A (TCP)."""
    redis.start(tcp=False)
    await b.backplane.wait_connected()
    await b.backplane.sync()
    redis.listen_tcp()
    await a.backplane.wait_connected()
    await a.backplane.flush()


async def test_redis_restarted_mid_traffic(redis2: RedisServer) -> None:
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, redis2.url)
        b = await start_node(nursery, redis2.unix_url)
        specs = [(a, "a1", "alice"), (b, "b1", "bob")]
        async with open_clients(specs) as clients:
            await clients["b1"].invoke("Join", "g")
            await a.hub.clients.all.send("Got", "before")

            await outage(redis2, a, b)
            await a.hub.clients.all.send("Got", "during")  # a1 at once, b1 after recovery
            await a.hub.clients.group("g").send("Got", "during, to the group")
            await a.hub.clients.all.send("Got", END)
            assert await labels_until(clients["a1"], END) == ["before", "during"]

            await recover(redis2, a, b)
            assert redis2.numsub(f"{PREFIX}:connection:b1", f"{PREFIX}:group:g") == {
                f"{PREFIX}:connection:b1": 1,
                f"{PREFIX}:group:g": 1,
            }
            await a.hub.clients.user("bob").send("Got", "after")
            await a.hub.clients.all.send("Got", END)
            assert await labels_until(clients["b1"], END, 2) == [
                "after",
                "before",
                "during",
                "during, to the group",
            ]
            assert (a.backplane.dropped, a.backplane.reconnects) == (0, 1)
        nursery.cancel_scope.cancel()


async def test_the_outage_buffer_is_bounded_and_its_overflow_counted(
    redis2: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, redis2.url, buffer_size=3)
        b = await start_node(nursery, redis2.unix_url)
        async with open_clients([(b, "b1", "bob")]) as clients:
            await outage(redis2, a, b)
            with caplog.at_level(logging.ERROR, logger="triohub.backplane"):
                for n in range(5):
                    await a.hub.clients.all.send("Got", f"m{n}")
                await a.hub.clients.all.send("Got", END)
                await a.settled()
            assert a.backplane.dropped == 3
            full = [r for r in caplog.records if "buffer full" in r.getMessage()]
            assert len(full) == 1  # once per outage, not once per drop
            await recover(redis2, a, b)
            assert await labels_until(clients["b1"], END) == ["m3", "m4"]
        nursery.cancel_scope.cancel()


async def test_requests_needing_an_answer_fail_at_once_while_redis_is_away(
    redis2: RedisServer,
) -> None:
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, redis2.url)
        b = await start_node(nursery, redis2.unix_url)
        async with open_clients([(b, "b1", "bob")]):
            await outage(redis2, a, b)
            with pytest.raises(Exception, match="unreachable"):
                await a.hub.clients.client("b1").invoke("Answer", 1)
            with pytest.raises(Exception, match="unreachable"):
                await a.hub.groups.add("b1", "g")
        nursery.cancel_scope.cancel()
