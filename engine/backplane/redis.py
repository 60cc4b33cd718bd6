"""``RedisBackplane``: the backplane's link to Redis, on coredis (anyio, runs under Trio).

One per process, shared by its hubs. It keeps what the node wants (its
subscriptions, a bounded buffer of publishes) apart from the link that
carries it, so an outage changes nothing the hubs see:

- **reconnect**: a lost link is rebuilt with exponential backoff (0.1 s
  doubling to ``backoff_max``), and every channel wanted at that moment is
  subscribed again;
- **publishes** wait in a buffer of ``buffer_size`` while Redis is away and
  are sent, in order, after recovery; past the bound the oldest are dropped,
  counted in ``dropped`` and logged once per outage;
- **requests** that need an answer now (a client result, a group command for
  a remote connection) fail at once while the link is down
  (``BackplaneUnavailable``).

The URL is coredis's: ``redis://[:password@]host:port/db`` or ``rediss://`` for TLS.
Importing this module imports coredis (the ``triohub[redis]`` extra); nothing
else in triohub does.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import coredis
import trio
from coredis.retry import NoRetryPolicy
from coredis.tokens import PureToken

from .hub import BackplaneUnavailable
from .wire import Publisher, RespConnection, Subscriber, Target

if TYPE_CHECKING:
    from ..observability import ServerMetrics

__all__ = ["RedisBackplane"]

log = logging.getLogger("triohub.backplane")

Handler = Callable[[bytes], None]
T = TypeVar("T")


def default_server_name() -> str:
    """Unique per process, readable in ``PUBSUB CHANNELS`` (ASP.NET: machine name + GUID)."""
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:12]}"


class RedisBackplane:
    """Args:
    url: the Redis URL (password and TLS as coredis reads them).
    buffer_size: publishes held while Redis is unreachable.
    backoff_max: the longest wait between two reconnect attempts, seconds.
    request_timeout: how long a PUBLISH may take before the link counts as lost.
    batch: publishes sent in one pipelined round trip, at most.
    coalesce: while publishes stream, a small batch (under ``batch // 8``)
        goes ``coalesce`` seconds after Redis answered the one before it: a
        cross-node send waits at most that long for company on a busy node,
        for fewer round trips (the CPU per send of both nodes and Redis), and
        not at all after a quiet spell.
    server_name: this node's name in the ack and return channels.
    """

    def __init__(
        self,
        url: str,
        *,
        buffer_size: int = 10_000,
        backoff_max: float = 2.0,
        request_timeout: float = 5.0,
        batch: int = 256,
        coalesce: float = 0.002,
        server_name: str | None = None,
    ) -> None:
        if buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        self.url = url
        self.server_name = server_name or default_server_name()
        self.buffer_size = buffer_size
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self._batch = batch
        self.coalesce = coalesce
        self._last_batch = -math.inf  # when Redis answered the last batch (trio time)
        self._handlers: dict[bytes, Handler] = {}
        self._buffer: deque[tuple[bytes, bytes]] = deque()
        self.dropped = 0
        """Publishes dropped because the buffer was full (Redis unreachable too long)."""
        self.reconnects = 0
        """Times the link was restored after a loss."""
        self._ever_linked = False
        self._linked = False
        self._removed = 0  # publishes ever taken off the buffer's front
        self._dropped_logged = False
        self._client: coredis.Redis[bytes] | None = None
        self._work = trio.Event()  # wakes the link's subscriber and publisher
        self._subscriptions_changed = 0
        self._subscriptions_applied = 0
        self._applied = trio.Event()
        self._sent = trio.Event()
        self._up = trio.Event()
        self._lost = trio.Event()
        self._lost.set()
        self._metrics: ServerMetrics | None = None

    def instrument(self, metrics: ServerMetrics) -> None:
        """Report to ``metrics`` (``HubServer`` calls this with its own): the link's
        state, each publish round trip (a batch's or a request's), lost links and
        failed requests, and the publishes dropped while Redis was away."""
        self._metrics = metrics
        metrics.backplane_connection(self._client is not None)

    # -- what the hubs use (any task, never blocks) ------------------------------

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> coredis.Redis[bytes] | None:
        """The live coredis client, for an application's own keys (``None``
        while Redis is unreachable)."""
        return self._client

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers[channel.encode()] = handler
        self._changed()

    def unsubscribe(self, channel: str) -> None:
        if self._handlers.pop(channel.encode(), None) is not None:
            self._changed()

    def publish_nowait(self, channel: str, data: bytes) -> None:
        """Queue a publish; sent in order, held while Redis is away."""
        if len(self._buffer) >= self.buffer_size:
            self._buffer.popleft()
            self._removed += 1
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.backplane_dropped_messages(1, "buffer_full")
            if not self._dropped_logged:
                self._dropped_logged = True
                log.error(
                    "backplane buffer full (%d publishes) while Redis is unreachable: "
                    "dropping the oldest (counted in RedisBackplane.dropped)",
                    self.buffer_size,
                )
        self._buffer.append((channel.encode(), data))
        self._work.set()

    async def publish(self, channel: str, data: bytes) -> int:
        """Publish after what ``publish_nowait`` queued before it (so a group
        command never overtakes the sends made before it), and return how many
        subscribers received it.

        Raises:
            BackplaneUnavailable: Redis is unreachable.
        """
        queued_before = self._removed + len(self._buffer)
        while self._client is not None and self._removed < queued_before:
            await self._sent.wait()
        started = trio.current_time()
        receivers = await self.command("publish", lambda client: client.publish(channel, data))
        if self._metrics is not None:
            self._metrics.backplane_published(trio.current_time() - started)
        return int(receivers)

    async def subscribers(self, channel: str) -> int:
        """How many subscribe to ``channel`` now (``PUBSUB NUMSUB``).

        Raises:
            BackplaneUnavailable: Redis is unreachable.
        """
        counts = await self.command("numsub", lambda client: client.pubsub_numsub(channel))
        return int(sum(counts.values()))

    async def claim(self, key: str, ttl: float) -> str | None:
        """Set ``key`` to this node's name for ``ttl`` seconds unless it exists
        (one round trip, ``SET NX GET``): ``None`` when this node got it, else
        the value it holds.

        Raises:
            BackplaneUnavailable: Redis is unreachable.
        """
        name = self.server_name
        previous = await self.command(
            "claim",
            lambda client: client.set(key, name, condition=PureToken.NX, get=True, px=_ms(ttl)),
        )
        if not isinstance(previous, bytes):
            return None  # nil: it was not there, this node holds it now
        return previous.decode(errors="replace")

    async def mark(self, key: str, value: str, ttl: float) -> None:
        """Set ``key`` to ``value`` for ``ttl`` seconds.

        Raises:
            BackplaneUnavailable: Redis is unreachable.
        """
        await self.command("mark", lambda client: client.set(key, value, px=_ms(ttl)))

    async def command(
        self, what: str, command: Callable[[coredis.Redis[bytes]], Awaitable[T]]
    ) -> T:
        """Run ``command`` on the live client and return its answer: the
        backplane's own requests (PUBLISH that must report its receivers,
        NUMSUB, marks) and state of the application's kept in this Redis (a
        session store, a sign-in throttle). Within ``request_timeout``;
        fails at once while Redis is away.

        Raises:
            BackplaneUnavailable: Redis is unreachable, or the command failed
                (reported as ``what`` failed).
        """
        client = self._client
        metrics = self._metrics
        if client is None:
            if metrics is not None:
                metrics.backplane_failed("request")
            raise BackplaneUnavailable("the backplane's Redis is unreachable")
        try:
            with trio.fail_after(self.request_timeout):
                return await command(client)
        except (Exception, trio.TooSlowError) as error:
            if metrics is not None:
                metrics.backplane_failed("request")
            raise BackplaneUnavailable(f"{what} failed: {error}") from None

    async def keep(self, key: str, member: bytes, until: float) -> None:
        """Add ``member`` to the sorted set ``key`` (scored by ``until``, Unix
        time), forget the members past their ``until``, and let the key expire
        with its last member.

        Raises:
            BackplaneUnavailable: Redis is unreachable.
        """
        client = self._client
        if client is None:
            raise BackplaneUnavailable("the backplane's Redis is unreachable")
        expiry = math.ceil(until)
        try:
            with trio.fail_after(self.request_timeout):
                async with client.pipeline(transaction=True) as pipe:
                    pipe.zadd(key, {member: until})
                    pipe.zremrangebyscore(key, -math.inf, time.time())
                    # NX gives a new key its expiry; GT only ever extends it.
                    pipe.expireat(key, expiry, PureToken.NX)
                    pipe.expireat(key, expiry, PureToken.GT)
        except (Exception, trio.TooSlowError) as error:
            raise BackplaneUnavailable(f"storing in {key} failed: {error}") from None

    async def kept(self, key: str, now: float) -> list[bytes]:
        """The members of the sorted set ``key`` whose ``until`` is after ``now``.

        Raises:
            BackplaneUnavailable: Redis is unreachable.
        """
        client = self._client
        if client is None:
            raise BackplaneUnavailable("the backplane's Redis is unreachable")
        try:
            with trio.fail_after(self.request_timeout):
                members = await client.zrange(key, f"({now!r}", "+inf", sortby=PureToken.BYSCORE)
        except (Exception, trio.TooSlowError) as error:
            raise BackplaneUnavailable(f"reading {key} failed: {error}") from None
        return [m for m in members if isinstance(m, bytes)]

    async def sync(self) -> None:
        """Returns once the subscriptions asked for so far are in place (at once
        while Redis is unreachable: they are made on reconnect)."""
        wanted = self._subscriptions_changed
        while self._client is not None and self._subscriptions_applied < wanted:
            await self._applied.wait()
        await trio.lowlevel.checkpoint()

    async def flush(self) -> None:
        """Returns once every queued publish has been sent (waits through an outage)."""
        while self._buffer:
            await self._sent.wait()
        await trio.lowlevel.checkpoint()

    async def wait_connected(self) -> None:
        await self._up.wait()

    async def wait_disconnected(self) -> None:
        await self._lost.wait()

    def _changed(self) -> None:
        self._subscriptions_changed += 1
        self._work.set()

    # -- the link ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the link up until cancelled. Started at once: the node serves
        local clients whether or not Redis is there."""
        task_status.started()
        delay = 0.1
        while True:
            try:
                await self._session()
            except BaseException as error:  # coredis raises ConnectionError in groups
                self._down()
                if not isinstance(error, Exception) or _cancelled(error):
                    # Being cancelled. coredis's pub/sub cleanup may add its own
                    # error (a write to the closed connection): end with Cancelled alone.
                    await trio.lowlevel.checkpoint()
                    raise
                if self._metrics is not None:
                    self._metrics.backplane_failed("link")
                log.warning(
                    "backplane: Redis link lost or refused (%s); retrying in %.1f s",
                    _describe(error),
                    delay,
                )
            else:  # pragma: no cover - _session only ends by raising
                self._down()
            await trio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)
            if self._linked:
                delay = 0.1  # the link worked: start the backoff over
                self._linked = False

    def _down(self) -> None:
        self._client = None
        if self._metrics is not None:
            self._metrics.backplane_connection(False)
        if self._up.is_set():
            self._up = trio.Event()
        self._lost.set()
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        self._applied.set()
        self._applied = trio.Event()
        self._sent.set()
        self._sent = trio.Event()

    async def _session(self) -> None:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            self.url, decode_responses=False, retry_policy=NoRetryPolicy()
        )
        async with client:
            with trio.fail_after(self.request_timeout):
                await client.ping()
                target = Target.of(client)
                publishing = await RespConnection.open(target)
            try:
                with trio.fail_after(self.request_timeout):
                    subscribed_link = await RespConnection.open(target)
                try:
                    await self._linked_session(client, Publisher(publishing), subscribed_link)
                finally:
                    with trio.CancelScope(shield=True):
                        await subscribed_link.aclose()
            finally:
                with trio.CancelScope(shield=True):
                    await publishing.aclose()

    async def _linked_session(
        self, client: coredis.Redis[bytes], publisher: Publisher, subscribed_link: RespConnection
    ) -> None:
        subscriber = Subscriber(subscribed_link, self._handlers)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(subscriber.run)
            applied = self._subscriptions_changed
            wanted = list(self._handlers)
            with trio.fail_after(self.request_timeout):
                await subscriber.change(wanted, [])
            subscribed = set(wanted)
            self._subscriptions_applied = applied
            self._client = client
            if self._metrics is not None:
                self._metrics.backplane_connection(True)
            self._lost = trio.Event()
            self._up.set()
            self._linked = True
            if self._ever_linked:
                self.reconnects += 1
            self._ever_linked = True
            if self.reconnects:
                log.warning(
                    "backplane: Redis link restored; %d channels subscribed again, "
                    "%d held publishes to send, %d dropped so far",
                    len(wanted),
                    len(self._buffer),
                    self.dropped,
                )
            self._dropped_logged = False
            self._wake_waiters()
            while True:
                await self._apply_subscriptions(subscriber, subscribed)
                await self._send_buffer(publisher)
                if self._subscriptions_applied == self._subscriptions_changed and (
                    not self._buffer
                ):
                    self._work = trio.Event()
                    await self._work.wait()

    async def _apply_subscriptions(self, subscriber: Subscriber, subscribed: set[bytes]) -> None:
        while self._subscriptions_applied < self._subscriptions_changed:
            target = self._subscriptions_changed
            wanted = set(self._handlers)
            new = wanted - subscribed
            gone = subscribed - wanted
            with trio.fail_after(self.request_timeout):
                await subscriber.change(list(new), list(gone))
            subscribed -= gone
            subscribed |= new
            self._subscriptions_applied = target
            self._applied.set()
            self._applied = trio.Event()

    async def _send_buffer(self, publisher: Publisher) -> None:
        while self._buffer:
            due = self._last_batch + self.coalesce
            if len(self._buffer) < self._batch // 8 and trio.current_time() < due:
                # Publishes are streaming: a small batch waits for company until
                # ``coalesce`` after the last one's answer (a round trip's writes and
                # wake-ups, here, in Redis and on every receiving node, cost more
                # than the commands it carries). After a quiet spell it goes now.
                await trio.sleep_until(due)
            first = self._removed
            batch = [self._buffer[i] for i in range(min(self._batch, len(self._buffer)))]
            started = trio.current_time()
            # A cancel scope, not fail_after: its context manager costs a
            # generator per batch on the hottest loop of the node.
            with trio.CancelScope(deadline=started + self.request_timeout) as limit:
                await publisher.publish(batch)
            if limit.cancelled_caught:
                raise trio.TooSlowError(f"Redis answered no PUBLISH in {self.request_timeout:g} s")
            # Counted from the answer, not the write: when Redis or this node is
            # slow, the round trip grows and so does the next batch.
            self._last_batch = trio.current_time()
            if self._metrics is not None:
                # One round trip per batch, whatever its size: the latency Redis adds.
                self._metrics.backplane_published(self._last_batch - started)
            # Sent: only now leave the buffer (a failure keeps them for the next
            # link). Drops while the batch was in flight took some already.
            while self._buffer and self._removed < first + len(batch):
                self._buffer.popleft()
                self._removed += 1
            self._sent.set()
            self._sent = trio.Event()
            await trio.lowlevel.checkpoint()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _cancelled(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(trio.Cancelled) is not None
    return isinstance(error, trio.Cancelled)


def _describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in error.exceptions)
    return f"{type(error).__name__}: {error}"
