"""triohub's own server: HTTP/1.1 negotiate and WebSockets on Trio sockets.

The leanest way to host hubs: no ASGI server and no WebSocket library between
the socket and the hub (``native_ws``). It answers

* ``POST {hub}/negotiate`` (v0 and v1; WebSockets is the one transport listed),
* ``GET {hub}`` upgrades to WebSockets, with or without a negotiated ``id``
  (``skipNegotiation``),

authenticating every request and applying the hub's policy exactly like the
ASGI app (401 with the challenge / 403), and keeps HTTP connections alive
between requests. Server-Sent Events and long polling need the ASGI app
(``triohub.transports.asgi`` under hypercorn): here they are answered with the
reference's "transport not supported" 404.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import TYPE_CHECKING

import attrs
import trio

from ..auth.principal import Principal
from ..auth.request import RequestInfo
from ..hub.access import Verdict, check_bound, check_request
from ..protocol import Texts
from ..protocol.negotiate import NegotiateError, TransportType, negotiate
from ..protocol.websocket import accept_key
from .connections import ConnectionTable, HttpConnection, Refusal
from .http import (
    BAD_UPGRADE,
    host_problem,
    log_refusal,
    parse_headers,
    parse_query,
    route_path,
    upgrade_problem,
)
from .listening import BACKLOG, AcceptPacer, isolated, listen_socket
from .native_ws import FrameCache, NativeWebSocketTransport

if TYPE_CHECKING:
    from ..hub.server import HubRegistration, HubServer

__all__ = ["serve_native"]

log = logging.getLogger("triohub.transports")

_HEAD_LIMIT = 16 * 1024
"""Largest request line + headers; beyond it 431."""
_BODY_LIMIT = 64 * 1024
"""Largest body of a request this server reads (negotiate sends none)."""
_IDLE_TIMEOUT = 5.0
"""Seconds a kept-alive HTTP connection may wait for its next request."""
_REQUEST_TIMEOUT = 10.0
"""Seconds a started request may take to arrive whole."""
_REASONS = {
    200: "OK",
    101: "Switching Protocols",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    426: "Upgrade Required",
    503: "Service Unavailable",
    431: "Request Header Fields Too Large",
}


_FORBIDDEN = re.compile(r"[\r\n\x00]")


class _BadRequest(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class _Request:
    __slots__ = ("headers", "method", "path", "query", "raw_headers", "version")

    def __init__(self, head: bytes) -> None:
        try:
            text = head.decode("latin-1")
            line, *lines = text.split("\r\n")
            self.method, target, self.version = line.split(" ")
        except ValueError:
            raise _BadRequest(400, "malformed request line") from None
        if _FORBIDDEN.search(text.replace("\r\n", "")):
            # A bare CR or LF inside a line (a proxy might split there and see
            # other headers than we do: request smuggling), or a NUL.
            raise _BadRequest(400, "control character in the request head")
        if self.version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _BadRequest(400, "unsupported HTTP version")
        if target.startswith(("http://", "https://")):  # absolute form (RFC 9112 3.2.2)
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        if not target.startswith("/"):
            raise _BadRequest(400, "unsupported request target")
        raw_path, _, self.query = target.partition("?")
        self.path = route_path(raw_path)
        pairs: list[tuple[str, str]] = []
        for raw in lines:
            name, colon, value = raw.partition(":")
            if not colon or not name or name != name.strip() or " " in name:
                raise _BadRequest(400, "malformed header line")
            pairs.append((name, value.strip()))
        self.raw_headers = pairs
        self.headers = parse_headers(pairs)
        problem = host_problem(self.version[5:], self.headers.get("host", ()))
        if problem is not None:
            raise _BadRequest(400, problem)

    def header(self, name: str) -> str:
        return ",".join(self.headers.get(name, ()))

    def tokens(self, name: str) -> set[str]:
        return {token.strip().lower() for token in self.header(name).split(",")}

    @property
    def keep_alive(self) -> bool:
        if self.version == "HTTP/1.0":
            return "keep-alive" in self.tokens("connection")
        return "close" not in self.tokens("connection")

    @property
    def wants_upgrade(self) -> bool:
        return "websocket" in self.tokens("upgrade") and "upgrade" in self.tokens("connection")

    def info(self, hub_path: str | None, client: tuple[str, int] | None) -> RequestInfo:
        return RequestInfo(
            method=self.method,
            path=self.path,
            query=parse_query(self.query),
            headers=self.headers,
            client=client,
            scheme="ws" if self.wants_upgrade else "http",
            hub_path=hub_path,
        )


@attrs.frozen
class _Upgraded:
    """A request that became a WebSocket: what its hub connection needs."""

    registration: HubRegistration
    transport: NativeWebSocketTransport
    connection_id: str
    principal: Principal
    connection: HttpConnection | None
    """The negotiated table entry, removed when the socket ends."""


class _Connection:
    """One accepted socket until it upgrades or closes."""

    def __init__(
        self,
        server: HubServer,
        table: ConnectionTable,
        sock: socket.socket,
        client: tuple[str, int],
        frames: FrameCache,
    ) -> None:
        self.server = server
        self.table = table
        self.frames = frames
        self.sock = sock
        self.client = client
        self.buffer = bytearray()
        self.handed_over = False
        self.keep_alive = True
        """The current request lets the connection stay open after its answer."""
        self.http10 = False

    async def serve(self) -> None:
        try:
            first = True
            while True:
                head = None
                with trio.move_on_after(_REQUEST_TIMEOUT if first else _IDLE_TIMEOUT):
                    head = await self._read_head()
                if head is None:
                    return
                first = False
                # One scheduler turn per request: a client pipelining requests
                # (never blocking our reads or writes) cannot hold the loop.
                await trio.lowlevel.checkpoint()
                try:
                    request = _Request(head)
                    with trio.fail_after(_REQUEST_TIMEOUT):
                        await self._skip_body(request)
                except (_BadRequest, trio.TooSlowError) as error:
                    status = error.status if isinstance(error, _BadRequest) else 400
                    await self._respond(status, str(error).encode() or b"", close=True)
                    return
                self.keep_alive = request.keep_alive
                self.http10 = request.version == "HTTP/1.0"
                answered = await self._handle(request)
                # An upgraded connection lives on in this frame: it keeps
                # nothing of the request (headers, the token) but the principal.
                del request, head
                if isinstance(answered, _Upgraded):
                    await self._run(answered)
                    return
                if not answered or not self.keep_alive:
                    return
        except (OSError, trio.BrokenResourceError, trio.TooSlowError):
            pass  # gone, or it stopped reading our answers
        finally:  # any other error: ``listening.isolated`` logs it, in one line
            if not self.handed_over:
                trio.lowlevel.notify_closing(self.sock)
                self.sock.close()

    # -- reading -----------------------------------------------------------------

    async def _read_head(self) -> bytes | None:
        while True:
            end = self.buffer.find(b"\r\n\r\n", 0, _HEAD_LIMIT + 4)
            if end >= 0:
                head = bytes(self.buffer[:end])
                del self.buffer[: end + 4]
                return head
            if len(self.buffer) >= _HEAD_LIMIT + 4:
                await self._respond(431, b"", close=True)
                return None
            data = await self._recv()
            if not data:
                return None

    async def _recv(self) -> bytes:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
                continue
            self.buffer += data
            return data

    async def _skip_body(self, request: _Request) -> None:
        if "transfer-encoding" in request.headers:
            raise _BadRequest(411, "chunked request bodies are not accepted here")
        raw = request.header("content-length") or "0"
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 12):
            raise _BadRequest(400, "bad Content-Length")
        size = int(raw)
        if size > _BODY_LIMIT:
            raise _BadRequest(413, "request body too large")
        while len(self.buffer) < size:
            if not await self._recv():
                raise _BadRequest(400, "the body ended early")
        del self.buffer[:size]

    # -- writing -----------------------------------------------------------------

    async def _send_all(self, data: bytes) -> None:
        """Write it all, within ``_REQUEST_TIMEOUT``.

        Raises:
            trio.TooSlowError: the client does not read (the connection ends).
        """
        view = memoryview(data)
        with trio.fail_after(_REQUEST_TIMEOUT):
            while view:
                try:
                    sent = self.sock.send(view)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(self.sock)
                    continue
                view = view[sent:]

    async def _respond(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "text/plain",
        headers: tuple[tuple[bytes, bytes], ...] = (),
        close: bool = False,
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            f"Content-Length: {len(body)}",
            f"Content-Type: {content_type}",
        ]
        for raw_name, raw_value in headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            if _FORBIDDEN.search(name + value):
                log.error("dropped a response header with a control character: %s", name)
                continue
            lines.append(f"{name}: {value}")
        if close or not self.keep_alive:
            lines.append("Connection: close")
        elif self.http10:
            lines.append("Connection: keep-alive")
        await self._send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    # -- routing -----------------------------------------------------------------

    async def _handle(self, request: _Request) -> bool | _Upgraded:
        """Answer one request; ``False`` when the connection must end, an
        ``_Upgraded`` when it became a WebSocket (101 sent)."""
        hubs = self.server.hubs
        negotiate_route = False
        registration = hubs.get(request.path)
        if registration is None and request.path.endswith("/negotiate"):
            registration = hubs.get(request.path[: -len("/negotiate")])
            negotiate_route = registration is not None
        if registration is None:
            await self._respond(404, b"Not Found")
            return True
        if negotiate_route:
            if request.method != "POST":
                await self._respond(405, b"")
                return True
            if not self.server.accepting:
                await self._respond(503, b"The server is shutting down", close=True)
                return False
            verdict = await self._verdict(request, registration)
            if verdict.allowed:
                await self._negotiate(request, registration, verdict)
            return True
        if request.method == "GET" and request.wants_upgrade:
            return await self._upgrade(request, registration)
        if request.method not in ("GET", "POST", "DELETE"):
            await self._respond(405, b"")
            return True
        await self._http_request(request, registration)
        return True

    async def _http_request(self, request: _Request, registration: HubRegistration) -> None:
        """A GET / POST / DELETE on a hub path that is not an upgrade: checked in
        the ASGI app's order (identity, id, owner), then answered as a server
        that serves WebSockets only."""
        verdict = await self._verdict(request, registration)
        if not verdict.allowed:
            return
        token = (parse_query(request.query).get("id") or ("",))[0]
        if not token:
            await self._respond(400, Texts.CONNECTION_ID_REQUIRED.encode())
            return
        connection = self.table.get(token)
        if connection is None or connection.registration is not registration:
            await self._respond(404, Texts.NO_CONNECTION.encode())
            return
        if connection.principal is not None:
            checked = check_bound(verdict, connection.principal, request.info(None, self.client))
            if not checked.allowed:
                await self._respond(checked.status, b"", headers=checked.headers)
                return
        if request.method == "POST":
            if connection.transport is TransportType.WEBSOCKETS:
                await self._respond(405, Texts.POST_NOT_ALLOWED_FOR_WEBSOCKETS.encode())
            else:  # nothing receives for it (no transport request yet)
                await self._respond(404, Texts.NO_CONNECTION.encode())
        elif request.method == "DELETE":
            await self._respond(400, Texts.DELETE_NOT_ALLOWED.encode())
        else:
            wanted = (
                TransportType.SERVER_SENT_EVENTS
                if "text/event-stream" in request.header("accept")
                else TransportType.LONG_POLLING
            )
            await self._respond(404, Texts.transport_not_supported(wanted.value).encode())

    async def _verdict(self, request: _Request, registration: HubRegistration) -> Verdict:
        """Authenticate and apply the hub policy; answers the refusal itself."""
        info = request.info(registration.path, self.client)
        verdict = await check_request(self.server, registration, info)
        if not verdict.allowed:
            log_refusal(info, verdict)
            await self._respond(verdict.status, verdict.body, headers=verdict.headers)
        return verdict

    async def _negotiate(
        self, request: _Request, registration: HubRegistration, verdict: Verdict
    ) -> None:
        enabled = [t for t in registration.options.transports if t is TransportType.WEBSOCKETS]
        result = negotiate(request.query, transports=enabled)
        if not isinstance(result, NegotiateError):
            self.table.add(
                result.connection_token, result.connection_id, registration, verdict.principal
            )
        await self._respond(200, result.body, content_type="application/json")

    async def _upgrade(self, request: _Request, registration: HubRegistration) -> bool | _Upgraded:
        problem = upgrade_problem(request.version[5:], request.headers)
        if problem is not None:
            status, headers = BAD_UPGRADE
            await self._respond(status, problem.encode(), headers=headers, close=True)
            return False
        key = request.header("sec-websocket-key")
        verdict = await self._verdict(request, registration)
        if not verdict.allowed:
            return True
        token = (parse_query(request.query).get("id") or ("",))[0]
        info = request.info(registration.path, self.client)
        claimed = self.table.claim_websocket(token, registration, verdict, info)
        if isinstance(claimed, Refusal):
            if claimed.status in (401, 403):
                log.info(
                    "WebSocket %s refused with %d: not the negotiating user",
                    request.path,
                    claimed.status,
                )
            await self._respond(claimed.status, claimed.body, headers=claimed.headers)
            return True
        connection_id, connection = claimed
        if not self.server.accepting:
            if connection is not None:
                self.table.remove(connection.token)
            await self._respond(503, b"The server is shutting down", close=True)
            return False
        try:
            await self._send_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_key(key).encode()
                + b"\r\n\r\n"
            )
        except BaseException:
            if connection is not None:
                self.table.remove(connection.token)
            raise
        limit = registration.options.max_message_size
        transport = NativeWebSocketTransport(
            self.sock,
            bytes(self.buffer),
            None if limit is None else max(limit * 2, 65536),
            frames=self.frames,
        )
        self.handed_over = True  # the transport closes the socket now
        self.buffer = bytearray()
        return _Upgraded(registration, transport, connection_id, verdict.principal, connection)

    async def _run(self, upgraded: _Upgraded) -> None:
        """The hub connection of an upgraded socket, to its end."""
        transport = upgraded.transport
        try:
            await self.server.connect(
                upgraded.registration,
                transport,
                connection_id=upgraded.connection_id,
                principal=upgraded.principal,
                on_protocol=transport.use_protocol,
            )
        finally:
            await transport.aclose()  # idempotent: normally closed already
            if upgraded.connection is not None:
                self.table.remove(upgraded.connection.token)


async def serve_native(
    server: HubServer,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    backlog: int = BACKLOG,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the hubs of a running ``server`` with triohub's own HTTP/1.1 and
    WebSocket server until cancelled.

    ``host, port = await nursery.start(serve_native, server)``.

    Args:
        server: the hubs (already running).
        host: the address to listen on.
        port: the port (0: any free one).
        backlog: the listen backlog (connections the kernel queues before
            they are accepted).

    Raises:
        ListenError: the address cannot be bound (an ``OSError``).
    """
    listener = listen_socket(host, port, backlog, server="native server")
    pacer = AcceptPacer(f"native server on {host}:{listener.getsockname()[1]}")
    try:
        table = ConnectionTable()
        frames = FrameCache()  # this server's, shared by its WebSockets
        async with trio.open_nursery() as nursery:
            nursery.start_soon(table.reap)
            task_status.started((host, listener.getsockname()[1]))
            while True:
                await trio.lowlevel.wait_readable(listener)
                for _ in range(backlog):
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
                    connection = _Connection(server, table, sock, client, frames)
                    nursery.start_soon(
                        isolated, connection.serve, f"{client[0]}:{client[1]}", "HTTP connection"
                    )
    finally:
        trio.lowlevel.notify_closing(listener)
        listener.close()
