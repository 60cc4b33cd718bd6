"""When a reader that keeps finding data waiting lets the others run.

A reader that reads its socket directly (``native_ws``, the hypercorn host's
read loop) does not pass through the scheduler when the kernel already holds
bytes, which is what makes it cheap. But a client that keeps its socket
readable (a flood of small messages, pings, empty fragments, one big message
arriving at full speed) would then keep the event loop to itself, and every
other connection's echo would wait behind it. ``ReadPacer`` is the one rule
both servers follow: a cancellation point for every unit handed on, and a real
yield once ``YIELD_EVERY`` units or ``YIELD_BYTES`` bytes have gone without one.
"""

from __future__ import annotations

import socket

import trio

__all__ = ["YIELD_BYTES", "YIELD_EVERY", "ReadPacer"]

YIELD_EVERY = 32
"""Units (messages, control frames, reads) handed on without a scheduler yield
before the reader yields."""
YIELD_BYTES = 64 * 1024
"""Bytes handed on without a scheduler yield before the reader yields: 32
messages of 8 KB each would be 256 KB to parse and dispatch in one step, and
one read of the kernel's buffer already takes 64 KB."""


class ReadPacer:
    """Counts what a reader hands on between two scheduler yields.

    Args:
        every: units handed on before a real yield.
        max_bytes: bytes handed on before a real yield.
    """

    __slots__ = ("_bytes", "_count", "_every", "_max_bytes")

    def __init__(self, every: int = YIELD_EVERY, max_bytes: int = YIELD_BYTES) -> None:
        self._every = every
        self._max_bytes = max_bytes
        self._count = 0
        self._bytes = 0

    async def pace(self, size: int = 0) -> None:
        """Before handing on one unit of ``size`` bytes that did not wait: a
        cancellation point, and a real yield when the run is long enough."""
        self._count += 1
        self._bytes += size
        if self._count >= self._every or self._bytes >= self._max_bytes:
            self._count = self._bytes = 0
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()

    def waited(self) -> None:
        """The reader waited for the kernel (the others ran): a new run begins."""
        self._count = self._bytes = 0

    async def wait_readable(self, sock: socket.socket) -> None:
        """Wait until ``sock`` is readable, the one way both servers' readers
        wait: the others run meanwhile, so a new run begins."""
        self.waited()
        await trio.lowlevel.wait_readable(sock)

    def yield_next(self) -> None:
        """Make the next ``pace`` a real yield (e.g. after a read that completed
        no message: part of a big one, or a run of empty fragments)."""
        self._count = self._every
