"""Stateful reconnect across nodes: a resume relayed to the node that holds the connection.

In a cluster (``transports.cluster``) a client's resume (a WebSocket request
with its connection token, ``resumable.py``) may reach a node that does not
hold the connection. The connection stays where it is: its in-flight
invocations, server streams, groups and user registration live in the
holder's nursery and router, and moving them would mean waiting for them or
serialising Trio tasks. Instead the receiving node relays the new WebSocket's
bytes to the holder, which resumes the connection over that relay exactly as
it resumes over a local WebSocket:

1. the receiving node checks the request (authentication, the token's
   signature and user: 401 / 403 before anything is forwarded) and forwards a
   ``RESUME`` request on the connection's forward channel (``forwarding.py``),
   naming a fresh relay channel of its own and the credential's expiry;
   nobody there (the holder was killed): 404, the client falls back to a
   fresh connection;
2. the holder checks the user again, answers 200 with the connection's hub
   protocol and a relay channel of its own, and waits for ``START``;
3. the receiving node accepts the WebSocket, subscribes to its channel and
   publishes ``START``; the holder calls ``ResumableLink.resume`` with a
   ``RelayedSocket``: the Sequence, the replay and every later write are
   published to the receiving node, which writes them to its WebSocket; what
   the client sends is published to the holder.

Relay messages are MessagePack arrays ``[n, kind, payload]`` numbered from 0 per
direction; a gap (Redis lost a message), an unread backlog past ``INBOX`` or
``END`` ends the relay, which the holder sees as a dropped WebSocket: the
client resumes again and the replay buffer covers what was lost. Either side
notices the other's death: a publish nobody receives, and, while idle, the
receiving node asks every ``HOLDER_CHECK`` seconds whether the holder still
subscribes.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import msgpack
import trio

from ..backplane.hub import BackplaneUnavailable, Link
from ..hub.access import Verdict, user_digest
from ..protocol import HubProtocol, Texts
from .actions import Respond
from .connections import Refusal
from .forwarding import HOLDER_CHECK, ForwardedRequest, Forwarder, holder_gone

if TYPE_CHECKING:
    from ..hub.server import HubRegistration, HubServer
    from .actions import WebSocketTransport
    from .connections import HttpConnection

__all__ = ["RESUME", "RelayedResume", "RelayedSocket", "ask_holder", "serve_resume"]

log = logging.getLogger("triohub.transports")

RESUME = "RESUME"
"""The ``ForwardedRequest.method`` of a resume relayed to the holder."""
START, DATA, END = 0, 1, 2
INBOX = 4096
"""Relay messages one side may hold unread before it gives the relay up."""
START_TIMEOUT = 10.0
"""How long the holder waits for ``START`` after it accepted a relayed resume
(the receiving node could not accept the WebSocket: nothing changes)."""
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def relay_channel(registration: HubRegistration, connection_id: str) -> str:
    """A fresh relay channel of one side of one relay."""
    assert registration.node is not None
    prefix = registration.node.channels.prefix
    return f"{prefix}:relay:{connection_id}:{secrets.token_hex(8)}"


class _Inbox:
    """The relay messages from the other side, in order (``handler`` is the
    backplane's handler); a gap, a malformed message or an overflow ends it."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[tuple[int, Any]](INBOX)
        self._next = 0

    def handler(self, data: bytes) -> None:
        try:
            number, kind, payload = msgpack.unpackb(data, raw=False)[:3]
        except (ValueError, TypeError, msgpack.UnpackException):
            number, kind, payload = -1, END, None
        if number != self._next:
            log.warning("a relay lost a message (expected %d, got %s): ended", self._next, number)
            self.close()
            return
        self._next += 1
        try:
            self._send.send_nowait((kind, payload))
        except trio.WouldBlock:
            log.warning("a relay's reader fell %d messages behind: ended", INBOX)
            self.close()
        except trio.ClosedResourceError:
            pass

    def close(self) -> None:
        self._send.close()

    async def get(self) -> tuple[int, Any]:
        """The next message; ``END`` once the relay ended."""
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return END, None


class _Outbox:
    """Numbered publishes to the other side's channel."""

    def __init__(self, link: Link, channel: str) -> None:
        self.link = link
        self.channel = channel
        self._next = 0

    def _pack(self, kind: int, payload: Any) -> bytes:
        data: bytes = msgpack.packb([self._next, kind, payload])
        self._next += 1
        return data

    async def put(self, kind: int, payload: Any) -> bool:
        """``False``: nobody received it (the other side is gone) or Redis is away."""
        try:
            return bool(await self.link.publish(self.channel, self._pack(kind, payload)))
        except BackplaneUnavailable:
            return False

    def end(self) -> None:
        self.link.publish_nowait(self.channel, self._pack(END, None))


# -- the holder's side --------------------------------------------------------------


class RelayedSocket:
    """On the holder: the WebSocket of a relayed resume, as ``ResumableLink``
    sees it (a ``WebSocketTransport``)."""

    name = "WebSockets"

    def __init__(self, link: Link, channel: str, peer: str) -> None:
        self.channel = channel
        self.inbox = _Inbox()
        self._outbox = _Outbox(link, peer)
        self._link = link
        self._closed = False

    async def started(self) -> bool:
        """Whether the receiving node accepted the WebSocket (``START``) in time."""
        with trio.move_on_after(START_TIMEOUT):
            kind, _ = await self.inbox.get()
            return kind == START
        return False

    def use_protocol(self, protocol: HubProtocol) -> None:
        pass  # the receiving node frames for its WebSocket

    async def receive(self) -> bytes | None:
        kind, payload = await self.inbox.get()
        if kind != DATA or not isinstance(payload, bytes):
            return None
        return payload

    async def send(self, chunks: Sequence[bytes]) -> None:
        frames = [chunk for chunk in chunks if chunk]
        if self._closed:
            raise trio.ClosedResourceError("the relay ended")
        if frames and not await self._outbox.put(DATA, frames):
            await self.aclose()
            raise trio.BrokenResourceError("the relaying node is gone")

    def send_nowait(self, data: bytes) -> bool:
        return False  # every write goes through the link's writer

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._link.unsubscribe(self.channel)
        self.inbox.close()
        self._outbox.end()
        await trio.lowlevel.checkpoint()


async def serve_resume(server: HubServer, connection: HttpConnection, body: bytes) -> Respond:
    """On the holder: a resume another node checked and forwarded (the user was
    checked again by the caller). 200 with ``[protocol, channel]``, then the
    connection resumes once the other node starts the relay."""
    link = connection.link
    protocol = None if link is None else link.protocol
    if link is None or not link.resumable or protocol is None:
        return Respond(409)  # as a second WebSocket on one node
    try:
        peer, expires_at = msgpack.unpackb(body, raw=False)[:2]
        peer = str(peer)
        expires_at = None if expires_at is None else float(expires_at)
    except (ValueError, TypeError, msgpack.UnpackException):
        return Respond(400)
    if expires_at is not None and not math.isfinite(expires_at):
        return Respond(400)
    if expires_at is not None and expires_at <= server.wall_time():
        return Respond(401)
    backplane = server.backplane
    assert backplane is not None
    registration = connection.registration
    socket = RelayedSocket(backplane, relay_channel(registration, connection.connection_id), peer)
    backplane.subscribe(socket.channel, socket.inbox.handler)
    await backplane.sync()
    deadline = server.credentials.deadline_at(expires_at, registration.options)
    server.spawn(_resume_relayed, link, socket, deadline)
    return Respond(
        200, msgpack.packb([protocol.name, socket.channel]), content_type="application/x-msgpack"
    )


async def _resume_relayed(link: Any, socket: RelayedSocket, deadline: float | None) -> None:
    try:
        if await socket.started():
            await link.resume(socket, deadline)
    finally:
        with trio.CancelScope(shield=True):
            await socket.aclose()


# -- the receiving node's side ------------------------------------------------------


@attrs.frozen
class RelayedResume:
    """On the receiving node: the holder accepted the resume; ``run`` pumps the
    accepted WebSocket to and from it until either side ends."""

    link: Link
    protocol: HubProtocol
    connection_id: str
    channel: str
    """This node's relay channel (the holder publishes here)."""
    holder: str
    """The holder's relay channel."""

    async def run(self, socket: WebSocketTransport) -> None:
        socket.use_protocol(self.protocol)
        inbox = _Inbox()
        outbox = _Outbox(self.link, self.holder)
        self.link.subscribe(self.channel, inbox.handler)
        try:
            await self.link.sync()
            if await outbox.put(START, None):
                log.info("connection %s: resume relayed to the node holding it", self.connection_id)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._up, socket, outbox, nursery.cancel_scope)
                    nursery.start_soon(self._down, socket, inbox, nursery.cancel_scope)
            else:
                log.info("connection %s: its holder went away", self.connection_id)
        finally:
            self.link.unsubscribe(self.channel)
            inbox.close()
            outbox.end()
            with trio.move_on_after(1.0) as scope:
                scope.shield = True
                await socket.aclose()

    async def _up(
        self, socket: WebSocketTransport, outbox: _Outbox, scope: trio.CancelScope
    ) -> None:
        """What the client sends, to the holder."""
        try:
            while (data := await socket.receive()) is not None:
                if not await outbox.put(DATA, data):
                    break
        except _GONE:
            pass
        scope.cancel()

    async def _down(
        self, socket: WebSocketTransport, inbox: _Inbox, scope: trio.CancelScope
    ) -> None:
        """What the holder writes, to the client."""
        try:
            while True:
                with trio.move_on_after(HOLDER_CHECK) as idle:
                    kind, payload = await inbox.get()
                if idle.cancelled_caught:
                    if await holder_gone(self.link, self.holder):
                        log.info("connection %s: its holder went away", self.connection_id)
                        break
                    continue
                if kind != DATA:
                    break
                await socket.send([bytes(frame) for frame in payload])
        except _GONE:
            pass
        scope.cancel()


async def ask_holder(
    forwarder: Forwarder,
    forward_channel: str,
    token: str,
    connection_id: str,
    registration: HubRegistration,
    verdict: Verdict,
) -> RelayedResume | Refusal:
    """On the receiving node: forward a resume the node checked already to the
    holder; the relay to run, or the holder's refusal (404: nobody holds it)."""
    channel = relay_channel(registration, connection_id)
    body = msgpack.packb([channel, verdict.principal.expires_at])
    request = ForwardedRequest(RESUME, token, False, user_digest(verdict.principal), body)
    answer = await forwarder.forward(forward_channel, request, 0.0)
    if answer.status != 200:
        return Refusal(answer.status, answer.body, answer.headers)
    try:
        name, holder = msgpack.unpackb(answer.body, raw=False)[:2]
        protocol = registration.protocols[str(name)]
    except (ValueError, TypeError, KeyError, msgpack.UnpackException):
        return Refusal(404, Texts.NO_CONNECTION.encode())
    return RelayedResume(forwarder.link, protocol, connection_id, channel, str(holder))
