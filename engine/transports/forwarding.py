"""Forwarding a long-polling or SSE request to the node that holds its connection.

In a cluster (``transports.cluster``) a POST, a DELETE or a later poll may
reach a node that does not hold the connection. That node checks the request
(its token's signature, authentication, the same-user rule) and publishes it
on the connection's forward channel ``{prefix}:forward:{connection_id}``,
which only the holder subscribes to, while it holds it. PUBLISH answers how
many received it: 0 means nobody holds the connection (404 at once). The
holder checks the user again, serves the request through the endpoint's own
rules (a poll is held there, the same 90 s, and superseded the same way; a
send is answered only once the connection took the bytes) and publishes the
answer on the asking endpoint's reply channel.

A WebSocket upgrade or an event stream for a connection another node holds
is not opened anywhere: the holder answers it as it would on its own (409 a
second transport, 400 another transport), so a node never has to guess from
the token's age. A refresh (``POST {hub}/refresh``) is forwarded with the
request's credential (query, headers, client address): the holder
authenticates it again and applies it (``refresh.py``); a credential never
travels for any other request. The backplane is inside the cluster's trust
boundary already (whoever can publish on it can forward as any user).

A forwarded poll whose client goes away is not lost on the way: the asking
node tells the holder to stop holding it (``CANCEL``), as a poll whose client
leaves stops on one node, and the records the holder took in the meantime
come back to it (``PUT_BACK``), first in the buffer again unless a later poll
took records since (putting them back then would reorder them).

Wire format (MessagePack arrays, ours, not ASP.NET's):
request ``[id, reply_channel, method, token, event_stream, user, body,
websocket, route, query, [[name, value], ...], client, taken]`` (readers take
the first seven when the rest is missing), answer ``[id, status, body,
content_type, [[name, value], ...], taken]``.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from contextlib import suppress

import attrs
import msgpack
import trio

from ..backplane.hub import BackplaneUnavailable, Link
from ..protocol import Texts
from .actions import Respond

__all__ = ["CANCEL", "PUT_BACK", "Answer", "ForwardedRequest", "Forwarder", "holder_gone"]

log = logging.getLogger("triohub.transports")

_REPLY_MARGIN = 10.0
"""How much longer than a poll's hold a node waits for the holder's answer
before it takes the holder for dead (404)."""
HOLDER_CHECK = 3.0
"""While waiting for the holder's answer, how often a node asks Redis whether
the holder still subscribes (one ``PUBSUB NUMSUB``): a killed holder's
forwarded polls answer 404 within this, not after the whole hold."""
CANCEL = "CANCEL"
"""The method of a message that stops a forwarded poll (its client left)."""
PUT_BACK = "PUT_BACK"
"""The method of a message that hands records a forwarded poll took, and could
not deliver, back to the holder's buffer."""


async def holder_gone(link: Link, channel: str) -> bool:
    """Whether the node that holds a connection, and subscribes to ``channel``,
    went away: what a node waiting on it (a forwarded poll, a relayed resume)
    asks every ``HOLDER_CHECK`` seconds.

    Gone when nobody subscribes to ``channel`` any more (a killed node's
    subscriptions go with its Redis connection), and when Redis cannot be
    asked: then this node's own link is down, and with it the subscription
    the holder's answers come on (Redis keeps nothing for a subscriber that
    is away), so nothing the holder sends can arrive; the client's next
    request starts afresh.
    """
    try:
        return not await link.subscribers(channel)
    except BackplaneUnavailable:
        return True


