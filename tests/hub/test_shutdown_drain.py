"""``HubServer.run``'s graceful stop drains: what runs when ``stop()`` comes may
finish within ``shutdown_grace`` and its caller gets the Completion; new calls
are refused meanwhile; then every connection gets the Close record that allows
reconnecting. Autojump clock: the waits are exact."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import trio
import trio.testing

from triohub import Hub, HubOptions, HubServer
from triohub.protocol import Close
from triohub.testing import HubTestClient, InvocationError, open_test_client

PATH = "/hubs/slow"
GRACE = 5.0


class SlowHub(Hub):
    async def work(self, seconds: float) -> str:
        await trio.sleep(seconds)
        return f"worked {seconds:g} s"

    async def ticks(self, count: int, seconds: float) -> AsyncIterator[int]:
        for tick in range(count):
            await trio.sleep(seconds)
            yield tick


async def start(nursery: trio.Nursery) -> HubServer:
    server = HubServer(options=HubOptions(max_parallel_invocations=4))
    server.map_hub(PATH, SlowHub)
    await nursery.start(functools.partial(server.run, shutdown_grace=GRACE))
    return server


async def closing(client: HubTestClient) -> Close | None:
    await client.closed.wait()
    return client.close_message


async def test_an_invocation_running_at_stop_gets_its_completion_then_the_close(
    autojump_clock: trio.abc.Clock, hang_guard: None
) -> None:
    results: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        server = await start(nursery)
        async with (
            open_test_client(server, PATH) as busy,
            open_test_client(server, PATH) as idle,
        ):

            async def call() -> None:
                results["busy"] = await busy.invoke("Work", 2)

            nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()
            stopping = trio.current_time()
            server.stop()
            await trio.testing.wait_all_tasks_blocked()
            # A new call during the drain is answered, with an error, at once.
            try:
                await idle.invoke("Work", 0)
            except InvocationError as error:
                results["new"] = str(error)
            assert trio.current_time() == stopping
            # Nobody was told to leave while the call still ran.
            assert busy.close_message is None
            assert idle.close_message is None
            await server.wait_stopped()
            assert trio.current_time() == stopping + 2  # the call, not the whole grace
            assert await closing(busy) == Close(allow_reconnect=True)
            assert await closing(idle) == Close(allow_reconnect=True)
    assert results == {
        "busy": "worked 2 s",
        "new": "Failed to invoke 'Work' because the server is shutting down.",
    }
    assert server.live_connections == 0


async def test_a_stream_running_at_stop_finishes_within_the_grace(
    autojump_clock: trio.abc.Clock, hang_guard: None
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start(nursery)
        async with open_test_client(server, PATH) as client:
            items = []
            async for tick in client.stream("Ticks", 4, 1):
                items.append(tick)
                if tick == 0:
                    stopping = trio.current_time()
                    server.stop()
            assert items == [0, 1, 2, 3]  # and its Completion ended the loop
            await server.wait_stopped()
            assert trio.current_time() == stopping + 3
            assert await closing(client) == Close(allow_reconnect=True)


async def test_work_longer_than_the_grace_is_cancelled_at_its_end(
    autojump_clock: trio.abc.Clock, hang_guard: None
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start(nursery)
        async with open_test_client(server, PATH) as client:
            answered = False

            async def call() -> None:
                nonlocal answered
                try:
                    await client.invoke("Work", 60)
                    answered = True
                except trio.EndOfChannel:
                    pass  # the connection closed without an answer

            nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()
            stopping = trio.current_time()
            server.stop()
            assert await closing(client) == Close(allow_reconnect=True)
            assert trio.current_time() == stopping + GRACE
            await server.wait_stopped()
            assert trio.current_time() == stopping + GRACE
        assert not answered


async def test_an_idle_server_stops_at_once(
    autojump_clock: trio.abc.Clock, hang_guard: None
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start(nursery)
        async with open_test_client(server, PATH) as client:
            assert await client.invoke("Work", 1) == "worked 1 s"
            stopping = trio.current_time()
            server.stop()
            await server.wait_stopped()
            assert trio.current_time() == stopping
            assert await closing(client) == Close(allow_reconnect=True)
