"""What one connection may hold on the server is bounded: outbox bytes, open
streams, pending client results, groups and group names. Refusals answer the
call; a client that keeps running into limits is closed, with the reason."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from hub_support import PATH, StartServer, open_raw_client

from actors.supervisor import CloseReason
from engine import Hub

KIB = 1024


class Tally:
    def __init__(self) -> None:
        self.echoes = 0


class LimitsHub(Hub):
    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    async def echo(self, value: Any) -> Any:
        self.tally.echoes += 1
        return value


def echo_record(invocation_id: int, size: int) -> bytes:
    payload = "x" * size
    return b'{"type":1,"invocationId":"%d","target":"Echo","arguments":["%s"]}\x1e' % (
        invocation_id,
        payload.encode(),
    )


# -- outbox bytes -------------------------------------------------------------------


async def test_large_broadcasts_to_a_client_that_stopped_reading_close_it_by_bytes(
    autojump_clock: trio.abc.Clock, start_server: StartServer
) -> None:
    """Twenty 64 KiB broadcasts are 20 records (far below ``outbox_size``) but
    1.25 MiB: past the default ``outbox_max_bytes``, a slow consumer. The same
    number of small ones is not."""
    server = await start_server(LimitsHub, factory=lambda: LimitsHub(Tally()))
    everyone = server.hub_context(PATH).clients.all
    # buffer=1: the unread handshake reply fills the pipe, the writer blocks.
    async with open_raw_client(server, buffer=1) as client:
        for n in range(20):
            await everyone.send("Receive", n, "x" * 100)
        await trio.testing.wait_all_tasks_blocked()
        assert (await server.stats(PATH)).slow_consumers == 0

        for n in range(20):
            await everyone.send("Receive", n, "x" * (64 * KIB))
        await trio.testing.wait_all_tasks_blocked()
        assert (await server.stats(PATH)).slow_consumers == 1
        await client.ended.wait()
    assert client.reason is CloseReason.SLOW_CONSUMER


async def test_pipelined_echoes_to_a_client_that_stopped_reading_wait_for_room(
    start_server: StartServer,
) -> None:
    """A client pipelines 8 KiB echoes and reads nothing: its own results wait
    for room in its outbox (1 MiB), so the server stops reading its records
    instead of piling up a result per record (back-pressure, as the reference's
    pipes do)."""
    tally = Tally()
    server = await start_server(LimitsHub, factory=lambda: LimitsHub(tally))
    async with open_raw_client(server, buffer=1) as client, trio.open_nursery() as nursery:

        async def pipeline() -> None:
            for n in range(400):
                await client.send(echo_record(n, 8 * KIB))

        nursery.start_soon(pipeline)
        await trio.testing.wait_all_tasks_blocked()
        # 1 MiB of ~8.1 KiB results, plus the one in the blocked write.
        assert 120 <= tally.echoes <= 130, tally.echoes
        nursery.cancel_scope.cancel()
