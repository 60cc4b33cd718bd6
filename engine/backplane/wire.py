"""The backplane's two hot paths on plain RESP connections: publishing and receiving.

coredis carries every request of the backplane that needs its answer now
(claims, ``PUBSUB NUMSUB``, a group command's PUBLISH). The stream of
cross-node sends does not: through coredis a pipelined batch of PUBLISH
commands cost as much CPU as the whole local delivery of the message, and each
received message crossed a memory stream and a task before reaching its
handler. Here:

- ``Publisher``: a batch of PUBLISH commands is one buffer, one write; the
  receiver counts are read back (their number tells the batch arrived);
- ``Subscriber``: one task reads the subscribed connection, parses each
  message in place and calls its channel's handler (no queue, no task per
  message); SUBSCRIBE and UNSUBSCRIBE return once Redis confirmed them.

Both open through ``Target``, the address, credentials and TLS context coredis
read from the same URL, so ``redis://:password@host:port/db`` and
``rediss://`` mean the same on every connection. Reconnecting, buffering and
counting what was dropped stay in ``RedisBackplane``: a failure here raises
``LinkLost`` and the backplane builds a new session.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import coredis
import trio
from coredis.connection import UnixDomainSocketLocation

from .resp import NEED_DATA, RespError, RespParser, command, publish

__all__ = ["LinkLost", "Publisher", "RespConnection", "Subscriber", "Target"]

log = logging.getLogger("triohub.backplane")

Handler = Callable[[bytes], None]

_RECEIVE_SIZE = 65536


class LinkLost(ConnectionError):
    """The connection ended, or Redis answered what it should not have."""


@attrs.frozen(repr=False)
class Target:
    """Where and how to connect (the password is never in a message or repr)."""

    host: str = ""
    port: int = 6379
    path: str | None = None
    """A Unix socket's path (``unix://`` URLs) instead of host and port."""
    ssl_context: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None

    @classmethod
    def of(cls, client: coredis.Redis[bytes]) -> Target:
        """The target coredis's client connects to (parsed from the URL by coredis)."""
        pool = client.connection_pool
        options = pool.connection_kwargs
        location = pool.location
        if isinstance(location, UnixDomainSocketLocation):
            where: dict[str, Any] = {"path": location.path}
        else:
            where = {"host": location.host, "port": location.port}  # type: ignore[union-attr]
        return cls(
            **where,
            ssl_context=options.get("ssl_context"),
            username=options.get("username"),
            password=options.get("password"),
        )

    def __repr__(self) -> str:
        where = self.path or f"{self.host}:{self.port}"
        return f"Target({where}{', tls' if self.ssl_context else ''})"


class RespConnection:
    """One plain connection to Redis: bytes out, parsed replies in."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._parser = RespParser()

    @classmethod
    async def open(cls, target: Target) -> RespConnection:
        """Connect, authenticate if the URL had credentials.

        Raises:
            OSError: Redis is unreachable.
            LinkLost: the credentials were refused.
        """
        stream: trio.abc.Stream
        if target.path is not None:
            stream = await trio.open_unix_socket(target.path)
        else:
            stream = await trio.open_tcp_stream(target.host, target.port)
        if target.ssl_context is not None:
            tls = trio.SSLStream(stream, target.ssl_context, server_hostname=target.host)
            await tls.do_handshake()
            stream = tls
        connection = cls(stream)
        try:
            if target.password is not None:
                credentials = [target.password.encode()]
                if target.username:
                    credentials.insert(0, target.username.encode())
                reply = await connection.request(b"AUTH", *credentials)
                if isinstance(reply, RespError):
                    # Redis's text names no secret ("WRONGPASS invalid username-password pair").
                    raise LinkLost(f"Redis refused the URL's credentials: {reply.message}")
        except BaseException:
            await connection.aclose()
            raise
        return connection

    async def send(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise LinkLost(f"Redis connection lost while sending: {error}") from None

    async def receive(self) -> None:
        """Read what arrived into the parser.

        Raises:
            LinkLost: the connection ended.
        """
        try:
            data = await self._stream.receive_some(_RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise LinkLost(f"Redis connection lost while receiving: {error}") from None
        if not data:
            raise LinkLost("Redis closed the connection")
        self._parser.feed(data)

    def next(self) -> object:
        """The next parsed reply, or ``NEED_DATA``."""
        return self._parser.next()

    async def request(self, *parts: bytes) -> object:
        """One command and its reply (nothing else in flight)."""
        await self.send(command(*parts))
        while (reply := self._parser.next()) is NEED_DATA:
            await self.receive()
        return reply

    async def aclose(self) -> None:
        await self._stream.aclose()


class Publisher:
    """PUBLISH commands sent in batches on a connection of their own."""

    def __init__(self, connection: RespConnection) -> None:
        self._connection = connection

    async def publish(self, batch: list[tuple[bytes, bytes]]) -> None:
        """Send ``batch`` (channel, data) in one write and return once Redis
        answered every PUBLISH (so they were delivered to the subscribers).

        Raises:
            LinkLost: the connection broke, or Redis refused a PUBLISH.
        """
        connection = self._connection
        await connection.send(b"".join([publish(channel, data) for channel, data in batch]))
        remaining = len(batch)
        while remaining:
            reply = connection.next()
            if reply is NEED_DATA:
                await connection.receive()
            elif isinstance(reply, int):
                remaining -= 1
            else:
                raise LinkLost(f"PUBLISH answered {reply!r}")


class Subscriber:
    """The subscribed connection: calls ``handlers[channel](data)`` for each message.

    Args:
        connection: a connection used for nothing else.
        handlers: the channels' handlers by channel name, read as each message
            arrives (the backplane owns it; a channel missing from it is ignored).
    """

    def __init__(self, connection: RespConnection, handlers: Mapping[bytes, Handler]) -> None:
        self._connection = connection
        self._handlers = handlers
        self._unconfirmed = 0
        self._confirmed = trio.Event()

    async def change(self, new: list[bytes], gone: list[bytes]) -> None:
        """Subscribe to ``new``, unsubscribe from ``gone``; returns once Redis
        confirmed each (``run`` reads the confirmations: it must be running)."""
        data = b""
        if new:
            data += command(b"SUBSCRIBE", *new)
        if gone:
            data += command(b"UNSUBSCRIBE", *gone)
        if not data:
            return
        self._unconfirmed += len(new) + len(gone)
        await self._connection.send(data)
        while self._unconfirmed > 0:
            await self._confirmed.wait()

    async def run(self) -> None:
        """Read and dispatch until the connection fails (raises ``LinkLost``)."""
        connection = self._connection
        handlers = self._handlers
        while True:
            await connection.receive()
            while (item := connection.next()) is not NEED_DATA:
                if type(item) is not list or len(item) != 3:
                    raise LinkLost(f"a subscribed connection received {item!r}")
                kind, channel, data = item
                if kind == b"message":
                    handler = handlers.get(channel)
                    if handler is None:
                        continue  # unsubscribed meanwhile
                    try:
                        handler(data)
                    except Exception:
                        log.exception("backplane: handling a message on %r failed", channel)
                elif kind == b"subscribe" or kind == b"unsubscribe":
                    self._unconfirmed -= 1
                    if self._unconfirmed <= 0:
                        self._confirmed.set()
                        self._confirmed = trio.Event()
                # (pmessage and pong: never asked for)
