"""Connection tokens any node of a cluster can verify (no sticky sessions).

On one process the negotiated connections live in the endpoint's
``ConnectionTable``. In a cluster the transport request that follows a
negotiate may reach another node, so with a backplane and a
``connection_token_key`` the token a node hands out is self-contained and
signed (HMAC-SHA256 with the cluster's key):

    ``{connection_id}.{issued_ms}.{user}.{v}.{mac}``

- ``connection_id``: the random id (negotiate version 0 has none apart from the
  token: ``v`` is ``0`` and the whole token is the connection id, as on one node);
- ``issued_ms``: wall-clock milliseconds at negotiate; unused, the token
  expires after the hub's ``disconnect_timeout`` (as an unused negotiated
  connection is dropped on one node);
- ``user``: a digest of the negotiating principal's identity (``-`` anonymous),
  so another user's request gets the 403 of one node;
- ``v`` ends with ``r`` when negotiate granted stateful reconnect: the node that
  takes the WebSocket makes the connection resumable, and a resume that lands
  on another node is relayed to it (``transports.relay``);
- the MAC also covers the hub's path, so a token is valid on its hub only.

Whichever node accepts the first transport request (WebSocket upgrade, SSE
GET, first long poll) claims the token in Redis (``SET NX``, value: the node's
name, alive while the token could still be claimed) and holds the connection;
a second claim gets 409 while the holder lives and 404 once it ended or the
token expired. ``TokenSigner`` is pure (no I/O); ``Claims`` asks the backplane.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import attrs

from ..auth.principal import Principal
from ..auth.request import RequestInfo
from ..backplane.hub import BackplaneUnavailable
from ..hub.access import Verdict, check_bound, user_digest
from ..protocol import Texts
from ..protocol.negotiate import NegotiateResponse
from .connections import ConnectionTable, HttpConnection, Refusal
from .forwarding import Answer, ForwardedRequest, Forwarder
from .relay import RelayedResume, ask_holder

if TYPE_CHECKING:
    from ..hub.server import HubRegistration, HubServer
    from .actions import HttpRequest, Respond

__all__ = [
    "ENDED",
    "ClaimStore",
    "Claims",
    "ClusterTokens",
    "ForwardedBody",
    "TokenClaim",
    "TokenSigner",
    "derive_key",
]

log = logging.getLogger("triohub.transports")

ENDED = "ended"
"""The claim's value once its connection ended (a later claim gets 404)."""
_MAC_BYTES = 16


def derive_key(secret: str | bytes, purpose: str = "triohub connection tokens") -> bytes:
    """A connection-token key derived from a secret the nodes share already
    (the demo's ``DEMO_JWT_SECRET``), so one secret never signs two kinds of thing."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, purpose.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@attrs.frozen
class TokenClaim:
    """What a verified token says."""

    connection_id: str
    issued: float
    """Unix time of the negotiate."""
    user: str
    """``user_digest`` of the negotiating principal."""
    stateful: bool = False
    """Negotiate granted stateful reconnect."""


@attrs.frozen
class TokenSigner:
    """Signs and verifies connection tokens with the cluster's key."""

    key: bytes = attrs.field(repr=False)

    def _mac(self, hub_path: str, payload: str) -> str:
        message = f"{hub_path}\n{payload}".encode()
        return _b64(hmac.new(self.key, message, hashlib.sha256).digest()[:_MAC_BYTES])

    def mint(
        self,
        connection_id: str,
        hub_path: str,
        principal: Principal,
        issued: float,
        version: int,
        *,
        stateful: bool = False,
    ) -> tuple[str, str]:
        """The ``(connection_id, connection_token)`` of a negotiate answer."""
        v = ("1" if version >= 1 else "0") + ("r" if stateful else "")
        payload = f"{connection_id}.{int(issued * 1000)}.{user_digest(principal)}.{v}"
        token = f"{payload}.{self._mac(hub_path, payload)}"
        return (connection_id if v.startswith("1") else token), token

    def verify(self, token: str, hub_path: str) -> TokenClaim | None:
        """The token's claim, or ``None`` when it is not one of ours for this hub."""
        parts = token.split(".")
        if len(parts) != 5:
            return None
        connection_id, issued, user, v, mac = parts
        payload = f"{connection_id}.{issued}.{user}.{v}"
        if not hmac.compare_digest(mac, self._mac(hub_path, payload)):
            return None
        if not issued.isdigit() or v not in ("0", "1", "0r", "1r"):
            return None
        return TokenClaim(
            connection_id if v.startswith("1") else token,
            int(issued) / 1000,
            user,
            stateful=v.endswith("r"),
        )


