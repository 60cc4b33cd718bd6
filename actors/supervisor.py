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
* then the close, shielded: the session leaves the router (no time limit:
  it must never be skipped), the final record is written, the transport
  closed and the disconnect hooks run (each of these with a limit of its own).

``Control``, ``CloseReason`` and ``SupervisorOptions`` live in ``control`` and
are re-exported here.

It knows nothing of SignalR: the engine's ``Session`` turns bytes into work and
close reasons into records; the ``Transport`` moves bytes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
import trio

from .control import CloseConnection, CloseReason, Control, SupervisorOptions

__all__ = [
    "CloseConnection",
    "CloseReason",
    "Control",
    "DirectTransport",
    "HandshakeStep",
    "PacedTransport",
    "Session",
    "SupervisorOptions",
    "Transport",
    "supervise",
]

log = logging.getLogger("triohub.connection")

_TRANSPORT_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
"""What a transport raises when the client is gone: theirs, not ours."""

WRITE_BATCH_BYTES = 64 * 1024
"""The writer stops adding records to a batch past this many bytes (a batch is
one transport ``send``), and yields before the next one: the work one step of
the writer does stays bounded however full its outbox is. As much as a reader
hands on between two yields (``transports.pacing.YIELD_BYTES``): on hypercorn
a 256 KiB batch was the longest step of the soak's patterns (2-2.4 ms of CPU,
``pipeline-8k``, ``python -m tests.soak.steps``)."""


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


class PacedTransport(Transport, Protocol):
    """A transport whose peer paces what it may be sent (stateful reconnect's
    replay buffer, which fills until the peer acknowledges).

    ``admit(records)`` waits until the first of ``records`` may be written and
    returns how many may go now (at least 1). The writer waits there with no
    send timeout (the peer's Acks, not the socket, are late), still cancellable.
    """

    async def admit(self, chunks: Sequence[bytes]) -> int: ...


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


async def supervise(
    connection_id: str,
    transport: Transport,
    session: Session,
    options: SupervisorOptions,
    *,
    expires_at: float | None = None,
    expiry: trio.CancelScope | None = None,
) -> CloseReason:
    """Run one connection to its end and return why it ended.

    Args:
        expires_at: ``trio.current_time()``-based deadline of the credential;
            reaching it cancels the connection with ``CloseReason.EXPIRED``.
        expiry: the cancel scope that enforces that deadline, made by the
            caller so it can move the deadline later (a credential refreshed
            in place); if given, ``expires_at`` is ignored. A fresh scope
            (never entered).

    Never raises for anything the client or hub code does; a bug in the
    session is logged and closes only this connection.
    """
    reason: CloseReason | None = None
    control: Control | None = None
    opened = False  # the handshake succeeded: the session speaks the hub protocol
    send_outbox, receive_outbox = trio.open_memory_channel[bytes](options.outbox_size)
    if expiry is None:
        expiry = trio.CancelScope(deadline=expires_at if expires_at is not None else float("inf"))
    try:
        with expiry:
            remainder: bytes | None = None
            with trio.move_on_after(options.handshake_timeout) as handshake_scope:
                remainder = await _handshake(connection_id, transport, session, options)
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
        if control is not None:
            # Also releases senders from other connections' tasks (client
            # results) that wait for room in this outbox.
            control.close(reason)
        await _finish(
            connection_id, transport, session, send_outbox, receive_outbox, reason, opened, options
        )
    return reason


async def _handshake(
    connection_id: str, transport: Transport, session: Session, options: SupervisorOptions
) -> bytes | None:
    """Returns the bytes after the handshake on success, ``None`` on failure.

    A client that goes away before our answer reaches it (connects, sends its
    handshake, drops) is no error of ours: one INFO line, no traceback.
    """
    while True:
        data = await transport.receive()
        if data is None:
            return None
        step = session.receive_handshake(data)
        if step is None:
            continue
        if step.ok:
            try:
                await transport.send([step.reply])
            except _TRANSPORT_GONE as error:
                log.info(
                    "connection %s: the client left during the handshake (%s)",
                    connection_id,
                    error or type(error).__name__,
                )
                return None
            return step.remainder
        await _write_final(transport, [step.reply], options)
        return None


async def _reader(transport: Transport, session: Session, control: Control) -> None:
    while True:
        data = await transport.receive()
        if data is None:
            control.close(CloseReason.TRANSPORT_CLOSED)
            return
        # While a record is being handled (waiting for an invocation slot, or for
        # room in an upload stream) the client's pings go unread: that is our
        # back-pressure, not the client's silence (ASP.NET stops the timer too).
        # So the silence is counted from the end of the handling: one clock
        # read per record, below.
        control.dispatching = True
        try:
            await session.receive(data)
        finally:
            control.dispatching = False
            control.last_receive = control.clock.current_time()


async def _writer(
    transport: Transport,
    outbox: trio.MemoryReceiveChannel[bytes],
    control: Control,
    options: SupervisorOptions,
) -> None:
    admit = getattr(transport, "admit", None)
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
        size = len(batch[0])
        while size < WRITE_BATCH_BYTES:
            try:
                record = outbox.receive_nowait()
            except trio.WouldBlock:
                break
            batch.append(record)
            size += len(record)
        if admit is not None:
            while True:
                count = await admit(batch)
                if count >= len(batch):
                    break
                if not await _write(transport, batch[:count], control, options):
                    return
                del batch[:count]
        if not await _write(transport, batch, control, options):
            return
        batch = []
        if size >= WRITE_BATCH_BYTES:
            # More may wait: the next batch after the other tasks have run. A
            # kernel that takes everything at once never makes a send wait, so
            # a full outbox would otherwise go out in one step of many ms
            # (joined, framed and copied), delaying every other connection.
            await trio.lowlevel.cancel_shielded_checkpoint()


async def _write(
    transport: Transport, batch: list[bytes], control: Control, options: SupervisorOptions
) -> bool:
    """One batch to the transport; False when that ended the connection."""
    # Shielded so a cancellation never leaves half a frame on the wire;
    # bounded so a client that stopped reading cannot hold us forever.
    # One scope does both (a shield keeps its own deadline): this runs once
    # per batch on the hottest path there is.
    with trio.CancelScope(
        shield=True, deadline=trio.current_time() + options.send_timeout
    ) as timeout:
        try:
            await transport.send(batch)
        except _TRANSPORT_GONE:
            control.close(CloseReason.TRANSPORT_CLOSED)
            return False
    if timeout.cancelled_caught:
        control.close(CloseReason.SLOW_CONSUMER, "transport send timed out")
        return False
    control.last_send = trio.current_time()
    control._sent(sum(map(len, batch)))
    return True


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
            # Paused while the reader handles a record and while the transport
            # is gone and a resume may come (stateful reconnect).
            busy = control.dispatching or control.detached
            due = (now if busy else control.last_receive) + options.client_timeout
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
        except _TRANSPORT_GONE:
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
                except _TRANSPORT_GONE:
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
