"""Revocations across nodes on a real redis-server: a revocation made on one node
closes the matching connections on the others and is refused there; it is kept in
Redis with its expiry, so a node that starts later (or whose link comes back)
has it in force before it serves; a process that serves nobody revokes too."""

from __future__ import annotations

import time

import trio

from triohub import HubServer, Principal
from triohub.backplane.redis import RedisBackplane
from triohub.backplane.revocations import REVOCATIONS_KEY
from triohub.protocol import Close

from .redis_server import RedisServer
from .support import Node, make_server, open_clients, open_nodes

REVOKED = Close(error="Authentication revoked.", allow_reconnect=False)


def bob(issued: float) -> Principal:
    return Principal({"sub": "bob", "iat": issued}, scheme="Test")


async def start_node(nursery: trio.Nursery, url: str) -> Node:
    server, link = make_server(url)
    await nursery.start(server.run)
    return Node(server, link)


async def test_a_revocation_closes_and_refuses_on_every_node(redis: RedisServer) -> None:
    async with open_nodes(redis.url, 2) as (a, b):
        specs = [(b, "bob-on-b", "bob"), (a, "bob-on-a", "bob"), (b, "carol-on-b", "carol")]
        async with open_clients(specs) as clients:
            before = time.time()
            assert await a.server.revoke(user="bob") == 1  # bob-on-a, here
            for name in ("bob-on-a", "bob-on-b"):
                with trio.fail_after(10):
                    await clients[name].closed.wait()
                assert clients[name].close_message == REVOKED, name
            assert not clients["carol-on-b"].closed.is_set()
            # Refused on B too, until the credentials issued before it expire.
            [revocation] = b.server.revocations.entries
            assert revocation.user_id == "bob"
            assert revocation.issued_before is not None
            assert revocation.issued_before >= before
            state = b.server.authorizer.state
            assert state.revoked(bob(before - 1), "bob", time.time()) == revocation
            assert state.revoked(bob(time.time() + 1), "bob", time.time()) is None
        # Kept in Redis, expiring with the revocation.
        assert redis.command("ZCARD", REVOCATIONS_KEY) == 1
        ttl = redis.command("TTL", REVOCATIONS_KEY)
        assert 0 < ttl <= revocation.until - time.time() + 2  # whole seconds, rounded up


async def test_a_node_that_starts_later_loads_the_revocations_before_serving(
    redis: RedisServer,
) -> None:
    async with open_nodes(redis.url, 1) as (a,), trio.open_nursery() as nursery:
        await a.server.revoke(token_id="stolen", expires_at=time.time() + 3600)
        await a.server.revoke(token_id="old", expires_at=time.time() + 0.01)  # soon gone
        await trio.sleep(0.05)
        late = await start_node(nursery, redis.url)
        # Loaded by the time run() reported started: no wait here.
        assert [r.token_id for r in late.server.revocations.entries] == ["stolen"]
        stolen = Principal({"sub": "bob", "jti": "stolen"}, scheme="Test")
        state = late.server.authorizer.state
        assert state.revoked(stolen, "bob", time.time()) is not None
        nursery.cancel_scope.cancel()


async def test_a_revocation_made_while_redis_was_away_is_shared_when_it_returns(
    redis: RedisServer,
) -> None:
    async with open_nodes(redis.url, 2) as (a, b):
        redis.kill()
        await a.backplane.wait_disconnected()
        await b.backplane.wait_disconnected()
        assert await a.server.revoke(user="bob") == 0  # in force on A at once
        assert len(a.server.revocations) == 1
        assert len(b.server.revocations) == 0
        redis.start()
        with trio.fail_after(20):
            while len(b.server.revocations) == 0:  # noqa: ASYNC110 - B learns it on its own
                await trio.sleep(0.02)
        assert b.server.revocations.entries == a.server.revocations.entries
        assert redis.command("ZCARD", REVOCATIONS_KEY) == 1


async def test_a_process_that_serves_nobody_revokes_on_every_node(redis: RedisServer) -> None:
    async with (
        open_nodes(redis.url, 1) as (a,),
        open_clients([(a, "bob-on-a", "bob")]) as clients,
        trio.open_nursery() as nursery,
    ):
        worker = HubServer(backplane=RedisBackplane(redis.url))  # no hub, no listener
        await nursery.start(worker.run)
        assert await worker.revoke(user="bob") == 0
        with trio.fail_after(10):
            await clients["bob-on-a"].closed.wait()
        assert clients["bob-on-a"].close_message == REVOKED
        assert len(a.server.revocations) == 1
        nursery.cancel_scope.cancel()