@attrs.frozen
class ForwardedRequest:
    """A request as the holder sees it."""

    method: str
    token: str
    event_stream: bool
    """It asked for ``text/event-stream``."""
    user: str
    """The asking node's verdict: ``user_digest`` of its principal."""
    body: bytes = attrs.field(repr=False)
    websocket: bool = False
    """A WebSocket upgrade: the holder says what it would answer, opens nothing."""
    route: str = ""
    """The hub's route (``endpoint.HUB`` or ``endpoint.REFRESH``)."""
    query: str = attrs.field(default="", repr=False)
    """A refresh's query string (it may carry ``access_token``: never in a repr)."""
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=False)
    """A refresh's headers (its credential: never in a repr), lower-case names."""
    client: tuple[str, int] | None = None
    """A refresh's client address (what authentication may look at)."""
    taken: int = 0
    """``PUT_BACK``: the ``Answer.taken`` of the poll that took ``body``."""

    def pack(self, number: int, reply: str) -> bytes:
        headers = [[name, value] for name, value in self.headers]
        client = None if self.client is None else list(self.client)
        items = [number, reply, self.method, self.token, self.event_stream, self.user, self.body]
        items += [self.websocket, self.route, self.query, headers, client, self.taken]
        packed: bytes = msgpack.packb(items)
        return packed


@attrs.frozen
class Answer:
    """The holder's answer to a forwarded request."""

    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[bytes, bytes], ...]
    taken: int = 0
    """A poll that took records: which take of its transport it was
    (``LongPollingTransport.taken``), to put them back if its client left."""

    @classmethod
    def of(cls, respond: Respond, taken: int = 0) -> Answer:
        return cls(respond.status, respond.body, respond.content_type, respond.headers, taken)

    def respond(self) -> Respond:
        return Respond(self.status, self.body, self.content_type, self.headers)


def _decode_request(data: bytes) -> tuple[int, str, ForwardedRequest] | None:
    try:
        items = msgpack.unpackb(data, raw=False)
        number, reply, method, token, event_stream, user, body = items[:7]
        websocket, route, query, headers, client, taken = [*items[7:], False, "", "", [], None, 0][
            :6
        ]
        request = ForwardedRequest(
            str(method),
            str(token),
            bool(event_stream),
            str(user),
            body,
            bool(websocket),
            str(route),
            str(query),
            tuple((str(name), str(value)) for name, value in headers),
            None if client is None else (str(client[0]), int(client[1])),
            int(taken),
        )
        if not isinstance(number, int) or not isinstance(reply, str) or not isinstance(body, bytes):
            return None
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        return None
    return number, reply, request


def _decode_answer(data: bytes) -> tuple[int, Answer] | None:
    try:
        items = msgpack.unpackb(data, raw=False)
        number, status, body, content_type, headers = items[:5]
        answer = Answer(
            int(status),
            bytes(body),
            str(content_type),
            tuple((bytes(k), bytes(v)) for k, v in headers),
            int(items[5]) if len(items) > 5 else 0,
        )
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    return int(number), answer


