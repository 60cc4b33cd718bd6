"""Stateful reconnect, the I/O side: one resumable connection over the WebSockets
that carry it in turn.

``ResumableLink`` is the hub connection's transport for a connection whose
negotiate granted ``useStatefulReconnect``. It holds the current WebSocket and,
once the version 2 handshake turned the feature on (``begin``), the connection's
``ResumableStream``:

* the single writer's records go through ``admit`` (waits while the replay
  buffer is full) and ``send`` (numbers and keeps them, writes them while a
  WebSocket is there); Acks go out from ``run_acks`` about once a second, also
  while the writer waits for room, so a full buffer never deadlocks;
* the reader's messages go through ``received`` (the session calls it);
* a WebSocket that ends without a Close record detaches: ``receive`` waits up
  to the disconnect timeout for ``resume`` (a new WebSocket request with the
  same connection token, checked by the endpoint), and only then reports the
  transport gone, which closes the hub connection the usual way;
* ``resume`` writes the Sequence and every unacknowledged record on the new
  WebSocket first, then makes it current.

Without ``begin`` (a version 1 handshake) it only forwards to the WebSocket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ..protocol import Ack, HubMessage, HubProtocol
from ..protocol.resumable import SEQUENCED_TYPES, ResumableStream

if TYPE_CHECKING:
    from .actions import WebSocketTransport

__all__ = ["DirectResumableLink", "ResumableLink", "resumable_link"]

log = logging.getLogger("triohub.transports")

_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class ResumableLink:
    """The transport of one resumable hub connection (see the module docstring).

    Args:
        transport: the WebSocket the connection starts on.
        connection_id: for log lines.
        disconnect_timeout: seconds a detached connection waits for a resume.
        send_timeout: seconds one write (an Ack, a resume's replay) may take.
    """

    def __init__(
        self,
        transport: WebSocketTransport,
        *,
        connection_id: str,
        disconnect_timeout: float,
        send_timeout: float,
    ) -> None:
        self.name = getattr(transport, "name", type(transport).__name__)
        self._inner: WebSocketTransport | None = transport
        self._connection_id = connection_id
        self._disconnect_timeout = disconnect_timeout
        self._send_timeout = send_timeout
        self._protocol: HubProtocol | None = None
        self._stream: ResumableStream | None = None
        self._on_lost: Callable[[], None] = _nothing
        self._on_resumed: Callable[[float | None], None] = _nothing_resumed
        self._lock = trio.Lock()
        """Held while writing to the current WebSocket (writer, Acks, resume)."""
        self._changed = trio.Event()
        """Set (and replaced) whenever the current WebSocket changes or the link closes."""
        self._room = trio.Event()
        self._ack_wake = trio.Event()
        self._closed = False
        self._waker: Callable[[], None] | None = None
        self.resumes = 0
        """Resumes so far (for tests and logs)."""

    # -- set-up -----------------------------------------------------------------

    def use_protocol(self, protocol: HubProtocol) -> None:
        self._protocol = protocol
        if self._inner is not None:
            self._inner.use_protocol(protocol)

    def begin(
        self,
        stream: ResumableStream,
        *,
        on_lost: Callable[[], None],
        on_resumed: Callable[[float | None], None],
    ) -> None:
        """The handshake turned stateful reconnect on (after its reply went out).

        Args:
            on_lost: the WebSocket dropped; a resume may follow.
            on_resumed: a new WebSocket took over, with the fresh credential's
                deadline (``None``: none).
        """
        self._stream = stream
        self._on_lost = on_lost
        self._on_resumed = on_resumed

    @property
    def resumable(self) -> bool:
        """A new WebSocket may take over (the feature is on and the connection lives)."""
        return self._stream is not None and not self._closed

    @property
    def stream(self) -> ResumableStream | None:
        return self._stream

    @property
    def protocol(self) -> HubProtocol | None:
        """The hub protocol the handshake chose."""
        return self._protocol

    # -- reading ----------------------------------------------------------------

    async def receive(self) -> bytes | None:
        while True:
            inner = self._inner
            if inner is None:
                if not await self._wait_for_resume():
                    return None
                continue
            try:
                data = await inner.receive()
            except _GONE:
                data = None
            if inner is not self._inner:
                continue  # a resume replaced it: its late bytes are not ours
            if data is not None:
                return data
            if not self.resumable:
                return None
            self._lose(inner)
            with trio.move_on_after(self._send_timeout) as scope:
                scope.shield = True
                await inner.aclose()

    def received(self, message: HubMessage) -> bool:
        """Account for one message the session decoded; whether to dispatch it.

        Raises:
            RemoteProtocolError: a bad Ack or Sequence (``ResumableStream.receive``).
        """
        stream = self._stream
        if stream is None:
            return True
        dispatch = stream.receive(message, trio.current_time())
        if isinstance(message, Ack) and not stream.full:
            self._room.set()
        if stream.ack_deadline is not None:
            self._ack_wake.set()
        return dispatch

    def _lose(self, inner: WebSocketTransport) -> None:
        if self._inner is not inner:
            return
        self._inner = None
        if self._stream is not None:
            self._stream.detach()
        log.info(
            "connection %s: the WebSocket dropped; kept %g s for a resume",
            self._connection_id,
            self._disconnect_timeout,
        )
        self._on_lost()
        self._notify()

    async def _wait_for_resume(self) -> bool:
        with trio.move_on_after(self._disconnect_timeout):
            while self._inner is None and not self._closed:
                await self._changed.wait()
            return self._inner is not None
        log.info(
            "connection %s: not resumed within %g s",
            self._connection_id,
            self._disconnect_timeout,
        )
        self._closed = True
        self._notify()
        return False

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- writing ----------------------------------------------------------------

    async def admit(self, chunks: Sequence[bytes]) -> int:
        """``PacedTransport.admit``: wait while the replay buffer is full."""
        stream = self._stream
        if stream is None:
            return len(chunks)
        while True:
            count = stream.admissible(chunks)
            if count:
                return count
            if self._room.is_set():
                self._room = trio.Event()
            else:
                await self._room.wait()

    async def send(self, chunks: Sequence[bytes]) -> None:
        stream = self._stream
        if stream is None:
            inner = self._inner
            if inner is None:
                raise trio.ClosedResourceError("the WebSocket is gone")
            await inner.send(chunks)
            return
        async with self._lock:
            out: list[bytes] = []
            flush = False
            for frame in chunks:
                if not frame:
                    flush = True  # a DirectTransport's wake-up: flush what it kept
                    continue
                kind = stream.record_type(frame)
                if kind in SEQUENCED_TYPES and stream.full:
                    # Only the close's final flush gets here (the writer admits
                    # first): the connection ends, nothing will be resent.
                    if stream.attached:
                        out.append(frame)
                    continue
                written = stream.send(kind, frame)
                if written is not None:
                    out.append(written)
            ack = stream.ack(trio.current_time())
            if ack is not None:
                out.append(ack)
            await self._write(out or ([b""] if flush else out))

    async def _write(self, frames: list[bytes]) -> None:
        """Write to the current WebSocket (the lock held); a failure detaches."""
        inner = self._inner
        if inner is None or not frames:
            return
        try:
            await inner.send(frames)
        except _GONE:
            # The reader sees the end too (closed here) and detaches.
            if self._stream is not None:
                self._stream.detach()
            with trio.move_on_after(self._send_timeout):
                await inner.aclose()

    async def run_acks(self) -> None:
        """Write an Ack when one is due (in the connection's nursery)."""
        stream = self._stream
        assert stream is not None
        while True:
            deadline = stream.ack_deadline
            if deadline is None:
                await self._ack_wake.wait()
                self._ack_wake = trio.Event()
                continue
            await trio.sleep_until(deadline)
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self._send_timeout):
                async with self._lock:
                    frame = stream.ack(trio.current_time())
                    if frame is not None:
                        await self._write([frame])
            if stream.ack_deadline == deadline:
                # Not written (detached): try again after the next resume.
                await self._changed.wait()

    # -- resuming ---------------------------------------------------------------

    async def resume(self, transport: WebSocketTransport, deadline: float | None) -> None:
        """A new WebSocket for this connection (authenticated, same user): write
        the Sequence and the unacknowledged records on it, make it current, and
        return once it is no longer current or the connection ended."""
        stream = self._stream
        if stream is None or self._closed:
            return
        assert self._protocol is not None
        transport.use_protocol(self._protocol)
        attach = getattr(transport, "attach", None)
        if attach is not None and self._waker is not None:
            attach(self._waker)
        async with self._lock:
            old = self._inner
            self._inner = transport
            frames = stream.resume()
            self.resumes += 1
            log.info(
                "connection %s resumed: %d record(s) resent",
                self._connection_id,
                len(frames) - 1,
            )
            self._on_resumed(deadline)
            self._notify()
            with trio.move_on_after(self._send_timeout):
                await self._write(frames)
        if old is not None:
            with trio.move_on_after(self._send_timeout):
                await old.aclose()  # its reader's receive ends; the bytes are not ours
        self._room.set()  # admit looks again (an Ack may have come meanwhile)
        while self._inner is transport and not self._closed:
            await self._changed.wait()

    async def aclose(self) -> None:
        """The hub connection ended: close the current WebSocket; no more resumes."""
        self._closed = True
        self._notify()
        inner = self._inner
        if inner is not None:
            await inner.aclose()


def _nothing() -> None:
    pass


def _nothing_resumed(deadline: float | None) -> None:
    pass


class DirectResumableLink(ResumableLink):
    """A ``ResumableLink`` over a ``DirectTransport`` (triohub's own server): a
    record the router hands over while the writer is idle goes straight to the
    socket, numbered on the way, as it would without stateful reconnect."""

    def attach(self, waker: Callable[[], None]) -> None:
        self._waker = waker
        inner: Any = self._inner
        if inner is not None:
            inner.attach(waker)

    def send_nowait(self, data: bytes) -> bool:
        """``DirectTransport.send_nowait``; ``False`` (queue it for the writer)
        while detached, while the buffer is full, or while a write is under way."""
        inner: Any = self._inner
        if inner is None or self._lock.locked():
            return False
        stream = self._stream
        if stream is None:
            return bool(inner.send_nowait(data))
        if not stream.attached:
            return False
        kind = stream.record_type(data)
        if kind in SEQUENCED_TYPES and stream.full:
            return False
        if not inner.send_nowait(data):
            return False
        stream.send(kind, data)
        return True


def resumable_link(
    transport: WebSocketTransport,
    *,
    connection_id: str,
    disconnect_timeout: float,
    send_timeout: float,
) -> ResumableLink:
    """The link for ``transport``: direct writes when the transport has them."""
    kind = DirectResumableLink if hasattr(transport, "send_nowait") else ResumableLink
    return kind(
        transport,
        connection_id=connection_id,
        disconnect_timeout=disconnect_timeout,
        send_timeout=send_timeout,
    )
