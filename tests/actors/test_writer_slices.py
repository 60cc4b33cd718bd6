"""The connection's writer hands a full outbox to its transport in bounded slices,
letting other tasks run between them: a transport that takes everything at once
(a kernel socket buffer of megabytes) never makes the writer wait, and one step
that joined, framed and copied a whole outbox (1 MiB by default) held every other
connection back for milliseconds (the soak's ``pipeline-8k`` clients)."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from triohub.actors.supervisor import WRITE_BATCH_BYTES, Control, SupervisorOptions, _writer

RECORD = 8 * 1024


class EagerTransport:
    """Takes every batch at once without waiting; notes, per batch, its size and
    how often the other task had run when it came."""

    def __init__(self, runs: list[int]) -> None:
        self.wire: list[bytes] = []
        self.batches: list[tuple[int, int]] = []
        self._runs = runs

    async def send(self, chunks: Sequence[bytes]) -> None:
        self.batches.append((sum(map(len, chunks)), self._runs[0]))
        self.wire.extend(chunks)
        await trio.lowlevel.checkpoint_if_cancelled()

    async def receive(self) -> bytes | None:
        await trio.sleep_forever()
        return None  # pragma: no cover

    async def aclose(self) -> None:
        pass


async def test_a_full_outbox_goes_out_in_slices_between_other_tasks() -> None:
    count = 4 * WRITE_BATCH_BYTES // RECORD + 3
    options = SupervisorOptions(outbox_size=count, outbox_max_bytes=count * RECORD)
    send, receive = trio.open_memory_channel[bytes](count)
    runs = [0]
    transport = EagerTransport(runs)
    records = [b"%08d" % index + b"x" * (RECORD - 8) for index in range(count)]

    async def other_connection() -> None:
        while True:
            runs[0] += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        control = Control("c", nursery, send, options)
        for record in records:  # queued before the writer starts: one full outbox
            control.send_nowait(record)
        nursery.start_soon(other_connection)
        nursery.start_soon(_writer, transport, receive, control, options)
        with trio.fail_after(5):
            while len(transport.wire) < count:
                await trio.lowlevel.checkpoint()
        nursery.cancel_scope.cancel()

    assert transport.wire == records  # all of them, in order
    sizes = [size for size, _ in transport.batches]
    assert max(sizes) <= WRITE_BATCH_BYTES + RECORD, sizes
    assert len(sizes) >= 5, sizes
    # Each slice goes in a scheduler batch of its own, so the other task runs in
    # the batch between any two of them (where in a batch a task runs varies).
    seen = [ran for _, ran in transport.batches]
    assert all(seen[index + 2] > seen[index] for index in range(len(seen) - 2)), (
        f"the other task did not run between slices: {transport.batches}"
    )
    assert control.queued_bytes == 0
