"""State an application shares through the backplane's Redis, on a real redis-server:
ended sessions (``RedisRevocationStore``) and failed sign-ins
(``RedisSignInThrottle``), each used by two processes' worth of clients (two
``RedisBackplane`` links, as two nodes have). Time is a clock the test sets
(the stores take Unix time from their ``clock``); Redis's own expiries are read
back, not waited for."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from triohub.auth.throttle import ThrottleOptions
from triohub.backplane import BackplaneUnavailable
from triohub.backplane.redis import RedisBackplane
from triohub.backplane.sessions import SESSIONS_PREFIX, RedisRevocationStore
from triohub.backplane.throttle import THROTTLE_PREFIX, RedisSignInThrottle

from .redis_server import RedisServer

NOW = 1_800_000_000.0
HERE = "192.0.2.1"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def links(url: str, count: int = 2) -> AsyncIterator[list[RedisBackplane]]:
    """``count`` links to Redis, as ``count`` nodes have."""
    async with trio.open_nursery() as nursery:
        found = []
        for _ in range(count):
            link = RedisBackplane(url)
            await nursery.start(link.run)
            with trio.fail_after(10):
                await link.wait_connected()
            found.append(link)
        yield found
        nursery.cancel_scope.cancel()


# -- ended sessions -----------------------------------------------------------------------


async def test_a_session_ended_on_one_node_is_refused_on_another(redis: RedisServer) -> None:
    clock = Clock()
    async with links(redis.url) as (a, b):
        on_a, on_b = RedisRevocationStore(a, clock=clock), RedisRevocationStore(b, clock=clock)
        assert not await on_b.is_revoked("s1")
        await on_a.revoke("s1", until=NOW + 100.5)
        assert await on_b.is_revoked("s1")
        assert not await on_b.is_revoked("s2")
        # Kept as long as a cookie holding it could be accepted, then forgotten by Redis.
        key = SESSIONS_PREFIX + "s1"
        assert int(redis.command("EXPIRETIME", key)) == int(NOW) + 101
        # A later, shorter revocation of the same id does not shorten it; a longer one extends.
        await on_b.revoke("s1", until=NOW + 10)
        assert int(redis.command("EXPIRETIME", key)) == int(NOW) + 101
        await on_b.revoke("s1", until=NOW + 500)
        assert int(redis.command("EXPIRETIME", key)) == int(NOW) + 500
        # A credential that is already dead leaves nothing behind.
        await on_a.revoke("s3", until=NOW - 1)
        assert redis.command("EXISTS", SESSIONS_PREFIX + "s3") == 0


async def test_nothing_is_checked_without_redis(redis: RedisServer) -> None:
    """Fail closed: while Redis is away a session or a sign-in cannot be checked, and
    the caller refuses the request (the demo answers 503) rather than let it in."""
    async with links(redis.url, 1) as (link,):
        sessions = RedisRevocationStore(link, clock=Clock())
        throttle = RedisSignInThrottle(link, clock=Clock())
        redis.kill()
        with trio.fail_after(10):
            await link.wait_disconnected()
        with pytest.raises(BackplaneUnavailable):
            await sessions.is_revoked("s1")
        with pytest.raises(BackplaneUnavailable):
            await sessions.revoke("s1", until=NOW + 100)
        with pytest.raises(BackplaneUnavailable):
            await throttle.admit("alice", HERE)


# -- failed sign-ins ----------------------------------------------------------------------


def throttles(
    a: RedisBackplane, b: RedisBackplane, clock: Clock, **options: float
) -> tuple[RedisSignInThrottle, RedisSignInThrottle]:
    limits = ThrottleOptions(**options)  # type: ignore[arg-type]
    return RedisSignInThrottle(a, limits, clock=clock), RedisSignInThrottle(b, limits, clock=clock)


async def fail(throttle: RedisSignInThrottle, account: str | None, address: str) -> None:
    assert await throttle.admit(account, address) == 0
    await throttle.settle(account, address, succeeded=False)


async def test_failures_on_every_node_count_against_an_account(redis: RedisServer) -> None:
    clock = Clock()
    async with links(redis.url) as (a, b):
        on_a, on_b = throttles(a, b, clock, account_failures=5, address_failures=100, window=300)
        for n in range(5):
            await fail(on_a if n % 2 else on_b, "alice", f"192.0.2.{n}")
        # A sixth try waits on either node, from anywhere: one failure drains in 60 s.
        assert await on_a.admit("alice", "203.0.113.9") == pytest.approx(60)
        assert await on_b.admit("ALICE", HERE) == pytest.approx(60)  # names count case-folded
        assert await on_b.admit("bob", "198.51.100.7") == 0
        await on_b.settle("bob", "198.51.100.7", succeeded=True)
        # A success leaves no key behind: its address had nothing else.
        assert redis.command("KEYS", THROTTLE_PREFIX + "*address:198.51.100.7") == []
        clock.now += 59
        assert await on_b.admit("alice", HERE) == pytest.approx(1)
        clock.now += 1
        await fail(on_a, "alice", HERE)  # one more fits...
        assert await on_b.admit("alice", HERE) == pytest.approx(60)  # ...and only one
        # The bucket's key goes when it has drained: 5 failures at 1/60 s.
        ttl = redis.command("PTTL", THROTTLE_PREFIX + "account:alice")
        assert 299_000 < ttl <= 300_000


async def test_an_address_counts_across_accounts_and_nodes(redis: RedisServer) -> None:
    clock = Clock()
    async with links(redis.url) as (a, b):
        on_a, on_b = throttles(a, b, clock, account_failures=100, address_failures=4, window=60)
        for n, name in enumerate(("alice", "bob", "carol", "dave")):
            await fail(on_a if n % 2 else on_b, name, HERE)
        assert await on_a.admit("erin", HERE) == pytest.approx(15)
        assert await on_b.admit(None, HERE) == pytest.approx(15)  # no account named
        assert await on_b.admit("erin", "198.51.100.7") == 0


async def test_a_success_empties_the_account_and_adds_nothing(redis: RedisServer) -> None:
    clock = Clock()
    async with links(redis.url) as (a, b):
        on_a, on_b = throttles(a, b, clock, account_failures=3, address_failures=3, window=30)
        await fail(on_a, "alice", HERE)
        await fail(on_b, "alice", HERE)
        # A correct password on the other node: alice's bucket empties; the address keeps
        # its two failures and the success costs it nothing.
        assert await on_b.admit("alice", HERE) == 0
        await on_b.settle("alice", HERE, succeeded=True)
        assert redis.command("EXISTS", THROTTLE_PREFIX + "account:alice") == 0
        await fail(on_a, "bob", HERE)  # the address's third failure
        assert await on_a.admit("carol", HERE) == pytest.approx(10)


async def test_concurrent_attempts_on_two_nodes_cannot_pass_together(
    redis: RedisServer,
) -> None:
    """Each admitted attempt counts at once: of 20 attempts made at the same moment
    on two nodes, only as many as the limit allows get to the password check."""
    clock = Clock()
    async with links(redis.url) as (a, b):
        on_a, on_b = throttles(a, b, clock, account_failures=3, address_failures=100, window=30)
        admitted: list[float] = []

        async def attempt(throttle: RedisSignInThrottle) -> None:
            admitted.append(await throttle.admit("alice", HERE))

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(attempt, on_a if n % 2 else on_b)
        assert sorted(admitted)[:4] == [0, 0, 0, pytest.approx(10)]


async def test_throttling_is_logged_once_per_bucket(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    caplog.set_level(logging.INFO, logger="triohub.auth.throttle")
    async with links(redis.url) as (a, b):
        on_a, on_b = throttles(a, b, clock, account_failures=2, address_failures=100, window=30)
        await fail(on_a, "alice", HERE)
        await fail(on_b, "alice", HERE)
        for throttle in (on_a, on_b, on_a):
            assert await throttle.admit("alice", HERE) > 0
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        f"failed sign-in for 'alice' from {HERE}",
        f"failed sign-in for 'alice' from {HERE}",
        "sign-ins for 'alice' throttled: 2 failures",
    ]
    assert all("password" not in message for message in messages)
