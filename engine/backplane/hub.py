"""``HubNode``: one hub's side of the backplane (the router's ``Backplane`` seam).

A send is encoded once per protocol the hub supports and published once per
channel it names; the node that receives it hands the framed bytes to its
router, which writes them straight into its local outboxes. The node that
published has delivered locally already, so it skips its own messages.

What the node subscribes to follows what it holds: the hub-wide channels
(``all``, ``close``, its ack and return channels) for its whole life, a
connection's channel while the connection lives, a user's or a group's while
it has a local connection of that user or a local member of that group (the
router reports first and last).

The link to the message broker is a ``Link`` (``RedisBackplane``); this module
imports no Redis client.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ..actors.kit import Reply
from ..actors.routing import Audience, Interest, JoinResult, Payload
from ..actors.supervisor import CloseReason
from ..hub.hub import HubError
from ..protocol import Completion, HubProtocol, Invocation
from . import codec
from .codec import Ack, Channels, GroupAction, GroupCommand

if TYPE_CHECKING:
    from ..actors.router import Router

__all__ = ["BackplaneUnavailable", "FramedPayload", "HubNode", "Link"]

log = logging.getLogger("triohub.backplane")

DISCONNECTED = "Connection disconnected."
"""What a client result gets when its client goes away first (ASP.NET's text)."""


class BackplaneUnavailable(HubError):
    """The message broker cannot be reached right now."""


class Link(Protocol):
    """A node's link to the broker (``RedisBackplane``), shared by its hubs."""

    @property
    def server_name(self) -> str: ...

    def subscribe(self, channel: str, handler: Any) -> None: ...

    def unsubscribe(self, channel: str) -> None: ...

    def publish_nowait(self, channel: str, data: bytes) -> None: ...

    async def publish(self, channel: str, data: bytes) -> int: ...

    async def sync(self) -> None: ...

    async def subscribers(self, channel: str) -> int: ...

    async def claim(self, key: str, ttl: float) -> str | None: ...

    async def mark(self, key: str, value: str, ttl: float) -> None: ...

    async def flush(self) -> None: ...

    async def wait_connected(self) -> None: ...

    async def wait_disconnected(self) -> None: ...

    async def keep(self, key: str, member: bytes, until: float) -> None:
        """Add ``member`` to the set ``key`` in the broker until the Unix time ``until``."""

    async def kept(self, key: str, now: float) -> list[bytes]:
        """The members of the set ``key`` whose ``until`` is after ``now``."""
        ...

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...


class FramedPayload:
    """A send from another node: already framed for every protocol."""

    __slots__ = ("_framed",)

    def __init__(self, framed: Mapping[str, bytes]) -> None:
        self._framed = framed

    def encode(self, key: str) -> bytes:
        return self._framed[key]


class HubNode:
    """Args:
    link: the process's link to the broker.
    prefix: the hub's channel prefix.
    protocols: the hub's protocols (every send is framed for each).
    ack_timeout: how long a group command for a remote connection waits for
        its ack once PUBLISH said some node holds the connection.
    result_timeout: how long a holder waits for its client's result.
    """

    def __init__(
        self,
        link: Link,
        prefix: str,
        protocols: Mapping[str, HubProtocol],
        *,
        ack_timeout: float = 30.0,
        result_timeout: float = 30.0,
    ) -> None:
        self.link = link
        self.channels = Channels(prefix)
        self.protocols = protocols
        self.ack_timeout = ack_timeout
        self.result_timeout = result_timeout
        self.server = link.server_name
        self._router: Router | None = None
        self._nursery: trio.Nursery | None = None
        self._acks: dict[int, Reply[Ack]] = {}
        self._results: dict[str, Reply[Completion]] = {}
        self._ids = itertools.count(1)
        self._tag = secrets.token_hex(3)

    # -- the router's seam ---------------------------------------------------------

    async def run(
        self, router: Router, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        channels = self.channels
        self._router = router
        fixed = {
            channels.all: self._on_all,
            channels.close: self._on_close,
            channels.ack(self.server): self._on_ack,
            channels.return_(self.server): self._on_return,
        }
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for channel, handler in fixed.items():
                    self.link.subscribe(channel, handler)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for channel in fixed:
                self.link.unsubscribe(channel)

    def interest(self, kind: Interest, name: str, present: bool) -> None:
        channels = self.channels
        if kind == "connection":
            channel = channels.connection(name)
            handler: Any = lambda data: self._on_connection(name, data)  # noqa: E731
        elif kind == "user":
            channel = channels.user(name)
            handler = lambda data: self._on_user(name, data)  # noqa: E731
        else:
            channel = channels.group(name)
            handler = lambda data: self._on_group(name, data)  # noqa: E731
        if present:
            self.link.subscribe(channel, handler)
        else:
            self.link.unsubscribe(channel)

    def publish(self, audience: Audience, payload: Payload) -> None:
        framed = {key: payload.encode(key) for key in self.protocols}
        channels = self.channels
        if audience.everyone:
            targets = [channels.all]
            groups: list[str] = []
        else:
            groups = sorted(audience.groups)
            targets = [
                *(channels.connection(c) for c in sorted(audience.connections - audience.exclude)),
                *(channels.user(u) for u in sorted(audience.users)),
                *(channels.group(g) for g in groups),
            ]
        data = codec.encode_invocation(
            sorted(audience.exclude),
            framed,
            origin=self.server,
            groups=groups if len(groups) > 1 else (),
        )
        for channel in targets:
            self.link.publish_nowait(channel, data)

    def close(self, audience: Audience, reason: CloseReason, detail: str) -> None:
        command = codec.CloseCommand(
            everyone=audience.everyone,
            connections=tuple(sorted(audience.connections)),
            users=tuple(sorted(audience.users)),
            groups=tuple(sorted(audience.groups)),
            excluded=tuple(sorted(audience.exclude)),
            reason=reason.name,
            origin=self.server,
            detail=detail,
        )
        self.link.publish_nowait(self.channels.close, codec.encode_close(command))

    # -- what the engine asks ------------------------------------------------------

    async def ready(self) -> None:
        """Returns once the subscriptions for what this node holds are in place."""
        await self.link.sync()

    async def group_command(self, action: GroupAction, connection_id: str, group: str) -> bool:
        """Add or remove a connection another node holds; returns whether applied
        (``False``: refused, the connection is in too many groups).

        Raises:
            HubError: no node holds the connection (at once), the broker is
                unreachable, or no ack came within ``ack_timeout``.
        """
        command_id = next(self._ids) & 0x7FFFFFFF
        reply: Reply[Ack] = Reply()
        self._acks[command_id] = reply
        try:
            command = GroupCommand(command_id, self.server, action, group, connection_id)
            receivers = await self.link.publish(
                self.channels.connection(connection_id), codec.encode_group_command(command)
            )
            if receivers == 0:
                raise HubError(f"Connection '{connection_id}' does not exist.")
            with trio.move_on_after(self.ack_timeout):
                return (await reply.wait()).applied
            raise HubError(
                f"No node acknowledged the group command for connection '{connection_id}' "
                f"within {self.ack_timeout:g} s."
            )
        finally:
            self._acks.pop(command_id, None)

    async def invoke(
        self, connection_id: str, method: str, args: tuple[Any, ...], *, limit: float
    ) -> Any:
        """A client result from a connection another node holds.

        Raises:
            HubError: as locally: not connected (at once: no node holds it), the
                client's error, no answer within ``limit``; or the broker is
                unreachable.
        """
        invocation_id = f"{self._tag}.{next(self._ids)}"
        message = Invocation(method, args, invocation_id)
        framed = {key: protocol.encode(message) for key, protocol in self.protocols.items()}
        reply: Reply[Completion] = Reply()
        self._results[invocation_id] = reply
        try:
            data = codec.encode_invocation(
                (),
                framed,
                invocation_id=invocation_id,
                return_channel=self.channels.return_(self.server),
                origin=self.server,
            )
            receivers = await self.link.publish(self.channels.connection(connection_id), data)
            if receivers == 0:
                raise HubError(f"Connection '{connection_id}' is not connected.")
            with trio.move_on_after(limit):
                completion = await reply.wait()
                if completion.error is not None:
                    raise HubError(completion.error)
                return completion.result
            raise HubError(
                f"Client '{connection_id}' did not answer '{method}' within {limit:g} s."
            )
        finally:
            self._results.pop(invocation_id, None)

    # -- what other nodes send -----------------------------------------------------

    def _invocation(self, data: bytes) -> codec.RemoteInvocation | None:
        return codec.decode_foreign_invocation(data, self.server)

    def _on_all(self, data: bytes) -> None:
        message = self._invocation(data)
        if message is not None and self._router is not None:
            audience = Audience(everyone=True, exclude=frozenset(message.excluded))
            self._router.deliver(audience, FramedPayload(message.framed))

    def _on_user(self, user: str, data: bytes) -> None:
        message = self._invocation(data)
        if message is not None and self._router is not None:
            audience = Audience(users=frozenset((user,)), exclude=frozenset(message.excluded))
            self._router.deliver(audience, FramedPayload(message.framed))

    def _on_group(self, group: str, data: bytes) -> None:
        message = self._invocation(data)
        if message is None or self._router is None:
            return
        before: frozenset[str] = frozenset()
        if group in message.groups:
            before = frozenset(message.groups[: message.groups.index(group)])
        audience = Audience(
            groups=frozenset((group,)), exclude=frozenset(message.excluded), exclude_groups=before
        )
        self._router.deliver(audience, FramedPayload(message.framed))

    def _on_connection(self, connection_id: str, data: bytes) -> None:
        message = codec.decode_connection_message(data)
        if self._router is None or self._nursery is None:
            return
        if isinstance(message, GroupCommand):
            self._nursery.start_soon(self._apply_group_command, message)
        elif message.invocation_id is not None and message.return_channel is not None:
            self._nursery.start_soon(self._answer_client_result, connection_id, message)
        elif message.origin != self.server and connection_id not in message.excluded:
            audience = Audience(connections=frozenset((connection_id,)))
            self._router.deliver(audience, FramedPayload(message.framed))

    def _on_close(self, data: bytes) -> None:
        command = codec.decode_close(data)
        if command.origin == self.server or self._router is None:
            return
        try:
            reason = CloseReason[command.reason]
        except KeyError:
            reason = CloseReason.ABORTED
        audience = Audience(
            everyone=command.everyone,
            connections=frozenset(command.connections),
            users=frozenset(command.users),
            groups=frozenset(command.groups),
            exclude=frozenset(command.excluded),
        )
        self._router.close_local(audience, reason, command.detail)

    def _on_ack(self, data: bytes) -> None:
        ack = codec.decode_ack(data)
        reply = self._acks.get(ack.id)
        if reply is not None:
            reply.set(ack)

    def _on_return(self, data: bytes) -> None:
        returned = codec.decode_return(data)
        protocol = self.protocols.get(returned.protocol)
        if protocol is None:
            log.warning("a client result came back in unknown protocol %r", returned.protocol)
            return
        decoder = protocol.decoder()
        decoder.receive_data(returned.framed)
        message = decoder.next_message()
        if not isinstance(message, Completion):
            log.warning("a client result came back as %s", type(message).__name__)
            return
        reply = self._results.get(message.invocation_id)
        if reply is not None:
            reply.set(message)

    async def _apply_group_command(self, command: GroupCommand) -> None:
        assert self._router is not None
        if command.action is GroupAction.ADD:
            applied = await self._router.join(command.connection_id, command.group)
            ok = applied is not JoinResult.REFUSED
            if applied is JoinResult.JOINED:
                await self.ready()  # the group's channel, before the ack
        else:
            await self._router.leave(command.connection_id, command.group)
            ok = True
        self.link.publish_nowait(
            self.channels.ack(command.server), codec.encode_ack(Ack(command.id, ok))
        )

    async def _answer_client_result(
        self, connection_id: str, message: codec.RemoteInvocation
    ) -> None:
        assert self._router is not None
        assert message.invocation_id is not None
        assert message.return_channel is not None
        invocation_id = message.invocation_id
        session = await self._router.lookup(connection_id)
        completion: Completion | None = None
        protocol_name = next(iter(self.protocols))
        if session is not None:
            protocol_name = session.protocol_name
            with trio.move_on_after(self.result_timeout):
                completion = await session.remote_result(invocation_id, message.framed)
        if completion is None:
            completion = Completion.with_error(invocation_id, DISCONNECTED)
        framed = self.protocols[protocol_name].encode(completion)
        self.link.publish_nowait(
            message.return_channel,
            codec.encode_return(codec.ReturnedCompletion(protocol_name, framed)),
        )
