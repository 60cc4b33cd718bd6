"""Records written straight to the socket of a hypercorn WebSocket (the
``triohub.websocket.direct`` extension): whole, in order, also when the kernel
takes only part of one and the rest must go before anything else. Real
sockets, a real hypercorn server, trio-websocket as the client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

from triohub import Hub, HubServer
from triohub.transports.asgi import SignalRApp
from triohub.transports.hypercorn import serve_hypercorn

from .support import HANDSHAKE_OK, JSON_HANDSHAKE, invocation, records, stop_gracefully

BIG = 8 * 1024 * 1024
"""Larger than loopback's socket buffers: the kernel takes part of the record."""


class BigHub(Hub):
    async def big(self, size: int) -> str:
        return "x" * size

    async def both(self, size: int) -> None:
        # A big record and a small one, one after the other: the second waits
        # for the rest of the first.
        await self.clients.caller.send("Big", "y" * size)
        await self.clients.caller.send("Small", "after")


@pytest.fixture
async def base(nursery: trio.Nursery) -> AsyncIterator[str]:
    server = HubServer()
    server.map_hub("/hubs/big", BigHub)
    host, port = await nursery.start(serve_hypercorn, SignalRApp(server), "127.0.0.1", 0)
    try:
        yield f"ws://{host}:{port}/hubs/big"
    finally:
        await stop_gracefully(server)


async def _records(socket: object, count: int) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    while len(got) < count:
        message = await socket.get_message()  # type: ignore[attr-defined]
        assert isinstance(message, str)
        got.extend(orjson.loads(record[:-1]) for record in records(message.encode()))
    return got


async def test_a_record_larger_than_the_socket_buffer_arrives_whole_and_in_order(
    base: str,
) -> None:
    async with open_websocket_url(base, max_message_size=4 * BIG) as socket:
        await socket.send_message(JSON_HANDSHAKE.decode())
        assert await socket.get_message() == HANDSHAKE_OK.decode()
        # The client reads nothing for a moment: the server's write fills the
        # kernel's buffers and leaves a rest for the writer.
        await socket.send_message(invocation("Big", BIG, invocation_id="1").decode())
        await socket.send_message(invocation("Big", 3, invocation_id="2").decode())
        await trio.sleep(0.2)
        first, second = await _records(socket, 2)
        assert (first["invocationId"], len(str(first["result"]))) == ("1", BIG)
        assert (second["invocationId"], second["result"]) == ("2", "xxx")


async def test_a_record_sent_behind_a_partly_written_one_follows_it(base: str) -> None:
    async with open_websocket_url(base, max_message_size=4 * BIG) as socket:
        await socket.send_message(JSON_HANDSHAKE.decode())
        assert await socket.get_message() == HANDSHAKE_OK.decode()
        for round_ in range(3):
            await socket.send_message(invocation("Both", BIG, invocation_id=str(round_)).decode())
            await trio.sleep(0.1)
            got = await _records(socket, 3)
            assert [(r["type"], r.get("target")) for r in got] == [
                (1, "Big"),
                (1, "Small"),
                (3, None),
            ]
            assert got[0]["arguments"] == ["y" * BIG]
