"""One supervised nursery per connection.

``supervise`` runs a connection from its first byte to its last:

* handshake under a timeout;
* then, in one nursery: the reader (this task), a single writer draining the
  bounded outbox (so message order holds by construction, no locks), and one
  timer task for the keep-alive pings and the client-timeout watchdog;
  invocations are started in the same nursery by the session, so nothing
  outlives the connection;
* all of it under an optional *expiry* cancel scope whose deadline is the
  credential's expiry: at the deadline everything in flight is cancelled;
* then the close: the final record is written under a short shield, the
  transport closed, and the session told (unregister, disconnect hooks).

It knows nothing of SignalR: the engine's ``Session`` turns bytes into work and
close reasons into records; the ``Transport`` moves bytes.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
import trio

__all__ = [
    "CloseConnection",
    "CloseReason",
    "Control",
    "DirectTransport",
    "HandshakeStep",
    "Session",
    "SupervisorOptions",
    "Transport",
    "supervise",
]

log = logging.getLogger("triohub.connection")


class CloseReason(enum.Enum):
    """Why a connection ended; the session maps it to a close record."""

    CLIENT_CLOSED = "client closed"
    TRANSPORT_CLOSED = "transport closed"
    ABORTED = "aborted by the server"
    PROTOCOL_ERROR = "protocol error"
    CLIENT_TIMEOUT = "client timeout"
    HANDSHAKE_FAILED = "handshake failed"
    HANDSHAKE_TIMEOUT = "handshake timeout"
    CONNECT_FAILED = "connect handler failed"
    EXPIRED = "authentication expired"
    SLOW_CONSUMER = "slow consumer"
    LIMITS_EXCEEDED = "limits exceeded"
    SHUTDOWN = "server shutdown"
    INTERNAL_ERROR = "internal error"


class CloseConnection(Exception):
    """Raised by session code to end the connection with a reason."""

    def __init__(self, reason: CloseReason, detail: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason = reason
        self.detail = detail


@attrs.frozen
class SupervisorOptions:
    """Timers and limits of one connection (ASP.NET Core defaults)."""

    handshake_timeout: float = 15.0
    """Seconds for the handshake record to arrive."""
    keep_alive_interval: float | None = 15.0
    """Send a ping after this much send silence; ``None`` for transports that
    keep themselves alive (long polling)."""
    client_timeout: float = 30.0
    """Close when the client is silent this long, once it has pinged."""
    outbox_size: int = 1024
    """Encoded records that may wait for the writer; beyond: slow consumer."""
    outbox_max_bytes: int = 1024 * 1024
    """Bytes of encoded records that may wait for the writer or be in its hands;
    beyond: the router's sends count the connection as a slow consumer, and the
    connection's own sends wait (back-pressure on its invocations)."""
    close_timeout: float = 5.0
    """How long each closing step may take: the final record, the transport
    close, the disconnect hooks (each its own budget; ``Session.release``
    has none)."""
    send_timeout: float = 10.0
    """A single transport write slower than this ends the connection."""


class Transport(Protocol):
    """Moves bytes for one connection (WebSocket, SSE, long polling, memory)."""

    async def receive(self) -> bytes | None:
        """The next chunk from the client; ``None`` when the client is gone."""
        ...

    async def send(self, chunks: Sequence[bytes]) -> None:
        """Write complete records, possibly batched into one frame."""
        ...

    async def aclose(self) -> None:
        """End the transport (idempotent)."""
        ...


class DirectTransport(Transport, Protocol):
    """A transport that can also write without waiting (``native_ws``).

    ``send_nowait(record)`` writes one record at once when nothing is queued
    ahead of it and returns ``True``; what the kernel does not take stays in
    the transport, which then calls the waker given to ``attach`` so the
    writer flushes it with ``send``. ``False``: not taken, queue it.
    """

    def send_nowait(self, data: bytes) -> bool: ...

    def attach(self, waker: Callable[[], None]) -> None: ...


@attrs.frozen
class HandshakeStep:
    """The session's answer to a complete handshake record."""

    reply: bytes
    ok: bool
    remainder: bytes = b""
    """Bytes that followed the handshake record: the first hub records."""


