"""One WebSocket on a non-blocking socket: triohub's own, lean transport.

Three things make it cheaper per message than a general WebSocket library:

* ``receive`` reads in the connection's reader task itself (no reader task of
  the library's own, no channel between them) and returns a buffered message
  without a trip through the scheduler (it yields as ``pacing.ReadPacer``
  says, so a flooding client cannot starve anyone);
* ``send_nowait`` writes a record straight to the kernel when nothing is
  queued, so a call's completion or a broadcast delivery reaches the socket
  without waking the connection's writer task; what the kernel does not take
  at once stays in the transport, which asks for a flush (``attach``);
* a broadcast frames once: the frame of the last payload sent is cached, and
  a fan-out hands every recipient the same bytes object.

All writes go through one buffer of whole frames, so a pong or the close
frame never lands inside another frame.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Callable, Sequence

import trio

from ..protocol import HubProtocol, TransferFormat, TransportType
from ..protocol.websocket import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    ControlFrame,
    FrameCache,
    FrameDecoder,
    Message,
    WebSocketError,
    close_frame,
    encode_frame,
    parse_close,
)
from .pacing import ReadPacer

__all__ = ["FrameCache", "NativeWebSocketTransport"]

log = logging.getLogger("triohub.transports")

_RECEIVE_SIZE = 65536
_PONG_BACKLOG = 64 * 1024
"""Unsent bytes beyond which pings go unanswered (the client is not reading)."""
_CLOSE_DRAIN = 1.0
"""Seconds to wait for the client's close frame / EOF after ours."""


