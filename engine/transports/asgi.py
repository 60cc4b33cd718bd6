"""The ASGI app: the SignalR endpoint (``endpoint``) for every hub of a
``HubServer`` on ASGI events: negotiate, WebSockets, Server-Sent Events and long
polling.

Run it under hypercorn's trio worker (``triohub.transports.hypercorn``) or any
Trio ASGI server. Its lifespan runs the ``HubServer`` unless it already runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from .actions import Fallback, HttpRequest, OpenEventStream, OpenWebSocket, Respond, answer_request
from .connections import ConnectionTable
from .endpoint import Endpoint
from .http import (
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    origin_form,
    parse_headers,
    read_body,
    respond,
    route_path,
)
from .listening import describe
from .sse import serve_event_stream
from .websocket import DIRECT_EXTENSION, AsgiWebSocketTransport, DirectAsgiWebSocketTransport

if TYPE_CHECKING:
    from ..hub.server import HubServer

__all__ = ["SignalRApp"]

log = logging.getLogger("triohub.transports")

ASGIApp = Any


class SignalRApp:
    """ASGI application serving the hubs of ``server``.

    Args:
        server: the hubs. Started by the ASGI lifespan when not already running.
        fallback: an ASGI app for every other path (HTTP and WebSocket); 404 if
            ``None``.
    """

    def __init__(self, server: HubServer, *, fallback: ASGIApp | None = None) -> None:
        self.server = server
        self.fallback = fallback
        self.endpoint = Endpoint(server, fallback=fallback is not None)

    @property
    def connections(self) -> ConnectionTable:
        """The negotiated connections."""
        return self.endpoint.connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind not in ("http", "websocket"):
            return
        request = _request(scope)
        action = await self.endpoint.decide(request)
        if isinstance(action, Fallback):
            assert self.fallback is not None
            await self.fallback(scope, receive, send)
        elif kind == "websocket":
            if isinstance(action, OpenWebSocket):
                await self._websocket(scope, receive, send, action)
            else:
                assert isinstance(action, Respond)
                await _reject_websocket(scope, send, action)
        elif isinstance(action, OpenEventStream):
            await serve_event_stream(
                self.server,
                action.connection,
                action.transport,
                action.principal,
                _AsgiStream(send, receive),
                self.endpoint.release,
            )
        elif not isinstance(action, OpenWebSocket):  # an upgrade is refused above
            stream = _AsgiStream(send, receive)
            try:
                answer = await answer_request(action, stream.read_body, stream.wait_disconnect)
            except ConnectionError:
                return  # the client left mid-body: nobody to answer
            await _respond(send, answer)

    # -- lifespan ---------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        event = await receive()
        assert event["type"] == "lifespan.startup"
        async with trio.open_nursery() as nursery:
            started_here = not self.server.running
            try:
                if started_here:
                    await nursery.start(self.server.run)
                nursery.start_soon(self.connections.reap)
            except Exception as error:
                log.exception("hub server failed to start")
                await send({"type": "lifespan.startup.failed", "message": str(error)})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            if started_here:
                # A server the app started is the app's to stop, gracefully.
                self.server.stop()
                with trio.move_on_after(10):
                    await self.server.wait_stopped()
            nursery.cancel_scope.cancel()
        await send({"type": "lifespan.shutdown.complete"})

    # -- WebSockets -------------------------------------------------------------

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, action: OpenWebSocket
    ) -> None:
        accepted = False
        try:
            if (await receive())["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                accepted = True
        except Exception as error:
            # The server already answered the upgrade (a client that sent
            # bytes before our 101, hypercorn#225): nothing to serve.
            log.debug("a WebSocket was not accepted: %s", describe(error))
        finally:
            if not accepted:
                self.endpoint.release(action.connection)
        if accepted:
            direct = (scope.get("extensions") or {}).get(DIRECT_EXTENSION)
            transport = (
                AsgiWebSocketTransport(receive, send)
                if direct is None
                else DirectAsgiWebSocketTransport(receive, send, direct)
            )
            await self.endpoint.run_websocket(action, transport)


def _request(scope: Scope) -> HttpRequest:
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes):
        # hypercorn passes an absolute-form target whole.
        path = route_path(origin_form(raw_path).partition(b"?")[0].decode("latin-1"))
    else:  # a server without raw_path decoded the path already
        path = scope.get("path", "/")
    client = scope.get("client")
    websocket = scope["type"] == "websocket"
    return HttpRequest(
        method=scope.get("method", "GET"),
        path=path,
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=parse_headers(scope.get("headers", ())),
        http_version=scope.get("http_version", "1.1"),
        websocket=websocket,
        client=(str(client[0]), int(client[1])) if client else None,
    )


async def _respond(send: Send, action: Respond) -> None:
    await respond(
        send, action.status, action.body, content_type=action.content_type, headers=action.headers
    )


async def _reject_websocket(scope: Scope, send: Send, action: Respond) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": action.status,
                "headers": [
                    (b"content-type", action.content_type.encode()),
                    (b"content-length", str(len(action.body)).encode()),
                    *action.headers,
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": action.body})
    else:
        await send({"type": "websocket.close", "code": 1008})


class _AsgiStream:
    """A streamed response (``sse.ResponseStream``) on ASGI events."""

    def __init__(self, send: Send, receive: Receive) -> None:
        self._send = send
        self._receive = receive

    async def start(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, body: bytes) -> None:
        await self._send({"type": "http.response.body", "body": body, "more_body": True})

    async def finish(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def wait_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass

    async def read_body(self, limit: int) -> bytes | None:
        """The request's body; ``None`` past ``limit`` bytes.

        Raises:
            ConnectionError: the client went away mid-body.
        """
        try:
            return await read_body(self._receive, limit)
        except BodyTooLarge:
            return None