class ClaimStore(Protocol):
    """Who holds a token (``RedisBackplane``): at most one node."""

    @property
    def server_name(self) -> str: ...

    async def claim(self, key: str, ttl: float) -> str | None:
        """Set ``key`` to this node's name unless it exists; ``None`` when this
        node got it, else the current value."""
        ...

    async def mark(self, key: str, value: str, ttl: float) -> None: ...


@attrs.frozen
class Claims:
    """The claims of one hub's tokens (keys ``{prefix}:token:{connection_id}``)."""

    store: ClaimStore
    prefix: str

    def key(self, connection_id: str) -> str:
        return f"{self.prefix}:token:{connection_id}"

    async def claim(self, connection_id: str, ttl: float) -> str | None:
        """``None``: this node holds it now; else who does (``ENDED``: nobody)."""
        return await self.store.claim(self.key(connection_id), ttl)

    async def end(self, connection_id: str, ttl: float) -> None:
        """The connection ended: a later claim gets 404 (kept ``ttl`` seconds,
        past which the token has expired anyway)."""
        await self.store.mark(self.key(connection_id), ENDED, ttl)


class ClusterTokens:
    """The endpoint's side of cluster tokens: mint at negotiate, adopt a token
    another node (or this one) minted at its first transport request, and mark
    the claim ended when the connection leaves ``table``."""

    def __init__(
        self,
        server: HubServer,
        key: bytes,
        table: ConnectionTable,
        serve: Callable[[str, ForwardedRequest], Awaitable[Respond]],
    ) -> None:
        assert server.backplane is not None
        self.server = server
        self.signer = TokenSigner(key)
        self.table = table
        self._store: ClaimStore = server.backplane
        self.forwarder = Forwarder(server.backplane, server.spawn, serve)

    def claims(self, registration: HubRegistration) -> Claims:
        assert registration.node is not None
        return Claims(self._store, registration.node.channels.prefix)

    def mint(
        self, registration: HubRegistration, principal: Principal, result: NegotiateResponse
    ) -> NegotiateResponse:
        connection_id, token = self.signer.mint(
            result.connection_id,
            registration.path,
            principal,
            self.server.wall_time(),
            result.negotiate_version,
            stateful=result.use_stateful_reconnect,
        )
        return attrs.evolve(result, connection_id=connection_id, connection_token=token)

    def _forward_channel(self, registration: HubRegistration, connection_id: str) -> str:
        return f"{self.claims(registration).prefix}:forward:{connection_id}"

    def _remaining(self, claim: TokenClaim, registration: HubRegistration) -> float:
        lifetime = registration.options.disconnect_timeout
        return claim.issued + lifetime - self.server.wall_time()

    def _check(
        self, token: str, registration: HubRegistration, verdict: Verdict, request: RequestInfo
    ) -> TokenClaim | Refusal:
        """The token's signature (404) and its user (401 / 403), on this node."""
        claim = self.signer.verify(token, registration.path)
        if claim is None:
            return Refusal(404, Texts.NO_CONNECTION.encode())
        checked = check_bound(verdict, claim.user, request)
        if not checked.allowed:
            return Refusal(checked.status, b"", checked.headers)
        return claim

    async def elsewhere(
        self,
        token: str,
        registration: HubRegistration,
        verdict: Verdict,
        request: HttpRequest,
        info: RequestInfo,
    ) -> Refusal | ForwardedBody | Answer | RelayedResume | None:
        """A request of a connection this node does not hold: ``None`` when
        this node now holds it (a transport's first request: go on locally),
        the body to forward (a POST), a resume relayed to the holder
        (``relay.py``), else the answer, forwarded to the holder when there is one.

        Refusals: 404 not ours / expired / ended, 401 / 403 another user,
        409 another node holds it, 503 the backplane cannot be asked.
        """
        claim = self._check(token, registration, verdict, info)
        if isinstance(claim, Refusal):
            return claim
        if request.websocket:
            # A resumable connection's holder hears resumes on its forward channel.
            adopted = await self._claim(
                token, claim, registration, verdict, forwardable=claim.stateful
            )
            if isinstance(adopted, HttpConnection):
                return None
            if claim.stateful and adopted.status in (404, 409):
                # A resume: relayed to the holder if there is one (else 404).
                channel = self._forward_channel(registration, claim.connection_id)
                return await ask_holder(
                    self.forwarder, channel, token, claim.connection_id, registration, verdict
                )
            return adopted
        event_stream = "text/event-stream" in request.header("accept")
        forwarded = ForwardedRequest(
            request.method, token, event_stream, user_digest(verdict.principal), b""
        )
        channel = self._forward_channel(registration, claim.connection_id)
        if request.method == "POST":
            return ForwardedBody(self.forwarder, channel, forwarded)
        if request.method == "GET" and self._remaining(claim, registration) > 0:
            adopted = await self._claim(token, claim, registration, verdict, forwardable=True)
            if isinstance(adopted, HttpConnection):
                return None
            if adopted.status != 409:
                return adopted
            if event_stream:
                return adopted  # a second event stream: 409, as on one node
        elif request.method == "GET" and event_stream:
            return Refusal(404, Texts.NO_CONNECTION.encode())
        hold = registration.options.long_poll_timeout if request.method == "GET" else 0.0
        return await self.forwarder.forward(channel, forwarded, hold)

    async def _claim(
        self,
        token: str,
        claim: TokenClaim,
        registration: HubRegistration,
        verdict: Verdict,
        *,
        forwardable: bool,
    ) -> HttpConnection | Refusal:
        remaining = self._remaining(claim, registration)
        if remaining <= 0:
            return Refusal(404, Texts.NO_CONNECTION.encode())
        try:
            holder = await self.claims(registration).claim(claim.connection_id, remaining + 1)
        except BackplaneUnavailable:
            log.warning("cannot claim a connection token: the backplane is unreachable")
            return Refusal(503, b"The backplane is unreachable")
        if holder is not None:
            if holder == ENDED or holder == self._store.server_name:
                return Refusal(404, Texts.NO_CONNECTION.encode())
            return Refusal(409)
        connection = self.table.add(
            token, claim.connection_id, registration, verdict.principal, stateful=claim.stateful
        )
        connection.issued = claim.issued
        if forwardable:
            # Subscribed before the first answer: the client's next request
            # may be on another node already.
            self.forwarder.hold(self._forward_channel(registration, claim.connection_id), token)
            await self.forwarder.sync()
        return connection

    def removed(self, connection: HttpConnection) -> None:
        """``table``'s removal hook: a claimed token's connection ended."""
        if connection.issued is None:
            return
        self.forwarder.release(
            self._forward_channel(connection.registration, connection.connection_id)
        )
        remaining = self._remaining(
            TokenClaim(connection.connection_id, connection.issued, ""), connection.registration
        )
        if remaining <= 0:
            return  # expired: refused before any claim is looked at
        try:
            self.server.spawn(
                self._end, connection.registration, connection.connection_id, remaining
            )
        except RuntimeError:
            pass  # the server stopped: the claim expires with the token

    async def _end(self, registration: HubRegistration, connection_id: str, ttl: float) -> None:
        try:
            await self.claims(registration).end(connection_id, ttl + 1)
        except BackplaneUnavailable:
            log.warning("cannot mark a connection token ended: the backplane is unreachable")


@attrs.frozen
class ForwardedBody:
    """A POST's body, handed to the holder (``ReadBody``): accepted only once
    the holder's connection took it."""

    forwarder: Forwarder
    channel: str
    request: ForwardedRequest

    async def put(self, body: bytes) -> bool:
        request = attrs.evolve(self.request, body=body)
        answer = await self.forwarder.forward(self.channel, request, 0.0)
        return answer.status == 200
