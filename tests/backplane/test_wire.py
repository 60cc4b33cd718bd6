"""The backplane's plain RESP connections against a real redis-server: batches
arrive whole and in order, subscriptions are confirmed before ``change``
returns, credentials from the URL are used (and never logged), and a lost
server is a ``LinkLost``, never a hang."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import coredis
import pytest
import trio

from triohub.backplane.redis import RedisBackplane
from triohub.backplane.wire import LinkLost, Publisher, RespConnection, Subscriber, Target

from .redis_server import RedisServer


def target_of(url: str) -> Target:
    return Target.of(coredis.Redis.from_url(url))


class Collected:
    """What handlers received, and a way to wait for the n-th."""

    def __init__(self) -> None:
        self.items: list[object] = []
        self._changed = trio.Event()

    def add(self, item: object) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self, count: int) -> list[object]:
        while len(self.items) < count:
            await self._changed.wait()
        return self.items


class Retrying(logging.Handler):
    """Set once the backplane logs that it will retry."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.seen.set()


async def test_a_batch_reaches_the_subscriber_whole_and_in_order(redis: RedisServer) -> None:
    target = target_of(redis.url)
    got = Collected()
    handlers = {
        b"P:user:bob": lambda data: got.add(("bob", data)),
        b"P:all": lambda data: got.add(("all", data)),
    }
    publishing = await RespConnection.open(target)
    subscribed = await RespConnection.open(target)
    subscriber = Subscriber(subscribed, handlers)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber.run)
        await subscriber.change([b"P:user:bob", b"P:all"], [])
        assert redis.numsub("P:user:bob", "P:all", "P:user:eve") == {
            "P:user:bob": 1,
            "P:all": 1,
            "P:user:eve": 0,
        }
        # Binary envelopes (CRLF, NUL, large) and a channel nobody subscribes to.
        batch = [(b"P:user:bob", b"%d\r\n\x00" % i * (i + 1)) for i in range(200)]
        batch.insert(50, (b"P:user:eve", b"nobody"))
        batch.append((b"P:all", b"x" * 300_000))
        await Publisher(publishing).publish(batch)
        assert await got.wait(201) == [
            *(("bob", b"%d\r\n\x00" % i * (i + 1)) for i in range(200)),
            ("all", b"x" * 300_000),
        ]
        await subscriber.change([], [b"P:all"])
        assert redis.numsub("P:all") == {"P:all": 0}
        nursery.cancel_scope.cancel()
    await publishing.aclose()
    await subscribed.aclose()


async def test_a_failing_handler_is_logged_and_the_next_message_still_arrives(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    target = target_of(redis.url)
    got = Collected()

    def handler(data: bytes) -> None:
        if data == b"bad":
            raise ValueError("a handler's bug")
        got.add(data)

    publishing = await RespConnection.open(target)
    subscriber = Subscriber(await RespConnection.open(target), {b"c": handler})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber.run)
        await subscriber.change([b"c"], [])
        await Publisher(publishing).publish([(b"c", b"bad"), (b"c", b"good")])
        assert await got.wait(1) == [b"good"]
        nursery.cancel_scope.cancel()
    assert "handling a message on b'c' failed" in caplog.text


async def test_a_killed_server_is_link_lost_on_both_connections(redis: RedisServer) -> None:
    target = target_of(redis.url)
    publishing = await RespConnection.open(target)
    subscriber = Subscriber(await RespConnection.open(target), {})
    redis.kill()
    with pytest.raises(LinkLost):
        await subscriber.run()
    with pytest.raises(LinkLost):
        # The write may still go into the kernel's buffer; its replies never come.
        await Publisher(publishing).publish([(b"c", b"x")] * 1000)


@pytest.fixture
def secured() -> Iterator[RedisServer]:
    server = RedisServer(password="s3cret-of-the-test")
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_the_urls_password_opens_both_connections(secured: RedisServer) -> None:
    link = RedisBackplane(secured.url)
    got = Collected()
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        link.subscribe("c", got.add)
        await link.wait_connected()
        await link.sync()
        link.publish_nowait("c", b"through both")
        await link.flush()
        assert await got.wait(1) == [b"through both"]
        nursery.cancel_scope.cancel()


async def test_a_wrong_password_is_refused_and_never_logged(
    secured: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = f"redis://:not-the-password@127.0.0.1:{secured.port}/0"
    with pytest.raises(LinkLost, match="refused the URL's credentials") as refused:
        await RespConnection.open(target_of(wrong))
    assert "not-the-password" not in str(refused.value)
    assert "not-the-password" not in repr(target_of(wrong))
    caplog.set_level(logging.WARNING, "triohub.backplane")
    retrying = Retrying()
    logging.getLogger("triohub.backplane").addHandler(retrying)
    link = RedisBackplane(wrong)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            await retrying.seen.wait()
            nursery.cancel_scope.cancel()
    finally:
        logging.getLogger("triohub.backplane").removeHandler(retrying)
    assert not link.connected
    assert "not-the-password" not in caplog.text
