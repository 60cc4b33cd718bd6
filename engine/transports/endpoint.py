"""The SignalR HTTP endpoint, once for every server: what to answer to a request.

``Endpoint.decide`` takes a request's facts (``HttpRequest``: method, path, query,
headers, whether it asks for a WebSocket) and returns what the server must do
(``Action``): answer it (``Respond``), hand it to the fallback app, open a WebSocket,
an event stream, hold a long poll, or read a POST body into a connection. The ASGI
app (``asgi``), triohub's own server (``native``) and the trio-websocket server
(``trio_websocket``) only carry these decisions out on their I/O, so every server
gives the same answers by construction.

The rules, in order (``signalr-protocol.md`` sections 1-3):

1. routing: ``{hub}``, ``{hub}/negotiate`` and ``{hub}/refresh`` (authentication
   refresh in place, ``refresh.py``: it answers in JSON, refusals included); any
   other path goes to the fallback (404 without one);
2. methods (405) and WebSocket upgrade checks (400, RFC 6455 4.2.1), and a request
   carrying both ``Transfer-Encoding`` and ``Content-Length`` (400: a proxy might
   frame it differently, RFC 9112 6.1);
3. identity: authentication and the hub's policy (401 with the challenge / 403),
   before anything looks at connection ids;
4. the id (400 missing), its connection (404 unknown or of another hub), its owner
   (the negotiating user only: 401 / 403), its transport (405 / 400 / 409);
5. a server that is stopping opens no new hub connection (503, on negotiate and
   on every request that would start one).

Every refusal is logged in one line, never with a credential (refused upgrades
and authentication refusals at INFO, another user's id at WARNING).
``decide`` touches no socket: its one await is authentication (which may fetch
keys); the first poll of a long-polling connection starts that connection's
supervisor in the hub server's nursery. ``run_websocket`` runs the hub connection
of a WebSocket a server has accepted, the same for all three.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs
import trio

from ..auth.principal import ANONYMOUS, Principal
from ..auth.request import RequestInfo
from ..hub.access import ANONYMOUS_DIGEST, Verdict, check_bound, check_request, user_digest
from ..protocol import Texts
from ..protocol.negotiate import NegotiateError, TransportType, negotiate
from .actions import (
    BOTH_FRAMINGS,
    SHUTTING_DOWN,
    Action,
    Fallback,
    HttpRequest,
    LocalPoll,
    OpenEventStream,
    OpenWebSocket,
    Poll,
    ReadBody,
    Respond,
    WebSocketTransport,
    answer_request,
    poll_answer,
)
from .cluster import ClusterTokens, ForwardedBody, ForwardedPoll
from .connections import ConnectionTable, HttpConnection, Refusal, websocket_refusal
from .forwarding import PUT_BACK, Answer, ForwardedRequest
from .http import (
    BAD_UPGRADE,
    NO_CACHE,
    log_refusal,
    parse_headers,
    parse_query,
    upgrade_problem,
)
from .longpolling import LongPollingTransport, PollOutcome, run_long_polling
from .refresh import RefreshAnswer, refresh, refused_elsewhere
from .relay import RESUME, RelayedResume, serve_resume
from .resumable import ResumableLink, resumable_link
from .sse import Inbound, SseTransport

if TYPE_CHECKING:
    from ..hub.server import HubRegistration, HubServer

__all__ = ["Endpoint"]

log = logging.getLogger("triohub.transports")

HUB = ""
"""The route of ``{hub}`` itself: the transports' requests."""
NEGOTIATE = "/negotiate"
REFRESH = "/refresh"
"""``POST {hub}/refresh?id={token}``: a fresh credential replaces the connection's
principal in place (``refresh.py``)."""


_NOT_FOUND = Respond(404, b"Not Found")
_METHOD_NOT_ALLOWED = Respond(405)
_STOPPING = Respond(503, SHUTTING_DOWN, close=True)


