"""``run_until_signalled`` in process: a real signal to this process, real sockets.

Every listener kind (hypercorn with the ASGI app, triohub's own server,
trio-websocket) gets its clients a Close record that allows reconnecting on
SIGTERM and on SIGINT, and is closed afterwards; the function returns the signal.
A second signal (which ends the process) is tested on a real process in
``test_demo_signals``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio

from demo.echo import EchoHub
from triohub import HubServer
from triohub.transports.asgi import SignalRApp
from triohub.transports.hypercorn import serve_hypercorn
from triohub.transports.lifecycle import run_until_signalled
from triohub.transports.native import serve_native
from triohub.transports.trio_websocket import serve_trio_websocket

from ..transports.native_wire import TEXT, Wire, invocation

HUB = "/hubs/echo"
CLOSE_RECONNECT = {"type": 7, "allowReconnect": True}
LIMIT = 10.0
"""Seconds any one step may take before the test fails (nothing here waits on a timer)."""

Listener = Callable[[HubServer], Callable[..., Awaitable[object]]]

LISTENERS: dict[str, Listener] = {
    "hypercorn": lambda server: partial(serve_hypercorn, SignalRApp(server), "127.0.0.1", 0),
    "native": lambda server: partial(serve_native, server, "127.0.0.1", 0),
    "trio-websocket": lambda server: partial(serve_trio_websocket, server, "127.0.0.1", 0),
}


def echo_server() -> HubServer:
    server = HubServer()
    server.map_hub(HUB, EchoHub)
    return server


class Running:
    """``run_until_signalled`` in a task of the test's nursery, with its outcome."""

    def __init__(self) -> None:
        self.returned: list[signal.Signals | None] = []
        self.done = trio.Event()

    async def run(
        self, server: HubServer, *serves: Any, task_status: trio.TaskStatus[list[Any]]
    ) -> None:
        try:
            self.returned.append(
                await run_until_signalled(server, *serves, grace=LIMIT, task_status=task_status)
            )
        finally:
            self.done.set()

    async def outcome(self) -> signal.Signals | None:
        with trio.fail_after(LIMIT):
            await self.done.wait()
        [returned] = self.returned
        return returned


async def start(
    nursery: trio.Nursery, server: HubServer, *serves: Any
) -> tuple[Running, list[Any]]:
    running = Running()
    addresses: list[Any] = await nursery.start(partial(running.run, server, *serves))
    return running, addresses


async def open_client(port: int) -> Wire:
    wire = await Wire.connect(port)
    await wire.hub_open(HUB)
    return wire


async def call(client: Wire, invocation_id: str, target: str, *arguments: Any) -> None:
    await client.send_frame(TEXT, invocation(invocation_id, target, *arguments))


async def hang_up(client: Wire) -> None:
    """Answer the server's close as a browser does (the server may be gone already)."""
    try:
        await client.close_handshake()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    await client.aclose()


async def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        await Wire.connect(port)


@pytest.mark.parametrize("kind", LISTENERS)
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_closes_every_connection_for_reconnecting(
    nursery: trio.Nursery, kind: str, number: signal.Signals
) -> None:
    server = echo_server()
    running, [(_, port)] = await start(nursery, server, LISTENERS[kind](server))
    clients = [await open_client(port) for _ in range(5)]
    # One of them is mid-conversation: it sent an invocation and has not read the answer.
    await call(clients[0], "1", "Echo", "hello")

    os.kill(os.getpid(), number)

    for index, client in enumerate(clients):
        records = [await client.record(LIMIT)]
        if index == 0 and records[0].get("type") == 3:
            records.append(await client.record(LIMIT))
        assert records[-1] == CLOSE_RECONNECT, f"client {index} got {records}"
        await hang_up(client)
    assert await running.outcome() == number
    assert not server.running
    await assert_refused(port)


