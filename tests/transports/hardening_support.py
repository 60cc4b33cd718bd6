"""Real servers for the hardening tests: the same hub served by hypercorn
(``serve_hypercorn`` + ``SignalRApp``), triohub's own server (``serve_native``) and
trio-websocket (``serve_trio_websocket``), and the proof that a server still
serves: negotiate, upgrade, SignalR handshake, an ``Echo`` call."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import orjson
import trio

from triohub import HubOptions, HubServer
from triohub.transports.asgi import SignalRApp
from triohub.transports.hypercorn import serve_hypercorn
from triohub.transports.native import serve_native
from triohub.transports.trio_websocket import serve_trio_websocket

from .native_support import HUB, Journal, NativeHub
from .native_wire import Wire, invocation
from .support import stop_gracefully

SERVERS = ("hypercorn", "native")
"""The servers that answer HTTP (negotiate) as well as WebSockets."""

UPGRADE = (
    b"GET " + HUB.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


@attrs.frozen
class Running:
    kind: str
    server: HubServer
    port: int
    journal: Journal
    scope: trio.CancelScope
    """Cancel to stop listening (after ``stop_gracefully(server)``)."""
    stopped: trio.Event
    """Set once the serving task has returned."""

    async def wire(self) -> Wire:
        return await Wire.connect(self.port)


def _serve(kind: str) -> Callable[..., Awaitable[None]]:
    if kind == "hypercorn":
        return lambda server, **kw: serve_hypercorn(SignalRApp(server), **kw)
    if kind == "native":
        return serve_native
    return serve_trio_websocket


@asynccontextmanager
async def running(
    kind: str, *, options: HubOptions | None = None, **serve_options: Any
) -> AsyncIterator[Running]:
    """``kind`` ("hypercorn", "native", "trio-websocket") serving ``NativeHub`` at
    ``HUB`` on a free port; stopped gracefully on exit."""
    server = HubServer(options=options)
    journal = Journal()
    server.map_hub(HUB, NativeHub, factory=partial(NativeHub, journal))
    serve = _serve(kind)
    stopped = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)

        async def listen(task_status: trio.TaskStatus[tuple[trio.CancelScope, int]]) -> None:
            try:
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as inner:
                        _, port = await inner.start(partial(serve, server, **serve_options))
                        task_status.started((scope, port))
            finally:
                stopped.set()

        scope, port = await nursery.start(listen)
        try:
            yield Running(kind, server, port, journal, scope, stopped)
        finally:
            await stop_gracefully(server)
            scope.cancel()
            with trio.move_on_after(10):
                await stopped.wait()
            nursery.cancel_scope.cancel()


async def assert_serves(port: int, *, negotiated: bool = True) -> None:
    """A normal client gets through: negotiate (unless ``negotiated`` is false),
    upgrade, handshake, and an ``Echo`` answered."""
    wire = await Wire.connect(port)
    try:
        target = HUB
        if negotiated:
            answer = await wire.request("POST", HUB + "/negotiate?negotiateVersion=1")
            assert answer.status == 200, answer
            target += "?id=" + orjson.loads(answer.body)["connectionToken"]
            await wire.aclose()
            wire = await Wire.connect(port)
        await wire.hub_open(target)
        await wire.send_frame(0x1, invocation("1", "Echo", "still here"))
        record = await wire.record()
        assert record == {"type": 3, "invocationId": "1", "result": "still here"}, record
    finally:
        await wire.aclose()


def listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port``, as the kernel reports it
    (``ss``: Send-Q of a listening socket)."""
    output = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert output, f"nothing listens on {port}"
    assert output[0] == "LISTEN", output
    return int(output[2])


def established(port: int) -> int:
    """How many server-side sockets of the listener on ``port`` are still
    ESTABLISHED (``ss``): a socket the server closed is not, even while the
    kernel still holds bytes for a client that does not read."""
    output = subprocess.run(
        ["ss", "-tnH", "state", "established", f"sport = :{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len(output.splitlines())