class Forwarder:
    """One endpoint's forwarding, both ways.

    Args:
        link: the backplane.
        spawn: starts a task that outlives the message handler (the server's nursery).
        serve: answers a forwarded request on the holder (``Endpoint``).
    """

    def __init__(
        self,
        link: Link,
        spawn: Callable[..., None],
        serve: Callable[[str, ForwardedRequest], Awaitable[Answer]],
    ) -> None:
        self.link = link
        self._spawn = spawn
        self._serve = serve
        self._reply_channel = f"triohub:forward-reply:{link.server_name}:{secrets.token_hex(4)}"
        self._subscribed = False
        self._numbers = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[Answer]] = {}
        self._serving: dict[tuple[str, int], trio.CancelScope] = {}
        """The forwarded requests this node is serving, by reply channel and number."""
        self.forwarded = 0
        """Requests this node forwarded to another."""
        self.served = 0
        """Forwarded requests this node served as the holder."""

    # -- the holder's side ---------------------------------------------------------

    def hold(self, channel: str, key: str) -> None:
        """Serve what other nodes forward on ``channel`` for connection ``key``."""

        def handler(data: bytes) -> None:
            decoded = _decode_request(data)
            if decoded is None:
                log.warning("dropped a malformed forwarded request on %s", channel)
                return
            number, reply, request = decoded
            if request.method == CANCEL:
                serving = self._serving.get((reply, number))
                if serving is not None:
                    serving.cancel()
                return
            self._spawn(self._answer, key, number, reply, request)

        self.link.subscribe(channel, handler)

    def release(self, channel: str) -> None:
        self.link.unsubscribe(channel)

    async def sync(self) -> None:
        await self.link.sync()

    async def _answer(self, key: str, number: int, reply: str, request: ForwardedRequest) -> None:
        self.served += 1
        # Nothing was taken from a poll stopped by CANCEL (a checkpoint lies
        # between a poll taking records and this answer being published).
        answer = Answer(204, b"", "text/plain", ())
        with trio.CancelScope() as scope:
            self._serving[reply, number] = scope
            try:
                answer = await self._serve(key, request)
            finally:
                del self._serving[reply, number]
        headers = [[k, v] for k, v in answer.headers]
        items = [number, answer.status, answer.body, answer.content_type, headers, answer.taken]
        self.link.publish_nowait(reply, msgpack.packb(items))

    # -- the asking side -------------------------------------------------------

    def _on_reply(self, data: bytes) -> None:
        decoded = _decode_answer(data)
        if decoded is None:
            log.warning("dropped a malformed forwarded answer")
            return
        number, answer = decoded
        waiter = self._waiting.pop(number, None)
        if waiter is not None:
            waiter.send_nowait(answer)

    async def forward(self, channel: str, request: ForwardedRequest, wait: float) -> Answer:
        """Ask the holder on ``channel``; 404 when nobody holds it or it does
        not answer within ``wait`` + a margin, 503 when Redis cannot be reached.
        A poll cancelled while the holder has it (its client left) is stopped
        there, and what it took comes back to the holder's buffer."""
        if not self._subscribed:
            self._subscribed = True
            self.link.subscribe(self._reply_channel, self._on_reply)
            await self.link.sync()
        number = next(self._numbers)
        send, receive = trio.open_memory_channel[Answer](1)
        self._waiting[number] = send
        data = request.pack(number, self._reply_channel)
        gone = Answer(404, Texts.NO_CONNECTION.encode(), "text/plain", ())
        held = False
        try:
            try:
                receivers = await self.link.publish(channel, data)
            except BackplaneUnavailable:
                log.warning("cannot forward a request: the backplane is unreachable")
                return Answer(503, b"The backplane is unreachable", "text/plain", ())
            if not receivers:
                return gone
            self.forwarded += 1
            held = request.method == "GET" and not (request.websocket or request.event_stream)
            with trio.move_on_after(wait + _REPLY_MARGIN):
                while True:
                    with trio.move_on_after(HOLDER_CHECK):
                        answer = await receive.receive()
                        held = False
                        return answer
                    if await holder_gone(self.link, channel):
                        break
            held = False
            log.warning("the node holding a connection went away during a forwarded request")
            return gone
        finally:
            if held:  # cancelled while the holder has it: its client left
                try:
                    self._spawn(self._abandon, channel, request, number, receive)
                except RuntimeError:  # the server stopped
                    held = False
            if not held:
                self._waiting.pop(number, None)

    async def _abandon(
        self,
        channel: str,
        request: ForwardedRequest,
        number: int,
        answers: trio.MemoryReceiveChannel[Answer],
    ) -> None:
        """A forwarded poll whose client left: the holder stops holding it, as
        a poll whose client leaves stops on one node; records it took before
        it heard of it go back to its buffer."""
        try:
            with suppress(BackplaneUnavailable):
                cancel = attrs.evolve(request, method=CANCEL)
                await self.link.publish(channel, cancel.pack(number, self._reply_channel))
            answer = None
            with trio.move_on_after(_REPLY_MARGIN):
                answer = await answers.receive()
        finally:
            self._waiting.pop(number, None)
        if answer is None or not answer.taken:
            return
        back = attrs.evolve(request, method=PUT_BACK, body=answer.body, taken=answer.taken)
        put = await self.forward(channel, back, 0.0)
        if put.status != 202:
            log.warning(
                "dropped the records of a forwarded poll whose client left (%d): %s",
                put.status,
                "a later poll took records first" if put.status == 409 else "its connection ended",
            )
