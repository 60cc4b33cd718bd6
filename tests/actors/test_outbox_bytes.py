"""Outboxes are bounded in bytes as well as in records: the router's sends count a
connection past ``outbox_max_bytes`` as a slow consumer, the connection's own
sends wait for the writer to give bytes back."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from triohub.actors.supervisor import CloseReason, Control, SupervisorOptions, _writer


class GatedTransport:
    """Every ``send`` waits for ``gate``; what it wrote is in ``wire``."""

    def __init__(self) -> None:
        self.wire: list[bytes] = []
        self.gate = trio.Event()

    async def send(self, chunks: Sequence[bytes]) -> None:
        await self.gate.wait()
        self.wire.extend(chunk for chunk in chunks if chunk)

    async def receive(self) -> bytes | None:
        await trio.sleep_forever()
        return None  # pragma: no cover

    async def aclose(self) -> None:
        pass


def control_in(
    nursery: trio.Nursery, *, max_bytes: int, records: int = 1000
) -> tuple[Control, trio.MemoryReceiveChannel[bytes]]:
    """A connection's control with no writer: its outbox is never drained."""
    options = SupervisorOptions(outbox_size=records, outbox_max_bytes=max_bytes)
    send, receive = trio.open_memory_channel[bytes](records)
    return Control("c", nursery, send, options), receive


async def test_the_byte_limit_refuses_long_before_the_record_limit(nursery: trio.Nursery) -> None:
    control, _outbox = control_in(nursery, max_bytes=100, records=1000)
    control.send_nowait(b"x" * 60)
    control.send_nowait(b"x" * 40)  # exactly at the limit
    with pytest.raises(trio.WouldBlock):
        control.send_nowait(b"x")
    assert control.queued_bytes == 100


async def test_one_record_larger_than_the_limit_still_reaches_an_empty_outbox(
    nursery: trio.Nursery,
) -> None:
    control, _outbox = control_in(nursery, max_bytes=100)
    control.send_nowait(b"x" * 500)
    with pytest.raises(trio.WouldBlock):
        control.send_nowait(b"y")
    assert control.queued_bytes == 500


async def test_the_writer_gives_bytes_back_and_wakes_a_waiting_sender(
    nursery: trio.Nursery,
) -> None:
    options = SupervisorOptions(outbox_size=1000, outbox_max_bytes=100)
    send, receive = trio.open_memory_channel[bytes](1000)
    transport = GatedTransport()
    control = Control("c", nursery, send, options)
    nursery.start_soon(_writer, transport, receive, control, options)
    await trio.testing.wait_all_tasks_blocked()

    sent: list[bytes] = []

    async def producer() -> None:
        for record in (b"a" * 80, b"b" * 80, b"c" * 80):
            await control.send(record)
            sent.append(record[:1])

    nursery.start_soon(producer)
    await trio.testing.wait_all_tasks_blocked()
    # "a" is in the writer's hands (still counted), "b" fits under the limit,
    # "c" waits: 160 bytes are out and unwritten.
    assert sent == [b"a", b"b"]
    assert control.queued_bytes == 160
    with pytest.raises(trio.WouldBlock):
        control.send_nowait(b"from the router")

    transport.gate.set()
    await trio.testing.wait_all_tasks_blocked()
    assert sent == [b"a", b"b", b"c"]
    assert transport.wire == [b"a" * 80, b"b" * 80, b"c" * 80]
    assert control.queued_bytes == 0


async def test_a_sender_waiting_for_room_is_released_when_the_connection_closes(
    nursery: trio.Nursery,
) -> None:
    """Client results send from another connection's task: closing must not
    leave it waiting for bytes that will never be written."""
    control, _outbox = control_in(nursery, max_bytes=10)
    control.send_nowait(b"x" * 10)
    done = trio.Event()

    async def outsider() -> None:
        await control.send(b"late")
        done.set()

    async with trio.open_nursery() as elsewhere:
        elsewhere.start_soon(outsider)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()
        control.close(CloseReason.ABORTED)
        await trio.testing.wait_all_tasks_blocked()
        assert done.is_set()
