"""The supervisor's direct-write path (``Control.send_nowait`` to a transport that
can write without waiting): a record written straight to the transport must never
overtake records still waiting for the connection's writer."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import trio
import trio.testing

from triohub.actors.supervisor import Control, SupervisorOptions, _writer


class DirectTransport:
    """Records every write in order; its first ``send`` waits for ``gate``, and
    ``send_nowait`` refuses while ``full`` (a kernel buffer that is full)."""

    def __init__(self) -> None:
        self.wire: list[bytes] = []
        self.gate = trio.Event()
        self.full = False
        self._gated = False

    def send_nowait(self, data: bytes) -> bool:
        if self.full:
            return False
        self.wire.append(data)
        return True

    def attach(self, waker: Callable[[], None]) -> None:
        pass

    async def send(self, chunks: Sequence[bytes]) -> None:
        if not self._gated:
            self._gated = True
            await self.gate.wait()
        else:
            await trio.lowlevel.checkpoint()
        self.wire.extend(chunk for chunk in chunks if chunk)

    async def receive(self) -> bytes | None:
        await trio.sleep_forever()
        return None  # pragma: no cover

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("yields", range(6))
async def test_a_direct_write_never_overtakes_queued_records(yields: int) -> None:
    """The writer flushes a batch that blocked; records queued meanwhile wait in
    the outbox. Whatever moment a later record arrives at (``yields`` scheduler
    turns after the flush unblocks), it goes out after them."""
    options = SupervisorOptions()
    send, receive = trio.open_memory_channel[bytes](16)
    transport = DirectTransport()
    async with trio.open_nursery() as nursery:
        control = Control("c", nursery, send, options, transport.send_nowait)
        nursery.start_soon(_writer, transport, receive, control, options)
        await trio.testing.wait_all_tasks_blocked()
        control.send_nowait(b"1")  # the writer is idle: straight to the transport
        transport.full = True
        control.send_nowait(b"2")  # refused: queued, the writer flushes it (and blocks)
        await trio.testing.wait_all_tasks_blocked()
        control.send_nowait(b"3")  # the writer is busy: queued behind it
        control.send_nowait(b"4")
        transport.full = False
        transport.gate.set()
        for _ in range(yields):
            await trio.lowlevel.checkpoint()
        control.send_nowait(b"5")
        await trio.testing.wait_all_tasks_blocked()
        control.send_nowait(b"6")
        nursery.cancel_scope.cancel()
    assert transport.wire == [b"1", b"2", b"3", b"4", b"5", b"6"]


async def test_a_run_of_direct_writes_lets_other_tasks_run() -> None:
    """A stream with no pause of its own, to a transport that takes every record at
    once (a socket buffer of megabytes), must not keep the scheduler to itself: the
    soak's ``Counter(10_000_000, 0)`` stalled every other connection for half a
    second. Records still go out in order, all of them directly."""
    options = SupervisorOptions()
    send, receive = trio.open_memory_channel[bytes](16)
    transport = DirectTransport()
    others = 0

    async def other_connection() -> None:
        nonlocal others
        while True:
            others += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        control = Control("c", nursery, send, options, transport.send_nowait)
        nursery.start_soon(_writer, transport, receive, control, options)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(other_connection)
        await trio.lowlevel.checkpoint()
        before = others
        for index in range(1600):
            await control.send(b"%d" % index)
        ran = others - before
        nursery.cancel_scope.cancel()
    assert transport.wire == [b"%d" % index for index in range(1600)]
    assert ran >= 1600 // 16 - 1, f"other tasks ran {ran} times during 1600 sends"
