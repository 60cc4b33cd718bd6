"""The one pacing rule of the readers that read their sockets directly
(``pacing.ReadPacer``): a reader that keeps finding data waiting still lets the
other tasks run, by units and by bytes; on hypercorn's read loop too, on a real
socket."""

from __future__ import annotations

import socket

import trio
from hypercorn.config import Config
from hypercorn.trio.tcp_server import MAX_RECV
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState

from triohub.transports.hypercorn import _Connection
from triohub.transports.pacing import YIELD_BYTES, YIELD_EVERY, ReadPacer

from .support import Watch


class Steps(trio.abc.Instrument):
    """Counts the steps of one task that ended: its real yields to the scheduler."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.ended = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.ended += 1


async def yields(pacer: ReadPacer, units: int, size: int) -> int:
    """How many real yields ``units`` paces of ``size`` bytes made."""
    steps = Steps(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(steps)
    try:
        for _ in range(units):
            await pacer.pace(size)
    finally:
        trio.lowlevel.remove_instrument(steps)
    return steps.ended


async def test_small_units_yield_every_yield_every() -> None:
    assert await yields(ReadPacer(), 10 * YIELD_EVERY, 10) == 10
    assert await yields(ReadPacer(), YIELD_EVERY - 1, 10) == 0


async def test_big_units_yield_by_bytes() -> None:
    size = 8 * 1024
    assert await yields(ReadPacer(), 10 * (YIELD_BYTES // size), size) == 10
    # A unit as big as the byte bound yields by itself.
    assert await yields(ReadPacer(), 10, YIELD_BYTES) == 10


async def test_a_wait_starts_a_new_run_and_yield_next_forces_a_yield() -> None:
    pacer = ReadPacer(every=4, max_bytes=1000)
    assert await yields(pacer, 3, 100) == 0
    pacer.waited()  # 3 units and 300 bytes forgotten
    assert await yields(pacer, 3, 100) == 0
    assert await yields(pacer, 1, 0) == 1
    pacer.yield_next()
    assert await yields(pacer, 1, 0) == 1
    assert await yields(pacer, 4, 250) == 1  # 1000 bytes in 4 units


async def test_hypercorn_read_loop_yields_after_every_full_read() -> None:
    # What a client that keeps the socket full (one big message at full
    # speed) costs per step: a run of reads of 64 KB each used to go 16 reads
    # (1 MB to parse) without a yield.
    server, peer = socket.socketpair()
    server.setblocking(False)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    peer.setblocking(False)
    queued = 0
    chunk = b"x" * MAX_RECV
    try:
        while queued < 16 * MAX_RECV:
            queued += peer.send(chunk)
    except BlockingIOError:
        pass
    assert queued >= 4 * MAX_RECV, f"only {queued} bytes fit in the socket pair"
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(server))
    connection = _Connection(
        None,
        Config(),
        WorkerContext(None),
        ConnectionState({}),
        stream,
        write_timeout=1.0,
        peer="test",
        sock=server,
    )
    watch = Watch()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch.run)
            await trio.lowlevel.checkpoint()
            while watch.done < queued:
                watch.done += len(await connection._receive(server))
            nursery.cancel_scope.cancel()
    finally:
        server.close()
        peer.close()
    # At most one full read per step (trio may run the watch and the reader
    # in either order within a batch: two steps between the watch's runs).
    assert 0 < watch.worst <= 2 * max(MAX_RECV, YIELD_BYTES), f"{watch.worst} bytes, {queued=}"
