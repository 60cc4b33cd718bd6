"""The backplane over TLS (``rediss://``) with a password, on a real redis-server
with a TLS port and a throwaway certificate authority: two nodes exchange a
``clients.user`` send, and a wrong password is a logged error (naming no
secret), retried with backoff, never a hang."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from triohub.backplane.redis import RedisBackplane
from triohub.protocol import Invocation

from .redis_server import RedisServer
from .support import open_clients, open_nodes
from .tls import make_tls_files

PASSWORD = "tls-s3cret-of-the-test"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(password=PASSWORD, tls=make_tls_files(tmp_path))
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_two_nodes_exchange_a_user_send_over_tls_with_a_password(
    tls_redis: RedisServer,
) -> None:
    with trio.fail_after(20):
        async with open_nodes(tls_redis.tls_url, 2) as (a, b):
            async with open_clients([(b, "b1", "alice")]) as clients:
                # alice's channel is subscribed once Redis confirmed it (the
                # handshake's reply may come first).
                await b.backplane.sync()
                await a.hub.clients.user("alice").send("Got", "over tls")
                message = await clients["b1"].next_message()
            # Every link of both nodes (coredis's, the publishing and the
            # subscribed connection) is on the TLS port; the plain port serves
            # only this CLIENT LIST.
            listed = tls_redis.command("CLIENT", "LIST").decode().splitlines()
    assert isinstance(message, Invocation)
    assert message.arguments == ("over tls",)
    local = [line.split(" laddr=")[1].split()[0] for line in listed]
    assert local.count(f"127.0.0.1:{tls_redis.port}") == 1
    assert local.count(f"127.0.0.1:{tls_redis.tls_port}") >= 6


class Refused(logging.Handler):
    """Collects the backplane's warnings; set once it says it will retry."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.retrying = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if "retrying" in record.getMessage():
            self.retrying.set()


async def test_a_wrong_password_over_tls_is_a_logged_error_not_a_hang(
    tls_redis: RedisServer,
) -> None:
    wrong = tls_redis.tls_url.replace(PASSWORD, "not-the-password")
    refused = Refused()
    logger = logging.getLogger("triohub.backplane")
    logger.addHandler(refused)
    link = RedisBackplane(wrong)
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(link.run)
                await refused.retrying.wait()
                nursery.cancel_scope.cancel()
    finally:
        logger.removeHandler(refused)
    assert not link.connected
    text = "\n".join(refused.messages)
    assert "invalid username-password pair" in text, text
    assert "not-the-password" not in text
    assert PASSWORD not in text
