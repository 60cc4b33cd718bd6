"""Shared helpers of the hub tests: exact records and a raw-bytes client.

Two kinds of client drive a real ``HubServer`` over in-memory transports:

* ``triohub.testing.open_test_client``: decodes what the server sends, answers
  client-result calls, routes completions to ``invoke``; for hub semantics.
* ``open_raw_client`` (here): exact bytes in, exact records out, and the
  ``CloseReason`` the supervisor returned; for handshakes, timers and close records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from triohub import (
    ANONYMOUS,
    HubServer,
    JwtBearerAuthenticator,
    JwtBearerOptions,
    Principal,
    SignalRApp,
    serve_hypercorn,
    serve_native,
)
from triohub.actors.supervisor import CloseReason
from triohub.protocol import HubMessage, Ping
from triohub.testing import HubTestClient
from triohub.transports.memory import MemoryTransport, memory_transport_pair

PATH = "/hub"
"""Where the ``start_server`` fixture maps the hub under test."""

StartServer = Callable[..., Awaitable[HubServer]]
"""The type of the ``start_server`` fixture."""

Serve = Callable[[trio.Nursery, HubServer], Awaitable[Any]]
"""Serves a running ``HubServer`` over real HTTP; returns ``(host, port)``."""


async def on_hypercorn(nursery: trio.Nursery, server: HubServer) -> Any:
    return await nursery.start(serve_hypercorn, SignalRApp(server), "127.0.0.1", 0)


def bearer_authenticator(key: str, audience: str) -> JwtBearerAuthenticator:
    """HS256 bearer tokens signed with ``key``, issuer ``tests``, for ``audience``."""
    return JwtBearerAuthenticator(
        JwtBearerOptions(algorithms=("HS256",), key=key, issuer="tests", audience=audience)
    )


async def on_native(nursery: trio.Nursery, server: HubServer) -> Any:
    return await nursery.start(serve_native, server, "127.0.0.1", 0)


JSON_HANDSHAKE = b'{"protocol":"json","version":1}\x1e'
HANDSHAKE_OK = b"{}\x1e"
PING = b'{"type":6}\x1e'
CLOSE = b'{"type":7}\x1e'
CLOSE_RECONNECT = b'{"type":7,"allowReconnect":true}\x1e'
CLOSE_ERROR = b'{"type":7,"error":"Connection closed with an error."}\x1e'
CLOSE_ERROR_RECONNECT = (
    b'{"type":7,"error":"Connection closed with an error.","allowReconnect":true}\x1e'
)


def split_records(chunk: bytes) -> list[bytes]:
    """The JSON records of one transport chunk, each with its 0x1E."""
    assert chunk.endswith(b"\x1e"), f"a chunk must hold whole records: {chunk!r}"
    return [part + b"\x1e" for part in chunk[:-1].split(b"\x1e")]


class RawClient:
    """A client that writes and reads exact bytes (JSON records)."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport
        self.reason: CloseReason | None = None
        """What ``HubServer.connect`` returned, once the connection ended."""
        self.ended = trio.Event()
        self._records: list[bytes] = []

    async def send(self, data: bytes) -> None:
        await self.transport.send([data])

    async def record(self) -> bytes | None:
        """The next record from the server; ``None`` once the transport closed."""
        while not self._records:
            chunk = await self.transport.receive()
            if chunk is None:
                return None
            self._records.extend(split_records(chunk))
        return self._records.pop(0)

    async def rest(self) -> list[bytes]:
        """Every record up to the end of the connection."""
        records = []
        while (record := await self.record()) is not None:
            records.append(record)
        return records


@asynccontextmanager
async def open_raw_client(
    server: HubServer,
    path: str = PATH,
    *,
    handshake: bytes | None = JSON_HANDSHAKE,
    principal: Principal = ANONYMOUS,
    connection_id: str = "raw",
    keep_alive: bool = True,
    buffer: int = 64,
) -> AsyncIterator[RawClient]:
    """Run ``server.connect`` for a raw client; the handshake reply is left unread.

    On exit the client side of the transport is closed and the connection awaited.
    """
    server_side, client_side = memory_transport_pair(buffer)
    client = RawClient(client_side)

    async def connect() -> None:
        client.reason = await server.connect(
            server.hubs[path],
            server_side,
            connection_id=connection_id,
            principal=principal,
            keep_alive=keep_alive,
        )
        client.ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(connect)
        if handshake is not None:
            await client.send(handshake)
        try:
            yield client
        finally:
            await client_side.aclose()


def drain(client: HubTestClient) -> list[HubMessage]:
    """What the client received and has not read yet, pings left out.

    Call it once the server is quiet (``trio.testing.wait_all_tasks_blocked``).
    """
    messages = []
    while True:
        try:
            message = client.inbox.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return messages
        if not isinstance(message, Ping):
            messages.append(message)


def task_tree(nursery: trio.Nursery) -> list[str]:
    """Names of every task below ``nursery``, depth first (a leak shows up here)."""
    names = []
    for task in nursery.child_tasks:
        names.append(task.name)
        for child in task.child_nurseries:
            names.extend(task_tree(child))
    return names