class Session(Protocol):
    """The engine's side of one connection."""

    def receive_handshake(self, data: bytes) -> HandshakeStep | None:
        """Feed handshake bytes; ``None`` while the record is incomplete."""
        ...

    def handshake_timeout_reply(self) -> bytes: ...

    async def opened(self, control: Control) -> None:
        """After a good handshake: register, run connect hooks.

        Raises:
            CloseConnection: to refuse the connection.
        """
        ...

    async def receive(self, data: bytes) -> None:
        """Decode and dispatch one chunk of hub records.

        Raises:
            CloseConnection: on a protocol error or a client Close.
        """
        ...

    def ping(self) -> bytes: ...

    def close_record(self, reason: CloseReason) -> bytes | None:
        """The last record to send for ``reason``, if any."""
        ...

    async def release(self, reason: CloseReason) -> None:
        """Undo what ``opened`` registered (the router entry), first thing of the close.

        Awaited shielded and without a time limit, on its own: a connection
        that stays registered gets sends for good, so this step is never cut
        short by a deadline it would share with hooks. It must therefore never
        wait on user code, only on actors that always make progress.
        """
        ...

    async def closed(self, reason: CloseReason, opened: bool) -> None:
        """Last call: the disconnect hooks (shielded, bounded by ``close_timeout``).

        ``opened`` says whether the handshake succeeded (``opened`` was called).
        """
        ...


