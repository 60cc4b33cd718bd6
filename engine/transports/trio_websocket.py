"""A standalone WebSocket server on trio-websocket: no HTTP, no negotiate.

Clients connect with ``skipNegotiation: true`` (the JS client allows it for
WebSockets), straight to ``ws://host:port/hubs/name``. What to answer to an
upgrade request is the endpoint's decision (``endpoint``), as on every server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, cast

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    wrap_server_stream,
)

from ..protocol import HubProtocol, TransferFormat, TransportType
from .actions import HttpRequest, OpenWebSocket, Respond
from .endpoint import Endpoint
from .http import parse_headers, route_path
from .listening import BACKLOG, accept_streams, listen_socket

if TYPE_CHECKING:
    from ..hub.server import HubServer

__all__ = ["TrioWebSocketTransport", "serve_trio_websocket"]

log = logging.getLogger("triohub.transports")

_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client has to send its whole upgrade request."""


class TrioWebSocketTransport:
    """One trio-websocket connection as a hub transport."""

    name = TransportType.WEBSOCKETS.value
    """The transport's name in log lines."""

    def __init__(self, connection: WebSocketConnection) -> None:
        self._connection = connection
        self._binary = False

    def use_protocol(self, protocol: HubProtocol) -> None:
        self._binary = protocol.transfer_format is TransferFormat.BINARY

    async def receive(self) -> bytes | None:
        try:
            message = await self._connection.get_message()
        except ConnectionClosed:
            return None
        return message.encode() if isinstance(message, str) else message

    async def send(self, chunks: Sequence[bytes]) -> None:
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            await self._connection.send_message(data if self._binary else data.decode())
        except ConnectionClosed as error:
            raise trio.BrokenResourceError("websocket closed") from error

    async def aclose(self) -> None:
        await self._connection.aclose(code=1000)


class _Watched:
    """The nursery trio-websocket starts its reader task in, for the handshake:
    the reader ending (a client that left before its request was whole) ends
    the wait for the request, which would otherwise last the whole timeout,
    holding the socket."""

    def __init__(self, nursery: trio.Nursery, handshake: trio.CancelScope) -> None:
        self._nursery = nursery
        self._handshake = handshake

    def start_soon(self, function: Callable[[], Awaitable[object]], name: object = None) -> None:
        async def watched() -> None:
            try:
                await function()
            finally:
                self._handshake.cancel()  # no effect once the handshake is over

        self._nursery.start_soon(watched, name=name)


def _request(request: WebSocketRequest) -> HttpRequest:
    path, _, query = request.path.partition("?")
    remote = request.remote
    client = None if isinstance(remote, str) else (str(remote.address), int(remote.port))
    return HttpRequest(
        method="GET",
        path=route_path(path),
        query=query,
        headers=parse_headers(request.headers),
        websocket=True,
        client=client,
    )


async def serve_trio_websocket(
    server: HubServer,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    backlog: int = BACKLOG,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the hubs of a running ``server`` over plain WebSockets.

    The upgrade request is authenticated and checked against the hub's policy
    exactly like the ASGI app's requests (401 / 403 refuse the upgrade).

    ``host, port = await nursery.start(serve_trio_websocket, server)``.

    Args:
        server: the hubs (already running).
        host: the address to listen on.
        port: the port (0: any free one).
        backlog: the listen backlog (connections the kernel queues before
            they are accepted).

    Raises:
        ListenError: the address cannot be bound (an ``OSError``).
    """

    endpoint = Endpoint(server)

    async def handle(request: WebSocketRequest) -> None:
        # No local keeps the request's facts: this frame lives as long as the
        # connection, and the principal is all that is needed of them.
        action = await endpoint.decide(_request(request))
        if not isinstance(action, OpenWebSocket):
            answer = action if isinstance(action, Respond) else Respond(404, b"Not Found")
            await request.reject(
                answer.status, extra_headers=list(answer.headers), body=answer.body
            )
            return
        connection = await request.accept()
        await endpoint.run_websocket(action, TrioWebSocketTransport(connection))

    limit = max((r.options.max_message_size or 0 for r in server.hubs.values()), default=0)
    max_message_size = max(limit * 2, 1024 * 1024)

    async def serve(stream: trio.SocketStream, peer: str) -> None:
        # trio-websocket's ``WebSocketServer._handle_connection``, on its public
        # ``wrap_server_stream``: the accept loop and the wall are ours.
        async with trio.open_nursery() as nursery:
            request = None
            with trio.move_on_after(_HANDSHAKE_TIMEOUT) as handshake:
                reader_nursery = cast(trio.Nursery, _Watched(nursery, handshake))
                request = await wrap_server_stream(
                    reader_nursery, stream, max_message_size=max_message_size
                )
            if request is not None:
                await handle(request)
            nursery.cancel_scope.cancel()

    listener = listen_socket(host, port, backlog, server="trio-websocket server")
    try:
        bound = listener.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(
                    accept_streams,
                    trio.socket.from_stdlib_socket(listener),
                    nursery,
                    serve,
                    name=f"trio-websocket server on {host}:{bound}",
                    what="WebSocket connection",
                )
            )
            task_status.started((host, bound))
    finally:
        listener.close()
