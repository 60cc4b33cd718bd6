"""What one connection is made of, as the engine's session sees it: why it
closes (``CloseReason``, ``CloseConnection``), its timers and limits
(``SupervisorOptions``), and ``Control``, what a session may do to it (queue
records, close it). ``supervisor`` runs connections with these."""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs
import trio

__all__ = ["CloseConnection", "CloseReason", "Control", "SupervisorOptions"]


_DIRECT_STREAK = 16
"""Records ``Control.send`` may hand straight to an idle writer in a row before
it yields to the scheduler once."""


class CloseReason(enum.Enum):
    """Why a connection ended; the session maps it to a close record.

    A close may carry a detail (``Control.close(reason, detail)``): always
    logged; for the reasons whose record leaves the words to the closer (an
    abort, the refusal limit) it is also the record's error, told to the client.
    """

    CLIENT_CLOSED = "client closed"
    TRANSPORT_CLOSED = "transport closed"
    ABORTED = "aborted by the server"
    PROTOCOL_ERROR = "protocol error"
    CLIENT_TIMEOUT = "client timeout"
    HANDSHAKE_FAILED = "handshake failed"
    HANDSHAKE_TIMEOUT = "handshake timeout"
    CONNECT_FAILED = "connect handler failed"
    EXPIRED = "authentication expired"
    REVOKED = "authentication revoked"
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
        self.clock = trio.lowlevel.current_clock()
        """The run's clock (``trio.current_time()`` without its two wrappers:
        read twice per call, by the reader and for the answer)."""
        self.last_receive = self.clock.current_time()
        self.last_send = self.last_receive
        self.dispatching = False
        """The reader is handling a record (the client timeout does not run)."""
        self.detached = False
        """The transport is gone and a resume may replace it (stateful reconnect;
        the client timeout does not run)."""
        self.writer_waiting = False
        """The writer is parked on an empty outbox (see ``send``)."""
        self._direct = direct
        self._activity = trio.Event()
        self.queued_bytes = 0
        """Bytes in the outbox and in the writer's hands: added here, subtracted
        by the writer once a batch is written."""
        self._max_bytes = options.outbox_max_bytes
        self._room: trio.Event | None = None
        self._streak = 0
        """Records ``send`` handed on without a yield (see ``_DIRECT_STREAK``)."""

    async def send(self, data: bytes) -> None:
        """Queue one encoded record for the writer, waiting for room (records
        and bytes).

        When the writer is parked on an empty outbox, the record is handed to
        it without a yield to the scheduler (the caller still raises
        ``Cancelled`` if it is cancelled): the usual case of a call's
        Completion, where that yield costs as much as the rest of queueing it
        (benchmarks/); a run of such records still yields once every
        ``_DIRECT_STREAK``. Otherwise this yields, so a fast stream still lets the
        writer and everyone else run between its items.
        """
        try:
            if self.writer_waiting:
                # Fairness: the direct path never blocks while the kernel takes
                # the bytes, so a stream with no pause of its own (``Counter(n,
                # 0)`` to a socket buffer of megabytes) would keep the event loop
                # for as long as the buffer lasts (half a second, measured in the
                # soak). A real yield every ``_DIRECT_STREAK`` records bounds that.
                self._streak += 1
                if self._streak >= _DIRECT_STREAK:
                    self._streak = 0
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.lowlevel.checkpoint_if_cancelled()
                if self.writer_waiting:  # still: the yield may have changed it
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
                self.last_send = self.clock.current_time()
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