class Control:
    """What a session may do to its connection."""

    def __init__(
        self,
        connection_id: str,
        nursery: trio.Nursery,
        outbox: trio.MemorySendChannel[bytes],
        options: SupervisorOptions,
        direct: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.connection_id = connection_id
        self.nursery = nursery
        """Start per-invocation tasks here; they end with the connection."""
        self.outbox = outbox
        self.reason: CloseReason | None = None
        self.detail = ""
        self._options = options
        self._client_timeout_armed = False
        self.last_receive = trio.current_time()
        self.last_send = trio.current_time()
        self.dispatching = False
        """The reader is handling a record (the client timeout does not run)."""
        self.writer_waiting = False
        """The writer is parked on an empty outbox (see ``send``)."""
        self._direct = direct
        self._activity = trio.Event()
        self.queued_bytes = 0
        """Bytes in the outbox and in the writer's hands: added here, subtracted
        by the writer once a batch is written."""
        self._max_bytes = options.outbox_max_bytes
        self._room: trio.Event | None = None

    async def send(self, data: bytes) -> None:
        """Queue one encoded record for the writer, waiting for room (records
        and bytes).

        When the writer is parked on an empty outbox, the record is handed to
        it without a yield to the scheduler (the caller still raises
        ``Cancelled`` if it is cancelled): the usual case of a call's
        Completion, where that yield costs as much as the rest of queueing it
        (benchmarks/). Otherwise this yields, so a fast stream still lets the
        writer and everyone else run between its items.
        """
        try:
            if self.writer_waiting:
                await trio.lowlevel.checkpoint_if_cancelled()
                self.send_nowait(data)
                return
            while self.queued_bytes >= self._max_bytes and self.reason is None:
                if self._room is None:
                    self._room = trio.Event()
                await self._room.wait()
            size = len(data)
            self.queued_bytes += size
            try:
                await self.outbox.send(data)
            except BaseException:
                self.queued_bytes -= size
                raise
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the connection is closing; the record has nowhere to go

    def send_nowait(self, data: bytes) -> None:
        """Queue one encoded record without waiting (the router's fan-out).

        With the writer idle and a ``DirectTransport``, the record is written
        to the transport right here: no writer wake-up, no scheduler trip.

        Raises:
            trio.WouldBlock: the outbox is full (a slow consumer).
            trio.ClosedResourceError: the connection is closing.
        """
        if self.writer_waiting:
            if self._direct is not None and self._direct(data):
                self.last_send = trio.current_time()
                return
            self.writer_waiting = False
        # O(1) and no allocation: this runs once per recipient of a broadcast.
        # One record may take the outbox past the limit, so a record larger than
        # the limit still reaches a client that keeps up.
        queued = self.queued_bytes
        size = len(data)
        if queued and queued + size > self._max_bytes:
            raise trio.WouldBlock
        self.outbox.send_nowait(data)
        self.queued_bytes = queued + size

    def _sent(self, size: int) -> None:
        """The writer wrote ``size`` bytes of queued records."""
        self.queued_bytes -= size
        if self._room is not None and self.queued_bytes < self._max_bytes:
            self._room.set()
            self._room = None

    def wake_writer(self) -> None:
        """Make the writer flush the transport (it kept bytes the kernel refused)."""
        try:
            self.outbox.send_nowait(b"")
            self.writer_waiting = False
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the writer is busy (it flushes anyway) or gone

    def close(self, reason: CloseReason, detail: str = "") -> None:
        """End the connection (idempotent; the first reason wins). Never blocks."""
        if self.reason is None:
            self.reason = reason
            self.detail = detail
        if self._room is not None:
            self._room.set()  # senders waiting for room from outside the nursery
            self._room = None
        self.nursery.cancel_scope.cancel()

    def arm_client_timeout(self) -> None:
        """Called on the client's first ping: from now on silence is fatal."""
        if not self._client_timeout_armed:
            self._client_timeout_armed = True
            self._activity.set()

    @property
    def client_timeout_armed(self) -> bool:
        return self._client_timeout_armed


async def supervise(
    connection_id: str,
    transport: Transport,
    session: Session,
    options: SupervisorOptions,
    *,
    expires_at: float | None = None,
) -> CloseReason:
    """Run one connection to its end and return why it ended.

    Args:
        expires_at: ``trio.current_time()``-based deadline of the credential;
            reaching it cancels the connection with ``CloseReason.EXPIRED``.

    Never raises for anything the client or hub code does; a bug in the
    session is logged and closes only this connection.
    """
    reason: CloseReason | None = None
    control: Control | None = None
    opened = False  # the handshake succeeded: the session speaks the hub protocol
    send_outbox, receive_outbox = trio.open_memory_channel[bytes](options.outbox_size)
    expiry = trio.CancelScope(deadline=expires_at if expires_at is not None else float("inf"))
    try:
        with expiry:
            remainder: bytes | None = None
            with trio.move_on_after(options.handshake_timeout) as handshake_scope:
                remainder = await _handshake(transport, session, options)
            if handshake_scope.cancelled_caught:
                reason = CloseReason.HANDSHAKE_TIMEOUT
                await _write_final(transport, [session.handshake_timeout_reply()], options)
            elif remainder is None:
                reason = CloseReason.HANDSHAKE_FAILED
            else:
                async with trio.open_nursery() as nursery:
                    direct = getattr(transport, "send_nowait", None)
                    control = Control(connection_id, nursery, send_outbox, options, direct)
                    if direct is not None:
                        transport.attach(control.wake_writer)  # type: ignore[attr-defined]
                    opened = True
                    try:
                        await session.opened(control)
                        nursery.start_soon(_writer, transport, receive_outbox, control, options)
                        nursery.start_soon(_timers, session, control, options)
                        # Records batched behind the handshake come first.
                        await session.receive(remainder)
                        await _reader(transport, session, control)
                    except CloseConnection as close:
                        control.close(close.reason, close.detail)
                reason = control.reason
        if expiry.cancelled_caught and reason is None:
            reason = CloseReason.EXPIRED
    except Exception:
        log.exception("connection %s failed", connection_id)
        reason = CloseReason.INTERNAL_ERROR
    finally:
        if reason is None:
            # Cancelled from outside (server shutdown) or an unexpected exit.
            reason = control.reason if control and control.reason else CloseReason.SHUTDOWN
        await _finish(
            connection_id, transport, session, send_outbox, receive_outbox, reason, opened, options
        )
    return reason


async def _handshake(
    transport: Transport, session: Session, options: SupervisorOptions
) -> bytes | None:
    """Returns the bytes after the handshake on success, ``None`` on failure."""
    while True:
        data = await transport.receive()
        if data is None:
            return None
        step = session.receive_handshake(data)
        if step is None:
            continue
        if step.ok:
            await transport.send([step.reply])
            return step.remainder
        await _write_final(transport, [step.reply], options)
        return None


async def _reader(transport: Transport, session: Session, control: Control) -> None:
    while True:
        data = await transport.receive()
        if data is None:
            control.close(CloseReason.TRANSPORT_CLOSED)
            return
        control.last_receive = trio.current_time()
        # While a record is being handled (waiting for an invocation slot, or for
        # room in an upload stream) the client's pings go unread: that is our
        # back-pressure, not the client's silence (ASP.NET stops the timer too).
        control.dispatching = True
        try:
            await session.receive(data)
        finally:
            control.dispatching = False
            control.last_receive = trio.current_time()


async def _writer(
    transport: Transport,
    outbox: trio.MemoryReceiveChannel[bytes],
    control: Control,
    options: SupervisorOptions,
) -> None:
    batch: list[bytes] = []
    while True:
        try:
            batch.append(outbox.receive_nowait())
        except trio.WouldBlock:
            # Idle for real: the outbox is empty, so a record may now go straight
            # to a DirectTransport (``Control.send_nowait``) without overtaking
            # any. Never set while records wait: ``receive()`` on a non-empty
            # outbox takes one and then yields, and a direct write in that yield
            # would go out ahead of it.
            control.writer_waiting = True
            batch.append(await outbox.receive())
        control.writer_waiting = False
        while True:
            try:
                batch.append(outbox.receive_nowait())
            except trio.WouldBlock:
                break
        # Shielded so a cancellation never leaves half a frame on the wire;
        # bounded so a client that stopped reading cannot hold us forever.
        # One scope does both (a shield keeps its own deadline): this runs once
        # per batch on the hottest path there is.
        with trio.CancelScope(
            shield=True, deadline=trio.current_time() + options.send_timeout
        ) as timeout:
            try:
                await transport.send(batch)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                control.close(CloseReason.TRANSPORT_CLOSED)
                return
        if timeout.cancelled_caught:
            control.close(CloseReason.SLOW_CONSUMER, "transport send timed out")
            return
        control.last_send = trio.current_time()
        control._sent(sum(map(len, batch)))
        batch = []


async def _timers(session: Session, control: Control, options: SupervisorOptions) -> None:
    """Keep-alive pings and the client-timeout watchdog.

    One task for both: they sleep nearly all the time, and an idle connection
    is mostly its tasks (benchmarks/: memory per idle connection).

    * A ping goes out after ``keep_alive_interval`` of send silence.
    * Once the client has pinged (``arm_client_timeout``), ``client_timeout``
      of silence from it closes the connection; not while the reader is busy
      handling a record (that is our back-pressure, not the client's silence).
    """
    interval = options.keep_alive_interval
    ping = session.ping() if interval is not None else b""
    while True:
        now = trio.current_time()
        wake = math.inf
        if interval is not None:
            due = control.last_send + interval
            if now >= due:
                await control.send(ping)
                # Count the ping as sent now, so a busy writer does not make us
                # queue one ping per tick.
                control.last_send = trio.current_time()
                continue
            wake = due
        if control.client_timeout_armed:
            due = (now if control.dispatching else control.last_receive) + options.client_timeout
            if now >= due:
                control.close(CloseReason.CLIENT_TIMEOUT)
                return
            await trio.sleep_until(min(wake, due))
        else:
            # Until the client's first ping there is no timeout to keep, but
            # arming one must wake us: its due time may come before ``wake``.
            with trio.move_on_at(wake):
                await control._activity.wait()


async def _write_final(
    transport: Transport, chunks: list[bytes], options: SupervisorOptions
) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(options.close_timeout):
        try:
            await transport.send(chunks)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


_NO_FLUSH = {CloseReason.SLOW_CONSUMER, CloseReason.TRANSPORT_CLOSED, CloseReason.INTERNAL_ERROR}


async def _finish(
    connection_id: str,
    transport: Transport,
    session: Session,
    send_outbox: trio.MemorySendChannel[bytes],
    receive_outbox: trio.MemoryReceiveChannel[bytes],
    reason: CloseReason,
    opened: bool,
    options: SupervisorOptions,
) -> None:
    # Shielded: the close runs even when the connection was cancelled from
    # outside. Leaving the router comes first and has no time limit (see
    # ``Session.release``); every later step has a limit of its own, so a
    # client that stopped reading (the last write blocks) cannot cost us the
    # disconnect hooks, and slow hooks cannot cost us the unregistering. When
    # thousands of clients drop at once, the steps queue for the scheduler and
    # the router: a deadline shared by all of them ran out before the
    # unregistering's turn and left dead entries behind for good.
    with trio.CancelScope(shield=True):
        send_outbox.close()
        if opened:
            try:
                await session.release(reason)
            except Exception:
                log.exception("releasing connection %s failed", connection_id)
        chunks: list[bytes] = []
        if opened and reason not in _NO_FLUSH:
            # What was queued before the close still goes out, in order.
            while True:
                try:
                    chunks.append(receive_outbox.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
        receive_outbox.close()
        if opened and reason is not CloseReason.TRANSPORT_CLOSED:
            record = session.close_record(reason)
            if record is not None:
                chunks.append(record)
        if chunks:
            with trio.move_on_after(options.close_timeout):
                try:
                    await transport.send(chunks)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
        with trio.move_on_after(options.close_timeout):
            try:
                await transport.aclose()
            except Exception:
                log.exception("closing the transport failed")
        with trio.move_on_after(options.close_timeout) as hooks:
            try:
                await session.closed(reason, opened)
            except Exception:
                log.exception("connection close handler failed")
        if hooks.cancelled_caught:
            log.warning("the close handlers took longer than %gs", options.close_timeout)
