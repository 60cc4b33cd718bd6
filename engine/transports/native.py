"""triohub's own server: the SignalR endpoint on Trio sockets, every transport.

The leanest way to host hubs: no ASGI server and no WebSocket library between
the socket and the hub. Requests are read by h11 (``native_http``); what to
answer is the endpoint's decision (``endpoint``), exactly as in the ASGI app;
WebSockets use triohub's own RFC 6455 framing (``native_ws``). It serves

* ``POST {hub}/negotiate`` (v0 and v1, every transport the hub enables),
* ``GET {hub}`` upgrades to WebSockets, with or without a negotiated ``id``
  (``skipNegotiation``),
* Server-Sent Events and long polling (``GET`` / ``POST`` / ``DELETE {hub}?id=``),
* with ``fallback``, an ASGI app for every other path (``native_asgi``), so one
  port serves a whole site,

and keeps HTTP connections alive between requests.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import trio

from ..protocol.websocket import accept_key
from .actions import (
    Fallback,
    OpenEventStream,
    OpenWebSocket,
    Respond,
    answer_request,
)
from .endpoint import Endpoint
from .listening import BACKLOG, AcceptPacer, isolated, listen_socket
from .native_asgi import ASGIApp, serve_asgi_request
from .native_http import REQUEST_TIMEOUT, BadRequest, HttpWire
from .native_ws import FrameCache, NativeWebSocketTransport
from .sse import serve_event_stream

if TYPE_CHECKING:
    from ..hub.server import HubServer

__all__ = ["serve_native"]

log = logging.getLogger("triohub.transports")

_IDLE_TIMEOUT = 5.0
"""Seconds a kept-alive HTTP connection may wait for its next request."""
_NOT_FOUND = Respond(404, b"Not Found")
ACCEPT_BATCH = 64
"""Connections accepted per wake-up of the listener at most: a reconnect storm
(a full backlog of 1,024) accepted in one step held every connection back for
as long, and started as many tasks for the same next scheduler batch."""


class _Connection:
    """One accepted socket until it upgrades or closes."""

    def __init__(
        self,
        endpoint: Endpoint,
        fallback: ASGIApp | None,
        sock: socket.socket,
        client: tuple[str, int],
        local: tuple[str, int],
        frames: FrameCache,
    ) -> None:
        self.endpoint = endpoint
        self.frames = frames
        self.server = endpoint.server
        self.fallback = fallback
        self.sock = sock
        self.local = local
        self.wire = HttpWire(sock, client)
        self.handed_over = False

    async def serve(self) -> None:
        wire = self.wire
        try:
            first = True
            while True:
                request = None
                try:
                    with trio.move_on_after(REQUEST_TIMEOUT if first else _IDLE_TIMEOUT):
                        with trio.fail_after(REQUEST_TIMEOUT):
                            request = await wire.read_request()
                except BadRequest as error:
                    await wire.refuse(error)
                    return
                except trio.TooSlowError:
                    await wire.refuse(BadRequest(408))
                    return
                if request is None:
                    return
                first = False
                # One scheduler turn per request: a client pipelining requests
                # (never blocking our reads or writes) cannot hold the loop.
                await trio.lowlevel.checkpoint()
                action = await self.endpoint.decide(request)
                if isinstance(action, Fallback) and (self.fallback is None or request.websocket):
                    action = _NOT_FOUND
                if isinstance(action, Fallback):
                    assert self.fallback is not None
                    if not await serve_asgi_request(
                        self.fallback, wire, request.http_version, self.local
                    ):
                        return
                elif isinstance(action, OpenEventStream):
                    del request
                    await serve_event_stream(
                        self.server,
                        action.connection,
                        action.transport,
                        action.principal,
                        wire,
                        self.endpoint.release,
                    )
                    return
                elif isinstance(action, OpenWebSocket):
                    # The upgraded connection lives on in this frame: it keeps
                    # nothing of the request (headers, the token) but the principal.
                    key = request.header("sec-websocket-key")
                    del request
                    await self._websocket(action, key)
                    return
                else:
                    answer = await answer_request(action, self._read_body, wire.wait_disconnect)
                    await wire.respond(answer)
                    if answer.close:
                        return
                if not await wire.next_cycle():
                    return
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, BadRequest):
            pass  # gone, or it stopped reading our answers
        finally:  # any other error: ``listening.isolated`` logs it, in one line
            if not self.handed_over:
                trio.lowlevel.notify_closing(self.sock)
                self.sock.close()

    async def _read_body(self, limit: int) -> bytes | None:
        with trio.fail_after(REQUEST_TIMEOUT):
            return await self.wire.read_body(limit)

    async def _websocket(self, action: OpenWebSocket, key: str) -> None:
        """Answer 101 and run the hub connection over the socket, to its end."""
        try:
            initial = await self.wire.switch_protocols(
                [
                    (b"upgrade", b"websocket"),
                    (b"connection", b"Upgrade"),
                    (b"sec-websocket-accept", accept_key(key).encode()),
                ]
            )
        except BaseException:
            self.endpoint.release(action.connection)
            raise
        limit = action.registration.options.max_message_size
        transport = NativeWebSocketTransport(
            self.sock,
            initial,
            None if limit is None else max(limit * 2, 65536),
            frames=self.frames,
        )
        self.handed_over = True  # the transport closes the socket now
        try:
            await self.endpoint.run_websocket(action, transport)
        finally:
            await transport.aclose()  # idempotent: normally closed already


async def serve_native(
    server: HubServer,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    fallback: ASGIApp | None = None,
    backlog: int = BACKLOG,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the hubs of a running ``server`` with triohub's own HTTP/1.1 and
    WebSocket server until cancelled: negotiate, WebSockets, Server-Sent Events
    and long polling, with the ASGI app's answers.

    ``host, port = await nursery.start(serve_native, server)``.

    Args:
        server: the hubs (already running).
        host: the address to listen on.
        port: the port (0: any free one).
        fallback: an ASGI app for the paths that are not hubs (HTTP requests
            only); 404 without one.
        backlog: the listen backlog (connections the kernel queues before
            they are accepted).
        reuse_port: share the port with other processes (``SO_REUSEPORT``).

    Raises:
        ListenError: the address cannot be bound (an ``OSError``).
    """
    listener = listen_socket(host, port, backlog, server="native server", reuse_port=reuse_port)
    bound = listener.getsockname()[1]
    pacer = AcceptPacer(f"native server on {host}:{bound}")
    endpoint = Endpoint(server, fallback=fallback is not None)
    frames = FrameCache()  # this server's, shared by its WebSockets
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(endpoint.connections.reap)
            task_status.started((host, bound))
            while True:
                await trio.lowlevel.wait_readable(listener)
                for _ in range(ACCEPT_BATCH):
                    try:
                        sock, address = listener.accept()
                    except BlockingIOError:
                        break
                    except OSError as error:  # EMFILE and friends: later
                        await pacer.failed(error)
                        break
                    pacer.accepted()
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    client = (str(address[0]), int(address[1]))
                    connection = _Connection(
                        endpoint, fallback, sock, client, (host, bound), frames
                    )
                    nursery.start_soon(
                        isolated, connection.serve, f"{client[0]}:{client[1]}", "HTTP connection"
                    )
    finally:
        trio.lowlevel.notify_closing(listener)
        listener.close()