def _refused(verdict: Verdict | Refusal) -> Respond:
    return Respond(verdict.status, verdict.body, headers=verdict.headers)


def _json(answer: RefreshAnswer) -> Respond:
    return Respond(
        answer.status, answer.body, content_type="application/json", headers=answer.headers
    )


def _refused_bound(info: RequestInfo, verdict: Verdict, refusal: Refusal) -> Respond:
    """A transport request refused; another user's (401 / 403) is logged."""
    if refusal.status in (401, 403):
        log_refusal(
            info, Verdict(verdict.principal, refusal.status, reason="not the negotiating user")
        )
    return _refused(refusal)


class Endpoint:
    """The hubs of ``server`` over HTTP: routing, negotiate and every transport
    request, with the negotiated connections (``connections``) they share.

    Args:
        server: the hubs.
        fallback: whether a fallback app serves the other paths (else 404).
    """

    def __init__(self, server: HubServer, *, fallback: bool = False) -> None:
        self.server = server
        self.fallback = fallback
        self.cluster: ClusterTokens | None = None
        """With a backplane and a ``connection_token_key``: tokens any node honours."""
        key = server.connection_token_key
        if key is None:
            self.connections = ConnectionTable()
        else:
            self.connections = ConnectionTable(on_remove=self._removed)
            self.cluster = ClusterTokens(server, key, self.connections, self._serve_forwarded)

    def route(self, path: str) -> tuple[HubRegistration | None, str]:
        """The hub of ``path`` and which of its routes it is: ``HUB`` (the
        transports), ``NEGOTIATE`` or ``REFRESH``."""
        hubs = self.server.hubs
        registration = hubs.get(path)
        if registration is not None:
            return registration, HUB
        for suffix in (NEGOTIATE, REFRESH):
            if path.endswith(suffix):
                registration = hubs.get(path[: -len(suffix)])
                if registration is not None:
                    return registration, suffix
        return None, HUB

    def _removed(self, connection: HttpConnection) -> None:
        if self.cluster is not None:
            self.cluster.removed(connection)

    async def _elsewhere(
        self,
        request: HttpRequest,
        registration: HubRegistration,
        verdict: Verdict,
        route: str = HUB,
    ) -> Action | None:
        """In a cluster, a request of a connection this node does not hold:
        ``None`` to go on here (this node holds it now), else the answer
        (a refresh's in its JSON shape)."""
        token = (parse_query(request.query).get("id") or ("",))[0]
        if self.cluster is None or not token or self.connections.get(token) is not None:
            return None
        info = request.info(registration.path)
        result = await self.cluster.elsewhere(token, registration, verdict, request, info, route)
        if result is None:
            return None
        if isinstance(result, ForwardedBody):
            return ReadBody(result)
        if isinstance(result, ForwardedPoll):
            return Poll(result, registration.options.long_poll_timeout)
        if isinstance(result, RelayedResume):
            return OpenWebSocket(
                registration, result.connection_id, verdict.principal, None, relay=result
            )
        if isinstance(result, Refusal):
            refused = _refused_bound(info, verdict, result)
            if route == REFRESH:
                return _json(refused_elsewhere(result.status, result.headers))
            return refused
        if route == REFRESH and result.content_type != "application/json":
            # Not the holder's answer (it answers a refresh in JSON): nobody
            # holds the connection (404), or Redis cannot be reached (503).
            return _json(refused_elsewhere(result.status))
        return Respond(result.status, result.body, result.content_type, result.headers)

    async def _refresh(
        self, request: HttpRequest, registration: HubRegistration, verdict: Verdict
    ) -> Respond:
        """``POST {hub}/refresh`` (``refresh.py``), on the node holding the
        connection or forwarded to it."""
        if verdict.allowed:
            elsewhere = await self._elsewhere(request, registration, verdict, REFRESH)
            if elsewhere is not None:
                assert isinstance(elsewhere, Respond)
                return elsewhere
        answer = await refresh(self.server, self.connections, registration, request.query, verdict)
        return _json(answer)

    async def _serve_forwarded(self, token: str, forwarded: ForwardedRequest) -> Answer:
        """On the holder: a request another node checked and forwarded. The
        user is checked again (a refresh is authenticated again), then the
        request goes through the same rules as one that arrived here."""
        connection = self.connections.get(token)
        if connection is None:
            return Answer.of(Respond(404, Texts.NO_CONNECTION.encode()))
        registration = connection.registration
        if forwarded.route == REFRESH:
            request = HttpRequest(
                "POST",
                registration.path + REFRESH,
                forwarded.query,
                headers=parse_headers(forwarded.headers),
                client=forwarded.client,
            )
            verdict = await self._verdict(request, registration)
            answer = await refresh(
                self.server, self.connections, registration, request.query, verdict
            )
            return Answer.of(_json(answer))
        principal = connection.principal or ANONYMOUS
        if user_digest(principal) not in (ANONYMOUS_DIGEST, forwarded.user):
            log.warning("refused a forwarded request on the connection of another user")
            return Answer.of(Respond(403))
        if forwarded.method == RESUME:
            return Answer.of(await serve_resume(self.server, connection, forwarded.body))
        if forwarded.method == PUT_BACK:
            channel = connection.channel
            if isinstance(channel, LongPollingTransport) and channel.put_back(
                forwarded.body, forwarded.taken
            ):
                return Answer.of(Respond(202))
            return Answer.of(Respond(409))
        opens = forwarded.websocket or (forwarded.method == "GET" and forwarded.event_stream)
        if opens and connection.transport is None:
            return Answer.of(Respond(409))  # its first transport request is being served here
        if forwarded.websocket:
            refusal = websocket_refusal(connection)
            assert refusal is not None  # the transport is bound
            return Answer.of(_refused(refusal))
        headers = {"accept": ("text/event-stream",)} if forwarded.event_stream else {}
        request = HttpRequest(forwarded.method, registration.path, f"id={token}", headers=headers)
        action = self._transport_request(request, registration, Verdict(principal))
        if isinstance(action, Fallback | OpenWebSocket | OpenEventStream):
            return Answer.of(Respond(409))  # pragma: no cover - never forwarded
        if isinstance(action, Poll):
            assert isinstance(action.source, LocalPoll)
            transport = action.source.transport
            outcome, body = await transport.poll(action.hold)
            # No checkpoint from here to the answer's publication: a CANCEL
            # comes before the poll took anything, or after it was answered.
            taken = transport.taken if outcome is PollOutcome.DATA else 0
            return Answer.of(poll_answer(outcome, body), taken)

        async def read(limit: int) -> bytes | None:
            return forwarded.body if len(forwarded.body) <= limit else None

        # The receiving node read the body.
        return Answer.of(await answer_request(action, read, trio.sleep_forever))

    def release(self, connection: HttpConnection | None) -> None:
        """A WebSocket or event stream ended: its negotiated id is spent."""
        if connection is not None:
            self.connections.remove(connection.token)

    async def run_websocket(self, action: OpenWebSocket, transport: WebSocketTransport) -> None:
        """The hub connection of an accepted WebSocket, to its end (in the
        calling task); its negotiated id is spent afterwards. A resuming socket
        (``action.resume``) runs until another replaces it or the connection ends;
        a relayed one (``action.relay``) until the holder or the client ends it."""
        if action.relay is not None:
            await action.relay.run(transport)  # a resume, held by another node
            return
        connection = action.connection
        if action.resume:
            assert connection is not None
            assert connection.link is not None
            deadline = self.server.credentials.deadline_for(
                action.principal, action.registration.options
            )
            await connection.link.resume(transport, deadline)
            return
        link: ResumableLink | None = None
        if connection is not None and connection.stateful:
            options = action.registration.options
            link = resumable_link(
                transport,
                connection_id=action.connection_id,
                disconnect_timeout=options.disconnect_timeout,
                send_timeout=options.send_timeout,
            )
            connection.link = link
        try:
            await self.server.connect(
                action.registration,
                link or transport,
                connection_id=action.connection_id,
                principal=action.principal,
                on_protocol=(link or transport).use_protocol,
                resumable=link,
            )
        finally:
            self.release(connection)

    async def decide(self, request: HttpRequest) -> Action:
        """What to do with ``request`` (the rules of the module's docstring, in order)."""
        if "transfer-encoding" in request.headers and "content-length" in request.headers:
            return Respond(400, BOTH_FRAMINGS, close=True)
        registration, route = self.route(request.path)
        if registration is None:
            return Fallback() if self.fallback else _NOT_FOUND
        if request.websocket:
            if route != HUB:
                return _NOT_FOUND
            return await self._websocket(request, registration)
        if route != HUB and request.method != "POST":
            return _METHOD_NOT_ALLOWED
        if request.method not in ("GET", "POST", "DELETE"):
            return _METHOD_NOT_ALLOWED
        if route == NEGOTIATE and not self.server.accepting:
            return _STOPPING
        # Authentication and the hub policy come first, before any lookup.
        verdict = await self._verdict(request, registration)
        if route == REFRESH:
            return await self._refresh(request, registration, verdict)
        if not verdict.allowed:
            return _refused(verdict)
        if route == NEGOTIATE:
            return self._negotiate(request, registration, verdict.principal)
        elsewhere = await self._elsewhere(request, registration, verdict)
        if elsewhere is not None:
            return elsewhere
        return self._transport_request(request, registration, verdict)

    async def _verdict(self, request: HttpRequest, registration: HubRegistration) -> Verdict:
        info = request.info(registration.path)
        verdict = await check_request(self.server, registration, info)
        log_refusal(info, verdict)
        return verdict

    def _negotiate(
        self, request: HttpRequest, registration: HubRegistration, principal: Principal
    ) -> Respond:
        options = registration.options
        result = negotiate(
            request.query,
            transports=options.transports,
            allow_stateful_reconnect=options.allow_stateful_reconnect,
        )
        if isinstance(result, NegotiateError):
            return Respond(200, result.body, content_type="application/json")
        if self.cluster is not None:
            # Signed: any node verifies it at the first transport request.
            result = self.cluster.mint(registration, principal, result)
        else:
            self.connections.add(
                result.connection_token,
                result.connection_id,
                registration,
                principal,
                stateful=result.use_stateful_reconnect,
            )
        lifetime = self.server.credentials.token_lifetime(
            principal, registration.options.allow_authentication_refresh
        )
        if lifetime is not None:
            result = attrs.evolve(result, token_lifetime_seconds=lifetime)
        return Respond(200, result.body, content_type="application/json")

    async def _websocket(self, request: HttpRequest, registration: HubRegistration) -> Action:
        problem = upgrade_problem(request.http_version, request.headers)
        if problem is not None:
            # Refused before anything else (hypercorn takes any key).
            log.info("%s %s refused with 400: %s", request.method, request.path, problem)
            status, headers = BAD_UPGRADE
            return Respond(status, headers=headers, close=True)
        verdict = await self._verdict(request, registration)
        if not verdict.allowed:
            return _refused(verdict)
        token = (parse_query(request.query).get("id") or ("",))[0]
        elsewhere = await self._elsewhere(request, registration, verdict)
        if elsewhere is not None:
            return elsewhere
        info = request.info(registration.path)
        resumed = self._resume(token, registration, verdict, info)
        if resumed is not None:
            return resumed
        claimed = self.connections.claim_websocket(token, registration, verdict, info)
        if isinstance(claimed, Refusal):
            return _refused_bound(info, verdict, claimed)
        connection_id, connection = claimed
        if not self.server.accepting:
            self.release(connection)
            return _STOPPING
        return OpenWebSocket(registration, connection_id, verdict.principal, connection)

    def _resume(
        self, token: str, registration: HubRegistration, verdict: Verdict, info: RequestInfo
    ) -> Action | None:
        """A WebSocket request for a resumable connection's token: resume it
        (stateful reconnect), only for the connection's own user; ``None``: not
        such a request."""
        connection = self.connections.get(token) if token else None
        if connection is None or connection.registration is not registration:
            return None
        link = connection.link
        if link is None or not link.resumable:
            return None
        if connection.principal is not None:
            checked = check_bound(verdict, connection.principal, info)
            if not checked.allowed:
                log_refusal(info, checked)
                return _refused(checked)
        return OpenWebSocket(
            registration, connection.connection_id, verdict.principal, connection, resume=True
        )

    def _transport_request(
        self, request: HttpRequest, registration: HubRegistration, verdict: Verdict
    ) -> Action:
        """A GET / POST / DELETE of an SSE or long-polling connection."""
        token = (parse_query(request.query).get("id") or ("",))[0]
        if not token:
            return Respond(400, Texts.CONNECTION_ID_REQUIRED.encode())
        connection = self.connections.get(token)
        if connection is None or connection.registration is not registration:
            return Respond(404, Texts.NO_CONNECTION.encode())
        if connection.principal is not None:
            info = request.info(registration.path)
            checked = check_bound(verdict, connection.principal, info)
            if not checked.allowed:
                log_refusal(info, checked)
                return _refused(checked)
        method = request.method
        if method == "POST":
            if connection.transport is TransportType.WEBSOCKETS:
                return Respond(405, Texts.POST_NOT_ALLOWED_FOR_WEBSOCKETS.encode())
            channel = connection.channel
            if channel is None:
                # Nothing is receiving yet (no transport request): like the
                # reference, the bytes have nowhere to go.
                return Respond(404, Texts.NO_CONNECTION.encode())
            return ReadBody(channel.inbound)
        if method == "DELETE":
            if connection.transport is not TransportType.LONG_POLLING:
                return Respond(400, Texts.DELETE_NOT_ALLOWED.encode())
            channel = connection.channel
            assert isinstance(channel, LongPollingTransport)
            channel.end()
            return Respond(202)
        wanted = (
            TransportType.SERVER_SENT_EVENTS
            if "text/event-stream" in request.header("accept")
            else TransportType.LONG_POLLING
        )
        if wanted not in registration.options.transports:
            return Respond(404, Texts.transport_not_supported(wanted.value).encode())
        if connection.transport is not None and connection.transport is not wanted:
            return Respond(400, Texts.CANNOT_CHANGE_TRANSPORT.encode())
        if wanted is TransportType.SERVER_SENT_EVENTS:
            if connection.active or connection.transport is not None:
                return Respond(409)
            if not self.server.accepting:
                return _STOPPING
            transport = SseTransport(Inbound())
            connection.transport = wanted
            connection.active = True
            connection.principal = verdict.principal
            connection.channel = transport
            return OpenEventStream(connection, transport, verdict.principal)
        if connection.transport is None:
            if not self.server.accepting:
                return _STOPPING
            # The first poll binds the transport, starts the connection and
            # answers at once (the JS client requires this 200).
            poller = LongPollingTransport()
            connection.transport = wanted
            connection.principal = verdict.principal
            connection.channel = poller
            self.server.spawn(
                run_long_polling,
                self.server,
                self.connections,
                connection,
                poller,
                verdict.principal,
            )
            return Respond(200, content_type="application/octet-stream", headers=NO_CACHE)
        channel = connection.channel
        assert isinstance(channel, LongPollingTransport)
        return Poll(LocalPoll(channel), registration.options.long_poll_timeout)
