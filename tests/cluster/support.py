"""Two (or more) hub servers in one Trio run sharing a real redis-server, each
behind its own in-process ASGI client: the nodes of the cluster tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from triohub import Hub, HubOptions, HubServer
from triohub.backplane.redis import RedisBackplane
from triohub.transports.asgi import SignalRApp
from triohub.transports.cluster import derive_key

from ..backplane.support import PATH, PREFIX, ClusterHub
from ..transports.asgi_client import AsgiClient
from ..transports.native_support import authenticator, token_for

KEY = derive_key("a secret every node of the test cluster shares")
HANDSHAKE = '{"protocol":"json","version":1}\x1e'


@attrs.define
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@attrs.frozen
class Node:
    server: HubServer
    client: AsgiClient


@asynccontextmanager
async def open_nodes(
    redis_url: str,
    nursery: trio.Nursery,
    *,
    count: int = 2,
    clock: Callable[[], float] | None = None,
    hub: type[Hub] = ClusterHub,
    options: HubOptions | None = None,
) -> AsyncIterator[list[Node]]:
    """``count`` nodes of ``hub`` at ``PATH``, stopped afterwards (and checked
    for ASGI breaches)."""
    made = []
    for _ in range(count):
        link = RedisBackplane(redis_url)
        extra: dict[str, Any] = {} if clock is None else {"clock": clock}
        server = HubServer(
            backplane=link, connection_token_key=KEY, authenticator=authenticator(), **extra
        )
        server.map_hub(PATH, hub, channel_prefix=PREFIX, options=options)
        app = SignalRApp(server)
        await nursery.start(server.run)
        await link.wait_connected()
        made.append(Node(server, AsgiClient(app, nursery)))
    yield made
    for node in made:
        node.server.stop()
    for node in made:
        await node.server.wait_stopped()
        assert node.client.violations == []


def auth(user: str | None, lifetime: float = 3600) -> list[tuple[bytes, bytes]]:
    if user is None:
        return []
    return [(b"authorization", f"Bearer {token_for(user, lifetime)}".encode())]


async def negotiate(node: Node, user: str | None = None, version: int = 1) -> dict[str, Any]:
    response = await node.client.request(
        "POST", f"{PATH}/negotiate", query=f"negotiateVersion={version}", headers=auth(user)
    )
    assert response.status == 200, response
    document: dict[str, Any] = json.loads(response.body)
    return document


async def first_of(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def open_websocket(
    node: Node, token: str, user: str | None = None, *, lifetime: float = 3600
) -> Any:
    socket = node.client.websocket(PATH, query=f"id={token}", headers=auth(user, lifetime))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for event in (socket.accepted, socket.closed):
                nursery.start_soon(first_of, event, nursery.cancel_scope)
    if socket.accepted.is_set():
        socket.send_text(HANDSHAKE)
        with trio.fail_after(10):
            assert await socket.frame() == "{}\x1e"
    return socket
