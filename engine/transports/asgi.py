"""The ASGI app: negotiate, WebSockets, Server-Sent Events and long polling
for every hub of a ``HubServer``, with the exact HTTP answers of the reference
(``signalr-protocol.md`` sections 1-3).

Run it under hypercorn's trio worker (``triohub.transports.hypercorn``) or any
Trio ASGI server. Its lifespan runs the ``HubServer`` unless it already runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from ..auth.principal import Principal
from ..hub.access import Verdict, check_bound, check_request
from ..protocol import Texts
from ..protocol.negotiate import NegotiateError, TransportType, negotiate
from .connections import ConnectionTable, HttpConnection, Refusal
from .http import (
    BAD_UPGRADE,
    NO_CACHE,
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    log_refusal,
    parse_headers,
    query_of,
    read_body,
    request_info,
    respond,
    route_path,
    upgrade_problem,
)
from .listening import describe
from .longpolling import LongPollingTransport, PollOutcome
from .sse import Inbound, SseTransport
from .websocket import AsgiWebSocketTransport

if TYPE_CHECKING:
    from ..hub.server import HubRegistration, HubServer

__all__ = ["SignalRApp"]

log = logging.getLogger("triohub.transports")

ASGIApp = Any

_POST_LIMIT = 1024 * 1024
"""Largest POST body (one or more records) accepted from an HTTP transport."""


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
        self.connections = ConnectionTable()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        raw_path = scope.get("raw_path")
        if isinstance(raw_path, bytes):
            path = route_path(raw_path.decode("latin-1"))
        else:  # a server without raw_path decoded the path already
            path = scope.get("path", "/")
        registration, negotiate_route = self._route(path)
        if registration is None:
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
            elif kind == "http":
                await respond(send, 404, b"Not Found")
            else:
                await self._reject_websocket(scope, send, 404, b"")
            return
        if kind == "websocket":
            if negotiate_route:
                await self._reject_websocket(scope, send, 404, b"")
                return
            problem = upgrade_problem(
                scope.get("http_version", "1.1"), parse_headers(scope.get("headers", ()))
            )
            if problem is not None:
                # The server checked less (hypercorn takes any key): refused
                # before anything else, as by the native server.
                status, headers = BAD_UPGRADE
                await self._reject_websocket(scope, send, status, problem.encode(), headers)
                return
            await self._websocket(scope, receive, send, registration)
        elif kind == "http":
            await self._http(scope, receive, send, registration, negotiate_route)

    def _route(self, path: str) -> tuple[HubRegistration | None, bool]:
        hubs = self.server.hubs
        if path in hubs:
            return hubs[path], False
        if path.endswith("/negotiate") and path[: -len("/negotiate")] in hubs:
            return hubs[path[: -len("/negotiate")]], True
        return None, False

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

    # -- authentication ---------------------------------------------------------

    async def _verdict(self, scope: Scope, registration: HubRegistration) -> Verdict:
        request = request_info(scope, registration.path)
        verdict = await check_request(self.server, registration, request)
        log_refusal(request, verdict)
        return verdict

    def _bound(self, scope: Scope, verdict: Verdict, connection: HttpConnection) -> Verdict:
        """The same-user rule for later requests of an SSE / long-polling connection."""
        if connection.principal is None:
            return verdict
        request = request_info(scope, connection.registration.path)
        checked = check_bound(verdict, connection.principal, request)
        if checked is not verdict:
            log_refusal(request, checked)
        return checked

    @staticmethod
    async def _refuse(send: Send, verdict: Verdict) -> None:
        await respond(send, verdict.status, verdict.body, headers=verdict.headers)

    # -- HTTP -------------------------------------------------------------------

    async def _http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        registration: HubRegistration,
        negotiate_route: bool,
    ) -> None:
        method = scope.get("method", "GET")
        if negotiate_route and method != "POST":
            await respond(send, 405, b"")
            return
        if method not in ("GET", "POST", "DELETE"):
            await respond(send, 405, b"")
            return
        # Authentication and the hub policy come first, before any lookup.
        verdict = await self._verdict(scope, registration)
        if not verdict.allowed:
            await self._refuse(send, verdict)
            return
        if negotiate_route:
            await self._negotiate(scope, send, registration, verdict.principal)
            return
        query = query_of(scope)
        token = (query.get("id") or ("",))[0]
        if not token:
            await respond(send, 400, Texts.CONNECTION_ID_REQUIRED.encode())
            return
        connection = self.connections.get(token)
        if connection is None or connection.registration is not registration:
            await respond(send, 404, Texts.NO_CONNECTION.encode())
            return
        verdict = self._bound(scope, verdict, connection)
        if not verdict.allowed:
            await self._refuse(send, verdict)
            return
        if method == "POST" and connection.transport is TransportType.WEBSOCKETS:
            await respond(send, 405, Texts.POST_NOT_ALLOWED_FOR_WEBSOCKETS.encode())
            return
        if method == "DELETE" and connection.transport is not TransportType.LONG_POLLING:
            await respond(send, 400, Texts.DELETE_NOT_ALLOWED.encode())
            return
        await self._http_transport(scope, receive, send, connection, method, verdict.principal)

    async def _http_transport(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        connection: HttpConnection,
        method: str,
        principal: Principal,
    ) -> None:
        registration = connection.registration
        if method == "POST":
            await self._post(receive, send, connection)
            return
        if method == "DELETE":
            channel = connection.channel
            assert isinstance(channel, LongPollingTransport)
            channel.end()
            await respond(send, 202, b"")
            return
        wanted = (
            TransportType.SERVER_SENT_EVENTS
            if _accepts_event_stream(scope)
            else TransportType.LONG_POLLING
        )
        if wanted not in registration.options.transports:
            await respond(send, 404, Texts.transport_not_supported(wanted.value).encode())
            return
        if connection.transport is not None and connection.transport is not wanted:
            await respond(send, 400, Texts.CANNOT_CHANGE_TRANSPORT.encode())
            return
        if wanted is TransportType.SERVER_SENT_EVENTS:
            if connection.active or connection.transport is not None:
                await respond(send, 409, b"")
                return
            await self._sse(receive, send, connection, principal)
        else:
            await self._poll(receive, send, connection, principal)

    async def _post(self, receive: Receive, send: Send, connection: HttpConnection) -> None:
        channel = connection.channel
        if channel is None:
            # Nothing is receiving yet (no transport request): like the
            # reference, the bytes have nowhere to go.
            await respond(send, 404, Texts.NO_CONNECTION.encode())
            return
        try:
            body = await read_body(receive, _POST_LIMIT)
        except BodyTooLarge:
            await respond(send, 413, b"Request body too large")
            return
        except ConnectionError:
            return
        if not await channel.inbound.put(body):
            await respond(send, 404, b"")
            return
        await respond(send, 200, b"")

    async def _sse(
        self, receive: Receive, send: Send, connection: HttpConnection, principal: Principal
    ) -> None:
        registration = connection.registration
        transport = SseTransport(send, Inbound())
        connection.transport = TransportType.SERVER_SENT_EVENTS
        connection.active = True
        connection.principal = principal
        connection.channel = transport
        try:
            await transport.start()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(transport.watch_disconnect, receive)
                await self.server.connect(
                    registration,
                    transport,
                    connection_id=connection.connection_id,
                    principal=principal,
                    transfer_formats=TransportType.SERVER_SENT_EVENTS.transfer_formats,
                )
                nursery.cancel_scope.cancel()
        finally:
            connection.active = False
            self.connections.remove(connection.token)

    async def _poll(
        self, receive: Receive, send: Send, connection: HttpConnection, principal: Principal
    ) -> None:
        registration = connection.registration
        if connection.transport is None:
            # The first poll binds the transport, starts the connection and
            # answers at once (the JS client requires this 200).
            transport = LongPollingTransport()
            connection.transport = TransportType.LONG_POLLING
            connection.principal = principal
            connection.channel = transport
            self.server.spawn(self._run_long_polling, connection, transport, principal)
            await respond(send, 200, b"", content_type="application/octet-stream", headers=NO_CACHE)
            return
        transport = connection.channel
        assert isinstance(transport, LongPollingTransport)
        outcome, body = PollOutcome.TIMEOUT, b""
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                nursery.cancel_scope.cancel()  # the client aborted this poll

            nursery.start_soon(watch)
            outcome, body = await transport.poll(registration.options.long_poll_timeout)
            nursery.cancel_scope.cancel()
        if outcome is PollOutcome.DATA:
            await respond(
                send, 200, body, content_type="application/octet-stream", headers=NO_CACHE
            )
        elif outcome is PollOutcome.TIMEOUT:
            # As the reference: an empty text/plain 200 means "poll again".
            await respond(send, 200, b"", headers=NO_CACHE)
        else:
            await respond(send, 204, b"", headers=NO_CACHE)

    async def _run_long_polling(
        self, connection: HttpConnection, transport: LongPollingTransport, principal: Principal
    ) -> None:
        registration = connection.registration
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    _reap_idle_poller, transport, registration.options.disconnect_timeout
                )
                await self.server.connect(
                    registration,
                    transport,
                    connection_id=connection.connection_id,
                    principal=principal,
                    keep_alive=False,  # polling keeps itself alive
                )
                if not transport.ended_by_client:
                    # Ended by the server: keep the id until a poll has collected
                    # the close record and been told 204 (the reference's
                    # "connection finished"), unless the client stopped polling.
                    idle_limit = transport.last_poll + registration.options.disconnect_timeout
                    with trio.move_on_at(idle_limit):
                        await transport.wait_told()
                nursery.cancel_scope.cancel()
        finally:
            self.connections.remove(connection.token)

    async def _negotiate(
        self, scope: Scope, send: Send, registration: HubRegistration, principal: Principal
    ) -> None:
        result = negotiate(
            scope.get("query_string", b""), transports=registration.options.transports
        )
        if isinstance(result, NegotiateError):
            await respond(send, 200, result.body, content_type="application/json")
            return
        self.connections.add(result.connection_token, result.connection_id, registration, principal)
        await respond(send, 200, result.body, content_type="application/json")

    # -- WebSockets -------------------------------------------------------------

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, registration: HubRegistration
    ) -> None:
        verdict = await self._verdict(scope, registration)
        if not verdict.allowed:
            await self._reject_websocket(scope, send, verdict.status, b"", verdict.headers)
            return
        token = (query_of(scope).get("id") or ("",))[0]
        request = request_info(scope, registration.path)
        claimed = self.connections.claim_websocket(token, registration, verdict, request)
        if isinstance(claimed, Refusal):
            await self._reject_websocket(scope, send, claimed.status, claimed.body, claimed.headers)
            return
        connection_id, connection = claimed
        try:
            event = await receive()
            if event["type"] != "websocket.connect":
                return
            try:
                await send({"type": "websocket.accept"})
            except Exception as error:
                # The server already answered the upgrade (a client that sent
                # bytes before our 101, hypercorn#225): nothing to serve.
                log.debug("a WebSocket was not accepted: %s", describe(error))
                return
            transport = AsgiWebSocketTransport(receive, send)
            await self.server.connect(
                registration,
                transport,
                connection_id=connection_id,
                principal=verdict.principal,
                on_protocol=transport.use_protocol,
            )
        finally:
            if connection is not None:
                self.connections.remove(connection.token)

    async def _reject_websocket(
        self,
        scope: Scope,
        send: Send,
        status: int,
        body: bytes,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        if "websocket.http.response" in scope.get("extensions", {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"text/plain"),
                        (b"content-length", str(len(body)).encode()),
                        *headers,
                    ],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})


async def _reap_idle_poller(transport: LongPollingTransport, idle_limit: float) -> None:
    """End a long-polling connection whose client stopped polling."""
    while not transport.closed:
        if transport.polling:
            await transport.wait_change()
            continue
        due = transport.last_poll + idle_limit
        if trio.current_time() >= due:
            transport.end()
            return
        await trio.sleep_until(due)


def _accepts_event_stream(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"accept" and b"text/event-stream" in value:
            return True
    return False