class NativeWebSocketTransport:
    """A hub transport over one accepted, upgraded, non-blocking socket.

    Args:
        sock: the connected socket (non-blocking); the transport closes it.
        initial: bytes read after the upgrade request (the first frames).
        max_message_size: the largest message accepted (close 1009 beyond).
        frames: the server's frame cache (default: one of its own).
    """

    name = TransportType.WEBSOCKETS.value
    """The transport's name in log lines."""

    def __init__(
        self,
        sock: socket.socket,
        initial: bytes = b"",
        max_message_size: int | None = None,
        *,
        frames: FrameCache | None = None,
    ) -> None:
        self._sock = sock
        self._frames = frames if frames is not None else FrameCache()
        self._decoder = FrameDecoder(max_message_size)
        self._events: deque[Message | ControlFrame] = deque()
        self._opcode = TEXT
        self._out = bytearray()
        """Framed bytes the kernel has not taken yet (whole frames appended)."""
        self._flushing = False
        self._waker: Callable[[], None] | None = None
        self._eof = False
        self._broken = False
        self._close_sent = False
        self._closed = False
        self._pacer = ReadPacer()
        """A cancellation point for every frame and every read that did not
        wait, and a real yield now and then (``pacing``)."""
        self._drained = False
        """The last read returned less than it asked for (the kernel's queue was emptied)."""
        self.close_code: int | None = None
        """The code of the client's close frame, once received."""
        if initial:
            self._feed(initial)

    # -- set-up ------------------------------------------------------------------

    def use_protocol(self, protocol: HubProtocol) -> None:
        self._opcode = BINARY if protocol.transfer_format is TransferFormat.BINARY else TEXT

    def attach(self, waker: Callable[[], None]) -> None:
        """``waker`` makes the connection's writer call ``send`` (to flush)."""
        self._waker = waker

    # -- reading -----------------------------------------------------------------

    async def receive(self) -> bytes | None:
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, Message):
                    await self._pacer.pace(len(event.payload))
                    return event.payload
                await self._pacer.pace()
                if self._control(event):
                    return None
            if self._eof or self._closed:
                await trio.lowlevel.checkpoint()
                return None
            if self._drained:
                # The last read took less than it asked for: the kernel had no
                # more, so wait before asking again (a request-response client
                # sends nothing until answered, and a recv now would cost a
                # syscall and a BlockingIOError per message). The wait is the
                # checkpoint and starts a new run, so no pace before it.
                self._drained = False
                await self._pacer.wait_readable(self._sock)
            else:
                await self._pacer.pace()
            try:
                data = self._sock.recv(_RECEIVE_SIZE)
            except BlockingIOError:
                await self._pacer.wait_readable(self._sock)
                continue
            except OSError:
                self._eof = self._broken = True
                continue
            if not data:
                self._eof = True
                continue
            self._drained = len(data) < _RECEIVE_SIZE
            self._feed(data)
            if not self._events:
                # A read that completed nothing (part of a big message, or a
                # run of empty fragments): the next pace is a real yield.
                self._pacer.yield_next()

    def _feed(self, data: bytes) -> None:
        try:
            self._events.extend(self._decoder.feed(data))
        except WebSocketError as error:
            log.info("closing a WebSocket with %d: %s", error.code, error.reason)
            self._send_close(error.code)
            self._eof = True

    def _control(self, frame: ControlFrame) -> bool:
        """Handle a ping, pong or close; ``True`` when the client closed."""
        if frame.opcode == PING:
            # A client that pings without reading must not grow our buffer:
            # while earlier bytes wait, pongs are dropped (RFC 6455 5.5.3 lets
            # an endpoint answer only the latest ping).
            if len(self._out) < _PONG_BACKLOG:
                self._queue(encode_frame(PONG, frame.payload))
            return False
        if frame.opcode == CLOSE:
            try:
                code, _ = parse_close(frame.payload)
                self.close_code = code
                # Echo the code back (RFC 6455 5.5.1); 1005 is never sent.
                self._send_close(1000 if code == 1005 else code)
            except WebSocketError as error:
                log.info("closing a WebSocket with %d: %s", error.code, error.reason)
                self._send_close(error.code)
            self._eof = True
            return True
        return False  # an unsolicited pong

    # -- writing -----------------------------------------------------------------

    def send_nowait(self, data: bytes) -> bool:
        """Write one record now if nothing is queued ahead of it.

        ``True``: taken (written, or its rest kept for the next flush, which the
        transport asked for through the waker); ``False``: not taken, queue it
        for ``send``.
        """
        if self._out or self._flushing or self._close_sent:
            return False
        self._queue(self._frames.frame(self._opcode, data))
        return True

    async def send(self, chunks: Sequence[bytes]) -> None:
        """Frame ``chunks`` (whole records) as one message and flush everything."""
        if self._close_sent or self._broken:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("the WebSocket is closing")
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if data:
            self._out += self._frames.frame(self._opcode, data)
        await self._flush()

    def _queue(self, frame: bytes) -> None:
        """Append a whole frame; write what the kernel takes now; ask for a
        flush of the rest."""
        if not self._out and not self._flushing and not self._broken:
            try:
                sent = self._sock.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._broken = True
                sent = 0
            if sent == len(frame):
                return
            frame = frame[sent:]
        self._out += frame
        if not self._flushing and self._waker is not None:
            self._waker()

    async def _flush(self) -> None:
        if self._flushing:
            raise trio.BusyResourceError("another task is flushing this WebSocket")
        self._flushing = True
        try:
            while self._out:
                if self._broken:
                    raise trio.BrokenResourceError("the WebSocket connection is broken")
                try:
                    sent = self._sock.send(self._out)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(self._sock)
                    continue
                except OSError as error:
                    self._broken = True
                    raise trio.BrokenResourceError(f"WebSocket write failed: {error}") from error
                del self._out[:sent]
        finally:
            self._flushing = False
        await trio.lowlevel.checkpoint_if_cancelled()

    def _send_close(self, code: int) -> None:
        if not self._close_sent:
            self._close_sent = True
            self._queue(close_frame(code))

    # -- closing -----------------------------------------------------------------

    async def aclose(self) -> None:
        """Send a close frame (1000) if none went yet, flush, wait briefly for
        the client's close, close the socket. Idempotent."""
        if self._closed:
            return
        try:
            if not self._broken:
                self._send_close(1000)
                if not self._flushing:
                    await self._flush()
                self._sock.shutdown(socket.SHUT_WR)
                with trio.move_on_after(_CLOSE_DRAIN):
                    await self._drain()
        except (trio.BrokenResourceError, trio.BusyResourceError, OSError):
            pass
        finally:
            self._closed = True
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()

    async def _drain(self) -> None:
        """Read and drop until the client closes its side."""
        while not self._eof:
            try:
                if not self._sock.recv(_RECEIVE_SIZE):
                    return
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._sock)