@pytest.mark.parametrize("kind", LISTENERS)
async def test_a_stream_running_at_sigterm_finishes_before_the_close(
    nursery: trio.Nursery, kind: str
) -> None:
    """The drain: what runs when the signal comes gets the grace to finish (here a
    stream of five items, 0.2 s apart); a new call meanwhile is refused; then the
    Close that allows reconnecting."""
    server = echo_server()
    running, [(_, port)] = await start(nursery, server, LISTENERS[kind](server))
    streaming, other = await open_client(port), await open_client(port)
    await streaming.send_frame(
        TEXT, b'{"type":4,"invocationId":"s","target":"Counter","arguments":[5,200]}\x1e'
    )
    assert await streaming.record(LIMIT) == {"type": 2, "invocationId": "s", "item": 0}

    os.kill(os.getpid(), signal.SIGTERM)
    # Until the signal is handled and the drain has begun (no public event says
    # so: the application learns it from run_until_signalled's return).
    with trio.fail_after(LIMIT):
        while server.accepting:  # noqa: ASYNC110
            await trio.sleep(0.01)
    await call(other, "1", "Echo", "too late")
    assert await other.record(LIMIT) == {
        "type": 3,
        "invocationId": "1",
        "error": "Failed to invoke 'Echo' because the server is shutting down.",
    }

    records = [await streaming.record(LIMIT) for _ in range(6)]
    assert records == [
        *({"type": 2, "invocationId": "s", "item": item} for item in range(1, 5)),
        {"type": 3, "invocationId": "s"},
        CLOSE_RECONNECT,
    ]
    assert await other.record(LIMIT) == CLOSE_RECONNECT
    for client in (streaming, other):
        await hang_up(client)
    assert await running.outcome() == signal.SIGTERM


async def test_sigint_while_clients_are_busy_is_received_not_raised(
    nursery: trio.Nursery,
) -> None:
    """Under load the KeyboardInterrupt of the default SIGINT handler lands in
    whatever task runs; hypercorn's connection tasks log it and carry on. Received
    as a signal, it stops the server however busy it is."""
    server = echo_server()
    running, [(_, port)] = await start(nursery, server, LISTENERS["hypercorn"](server))
    clients = [await open_client(port) for _ in range(8)]
    busy = trio.Event()
    ended: list[dict[str, Any]] = []

    async def chatter(client: Wire) -> None:
        sent = 0
        while True:
            sent += 1
            await call(client, str(sent), "Echo", "x" * 1000)
            record = await client.record(LIMIT)
            if record.get("type") == 7:
                ended.append(record)
                return
            if sent == 20:
                busy.set()

    async with trio.open_nursery() as load:
        for client in clients:
            load.start_soon(chatter, client)
        await busy.wait()
        os.kill(os.getpid(), signal.SIGINT)
    assert ended == [CLOSE_RECONNECT] * len(clients)
    assert await running.outcome() == signal.SIGINT


async def test_two_listeners_report_their_addresses_and_both_close(
    nursery: trio.Nursery,
) -> None:
    """The hubs on triohub's own server and the ASGI app on hypercorn, one hub server."""
    server = echo_server()
    running, [(_, native_port), (_, hypercorn_port)] = await start(
        nursery, server, LISTENERS["native"](server), LISTENERS["hypercorn"](server)
    )
    clients = [await open_client(native_port), await open_client(hypercorn_port)]
    os.kill(os.getpid(), signal.SIGTERM)
    for client in clients:
        assert await client.record(LIMIT) == CLOSE_RECONNECT
        await hang_up(client)
    assert await running.outcome() == signal.SIGTERM
    await assert_refused(native_port)
    await assert_refused(hypercorn_port)


async def test_the_application_stopping_the_server_ends_it_too(nursery: trio.Nursery) -> None:
    server = echo_server()
    running, [(_, port)] = await start(nursery, server, LISTENERS["native"](server))
    client = await open_client(port)
    server.stop()
    assert await client.record(LIMIT) == CLOSE_RECONNECT
    await hang_up(client)
    assert await running.outcome() is None
    await assert_refused(port)


async def test_a_running_server_is_refused(nursery: trio.Nursery) -> None:
    server = echo_server()
    await nursery.start(server.run)
    with pytest.raises(RuntimeError, match="runs the HubServer itself"):
        await run_until_signalled(server, LISTENERS["native"](server))
    server.stop()
