"""What a server must do with a request (``Endpoint.decide``'s answers), and the
facts of a request as a server parsed them (``HttpRequest``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol

import attrs

from ..actors.supervisor import Transport
from ..auth.principal import Principal
from ..auth.request import RequestInfo
from ..protocol import HubProtocol
from .connections import HttpConnection
from .http import NO_CACHE, parse_query
from .longpolling import LongPollingTransport, PollOutcome, hold_poll
from .sse import SseTransport

if TYPE_CHECKING:
    from ..hub.server import HubRegistration
    from .relay import RelayedResume

__all__ = [
    "BOTH_FRAMINGS",
    "POST_LIMIT",
    "SHUTTING_DOWN",
    "Action",
    "BodySink",
    "Fallback",
    "HttpRequest",
    "OpenEventStream",
    "OpenWebSocket",
    "Poll",
    "ReadBody",
    "Respond",
    "WebSocketTransport",
    "answer_request",
]

POST_LIMIT = 1024 * 1024
"""Largest POST body (one or more records) accepted from an HTTP transport."""
SHUTTING_DOWN = b"The server is shutting down"
BOTH_FRAMINGS = b"Transfer-Encoding and Content-Length together"
"""The 400 body for a request framed both ways (request smuggling)."""

Header = tuple[bytes, bytes]


class WebSocketTransport(Transport, Protocol):
    """A hub transport that frames by the hub protocol (text or binary)."""

    def use_protocol(self, protocol: HubProtocol) -> None: ...


class BodySink(Protocol):
    """Where a POST's body goes: a connection's ``Inbound``, or in a cluster the
    node that holds the connection (``cluster.ForwardedBody``)."""

    async def put(self, body: bytes) -> bool:
        """``False``: the connection is gone (404)."""
        ...


@attrs.frozen
class HttpRequest:
    """The facts of one request, as a server parsed them."""

    method: str
    path: str
    """Routed path (``http.route_path``: percent-decoded, except ``%2F``)."""
    query: str = ""
    """The raw query string."""
    headers: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    """Lower-case names to their values (``http.parse_headers``)."""
    http_version: str = "1.1"
    websocket: bool = False
    """The request asks to become a WebSocket (an ASGI ``websocket`` scope, or
    ``Upgrade: websocket`` with ``Connection: upgrade``)."""
    client: tuple[str, int] | None = None

    def header(self, name: str) -> str:
        return ",".join(self.headers.get(name, ()))

    def info(self, hub_path: str | None) -> RequestInfo:
        """What authentication and policies see of the request."""
        return RequestInfo(
            method=self.method,
            path=self.path,
            query=parse_query(self.query),
            headers=self.headers,
            client=self.client,
            scheme="ws" if self.websocket else "http",
            hub_path=hub_path,
        )


# -- what a server must do ---------------------------------------------------------------


@attrs.frozen
class Respond:
    """Answer with this complete response."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain"
    headers: tuple[Header, ...] = ()
    close: bool = False
    """End the HTTP connection after the answer (a server that can, does)."""


@attrs.frozen
class Fallback:
    """Not a hub path: the fallback app serves it."""


@attrs.frozen
class OpenWebSocket:
    """Accept the upgrade and run the hub connection over it; then
    ``Endpoint.release(connection)``."""

    registration: HubRegistration
    connection_id: str
    principal: Principal
    connection: HttpConnection | None
    """The negotiated table entry (``None`` when the client skipped negotiation)."""
    resume: bool = False
    """The socket resumes ``connection`` (stateful reconnect): it carries the
    live hub connection on, and ending it ends nothing else."""
    relay: RelayedResume | None = None
    """The socket resumes a connection another node of the cluster holds: its
    bytes are relayed there (``relay.py``)."""


@attrs.frozen
class OpenEventStream:
    """Start the event stream and run the hub connection in this request
    (``sse.serve_event_stream``)."""

    connection: HttpConnection
    transport: SseTransport
    principal: Principal


@attrs.frozen
class Poll:
    """Hold this long poll (``answer_request``)."""

    transport: LongPollingTransport
    hold: float


@attrs.frozen
class ReadBody:
    """Read the body (at most ``limit`` bytes, else 413) and hand it to the
    connection (``answer_request``)."""

    inbound: BodySink
    limit: int = POST_LIMIT


Action = Respond | Fallback | OpenWebSocket | OpenEventStream | Poll | ReadBody


async def answer_request(
    action: Respond | ReadBody | Poll,
    read_body: Callable[[int], Awaitable[bytes | None]],
    wait_disconnect: Callable[[], Awaitable[None]],
) -> Respond:
    """The complete response to a request that gets one: ``Respond`` as it is, a
    POST once its body is handed to the connection, a long poll once held until
    records, a supersede, the end or the timeout. The same on every server,
    which gives only its I/O: ``read_body(limit)`` (``None`` past ``limit``
    bytes) and ``wait_disconnect()`` (returns if the client leaves)."""
    if isinstance(action, Respond):
        return action
    if isinstance(action, ReadBody):
        body = await read_body(action.limit)
        if body is None:
            # The rest of the body is unread: the connection cannot carry on.
            return Respond(413, b"Request body too large", close=True)
        if not await action.inbound.put(body):
            return Respond(404)
        return Respond(200)
    outcome, data = await hold_poll(action.transport, action.hold, wait_disconnect)
    if outcome is PollOutcome.DATA:
        return Respond(200, data, content_type="application/octet-stream", headers=NO_CACHE)
    if outcome is PollOutcome.TIMEOUT:
        # As the reference: an empty text/plain 200 means "poll again".
        return Respond(200, headers=NO_CACHE)
    return Respond(204, headers=NO_CACHE)
