"""The router actor: who is connected, which user holds which connections,
which groups exist, and fan-out of messages to them.

It knows nothing of SignalR. A connection registers an *outbox* (a bounded
memory channel of encoded bytes), a protocol key, a user id and a ``close``
callback. A send names an ``Audience`` and carries a ``Payload`` that can
encode itself for a protocol key; the router encodes it once per key present
among the recipients and pushes the same bytes into every outbox with
``send_nowait``. A full outbox means a slow consumer: that connection is closed
through its callback, and nobody else waits for it.

Everything a send reaches is decided inside the actor, in mailbox order, so a
group join followed by a send to that group (from the same task) always sees
the join.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs
import trio

from .kit import ActorStopped, Mailbox, Reply
from .supervisor import CloseReason

__all__ = [
    "Audience",
    "Backplane",
    "ConnectionEntry",
    "Outbox",
    "Payload",
    "Router",
    "RouterStats",
]

log = logging.getLogger("triohub.router")


class Outbox(Protocol):
    """Where the router puts a connection's encoded records: a bounded
    ``trio.MemorySendChannel[bytes]`` or anything that behaves like one."""

    def send_nowait(self, value: bytes) -> None:
        """Raises ``trio.WouldBlock`` when full, ``trio.ClosedResourceError`` /
        ``trio.BrokenResourceError`` when the connection is closing."""
        ...


class Payload(Protocol):
    """Something the router can encode for each protocol key it meets."""

    def encode(self, key: str) -> bytes: ...


Admits = Callable[[Any], bool]
"""Whether the connection of a ``ConnectionEntry.handle`` receives a send."""


@attrs.frozen
class Audience:
    """Which connections a send reaches.

    The union of ``everyone``, ``connections``, the connections of ``users`` and
    the members of ``groups``, minus ``exclude`` (connection ids).
    """

    everyone: bool = False
    connections: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()


@attrs.define(eq=False)
class ConnectionEntry:
    """What the router keeps for one connection."""

    connection_id: str
    protocol: str
    """Key passed to ``Payload.encode``."""
    outbox: Outbox
    close: Callable[[CloseReason, str], None]
    """Asks the connection to close with a reason and a detail (slow consumer,
    shutdown, an abort with the error the client is told); must not block."""
    user_id: str | None = None
    handle: Any = None
    """Opaque object for the owner (the engine's per-connection session)."""
    groups: set[str] = attrs.field(factory=set)


class Backplane(Protocol):
    """The seam for a multi-node deployment.

    The router hands every locally originated send to ``publish``; a backplane
    delivers sends from other nodes by calling the ``deliver`` callback given to
    ``run`` (which queues them into this router). The default is none.
    """

    async def publish(self, audience: Audience, payload: Payload) -> None: ...

    async def run(
        self,
        deliver: Callable[[Audience, Payload], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None: ...


@attrs.frozen
class RouterStats:
    connections: int
    users: int
    groups: int
    slow_consumers: int


# -- commands ---------------------------------------------------------------


@attrs.frozen
class _Register:
    entry: ConnectionEntry


@attrs.frozen
class _Unregister:
    connection_id: str


@attrs.frozen
class _Join:
    connection_id: str
    group: str
    reply: Reply[bool]


@attrs.frozen
class _Leave:
    connection_id: str
    group: str


@attrs.frozen
class _Send:
    audience: Audience
    payload: Payload
    local_only: bool = False
    admits: Admits | None = None


@attrs.frozen
class _Lookup:
    connection_id: str
    reply: Reply[Any]


@attrs.frozen
class _Stats:
    reply: Reply[RouterStats]


@attrs.frozen
class _Barrier:
    reply: Reply[None]


@attrs.frozen
class _Close:
    audience: Audience
    reason: CloseReason
    detail: str = ""


_Command = _Register | _Unregister | _Join | _Leave | _Send | _Lookup | _Stats | _Close | _Barrier


def _reply_of(command: _Command) -> Reply[Any] | None:
    return getattr(command, "reply", None)


class Router:
    """The router actor. Start it with ``await nursery.start(router.run)``.

    Args:
        mailbox_size: commands that may queue before senders wait.
        backplane: optional multi-node seam (see ``Backplane``).
        max_groups_per_connection: groups one connection may be in;
            ``add_to_group`` past it is refused.
    """

    def __init__(
        self,
        *,
        mailbox_size: int = 1024,
        backplane: Backplane | None = None,
        max_groups_per_connection: int | None = None,
    ) -> None:
        self._mailbox: Mailbox[_Command] = Mailbox("router", mailbox_size, _reply_of)
        self._backplane = backplane
        self._max_groups = max_groups_per_connection
        self._publish: trio.MemorySendChannel[_Send] | None = None
        self._connections: dict[str, ConnectionEntry] = {}
        self._users: dict[str, set[str]] = {}
        self._groups: dict[str, set[str]] = {}
        self._slow_consumers = 0

    # -- the actor ----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the mailbox until cancelled."""
        async with trio.open_nursery() as nursery:
            if self._backplane is not None:
                send, receive = trio.open_memory_channel[_Send](1024)
                self._publish = send
                nursery.start_soon(self._pump_to_backplane, self._backplane, receive)
                await nursery.start(self._backplane.run, self._deliver_remote)
            task_status.started()
            try:
                await self._mailbox.serve(self._handle)
            finally:
                nursery.cancel_scope.cancel()

    async def _pump_to_backplane(
        self, backplane: Backplane, receive: trio.MemoryReceiveChannel[_Send]
    ) -> None:
        async for send in receive:
            await backplane.publish(send.audience, send.payload)

    def _deliver_remote(self, audience: Audience, payload: Payload) -> None:
        try:
            self._mailbox.tell_nowait(_Send(audience, payload, local_only=True))
        except (trio.WouldBlock, ActorStopped):
            log.warning("router mailbox full or stopped: dropped a send from the backplane")

    def _handle(self, command: _Command) -> None:
        match command:
            case _Send(audience, payload, local_only, admits):
                self._fan_out(audience, payload, admits)
                if self._publish is not None and not local_only:
                    try:
                        self._publish.send_nowait(command)
                    except trio.WouldBlock:
                        log.warning("backplane is not keeping up: dropped a send")
            case _Register(entry):
                self._register(entry)
            case _Unregister(connection_id):
                self._unregister(connection_id)
            case _Join(connection_id, group, join_reply):
                join_reply.set(self._join(connection_id, group))
            case _Leave(connection_id, group):
                self._leave(connection_id, group)
            case _Lookup(connection_id, reply):
                found = self._connections.get(connection_id)
                reply.set(found.handle if found is not None else None)
            case _Barrier(barrier_reply):
                barrier_reply.set(None)
            case _Stats(stats_reply):
                stats_reply.set(
                    RouterStats(
                        connections=len(self._connections),
                        users=len(self._users),
                        groups=len(self._groups),
                        slow_consumers=self._slow_consumers,
                    )
                )
            case _Close(audience, reason, detail):
                for connection_id in list(self._recipients(audience)):
                    target = self._connections.get(connection_id)
                    if target is not None:
                        target.close(reason, detail)

    def _register(self, entry: ConnectionEntry) -> None:
        if entry.connection_id in self._connections:
            log.error("connection %s registered twice; keeping the first", entry.connection_id)
            entry.close(CloseReason.INTERNAL_ERROR, "registered twice")
            return
        self._connections[entry.connection_id] = entry
        if entry.user_id is not None:
            self._users.setdefault(entry.user_id, set()).add(entry.connection_id)

    def _unregister(self, connection_id: str) -> None:
        entry = self._connections.pop(connection_id, None)
        if entry is None:
            return
        if entry.user_id is not None:
            _discard(self._users, entry.user_id, connection_id)
        for group in entry.groups:
            _discard(self._groups, group, connection_id)

    def _join(self, connection_id: str, group: str) -> bool:
        entry = self._connections.get(connection_id)
        if entry is None or group in entry.groups:
            return True  # unknown or gone: a no-op, as the reference does
        if self._max_groups is not None and len(entry.groups) >= self._max_groups:
            return False
        entry.groups.add(group)
        self._groups.setdefault(group, set()).add(connection_id)
        return True

    def _leave(self, connection_id: str, group: str) -> None:
        entry = self._connections.get(connection_id)
        if entry is not None and group in entry.groups:
            entry.groups.discard(group)
            _discard(self._groups, group, connection_id)

    def _recipients(self, audience: Audience) -> Iterable[str]:
        if audience.everyone:
            ids: set[str] | Iterable[str] = self._connections.keys()
            if audience.exclude:
                return [c for c in ids if c not in audience.exclude]
            return list(ids)
        found: set[str] = set(audience.connections)
        for user in audience.users:
            found.update(self._users.get(user, ()))
        for group in audience.groups:
            found.update(self._groups.get(group, ()))
        return found - audience.exclude if audience.exclude else found

    def _fan_out(self, audience: Audience, payload: Payload, admits: Admits | None = None) -> None:
        encoded: dict[str, bytes] = {}
        for connection_id in self._recipients(audience):
            entry = self._connections.get(connection_id)
            if entry is None:
                continue
            if admits is not None and not admits(entry.handle):
                continue
            data = encoded.get(entry.protocol)
            if data is None:
                try:
                    data = encoded[entry.protocol] = payload.encode(entry.protocol)
                except Exception:
                    log.exception("could not encode a send for protocol %r", entry.protocol)
                    return
            try:
                entry.outbox.send_nowait(data)
            except trio.WouldBlock:
                self._slow_consumers += 1
                log.warning(
                    "closing connection %s: its outbox is full (slow consumer)", connection_id
                )
                entry.close(CloseReason.SLOW_CONSUMER, "")
                self._unregister(connection_id)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # closing already; its unregister is on the way

    # -- the public face (any task) -----------------------------------------

    async def register(self, entry: ConnectionEntry) -> None:
        await self._mailbox.tell(_Register(entry))

    async def unregister(self, connection_id: str) -> None:
        await self._mailbox.tell(_Unregister(connection_id))

    def unregister_nowait(self, connection_id: str) -> None:
        """For cleanup paths that must not wait; falls back to nothing if full."""
        try:
            self._mailbox.tell_nowait(_Unregister(connection_id))
        except (trio.WouldBlock, ActorStopped):
            pass

    async def add_to_group(self, connection_id: str, group: str) -> bool:
        """Returns once the connection is in the group (or unknown: nothing to do).

        Returns:
            ``False`` if refused: the connection is in ``max_groups_per_connection``
            groups already.
        """
        return await self._mailbox.ask(lambda reply: _Join(connection_id, group, reply))

    async def remove_from_group(self, connection_id: str, group: str) -> None:
        await self._mailbox.tell(_Leave(connection_id, group))

    async def send(self, audience: Audience, payload: Payload) -> None:
        """Queue a send; returns once the router has it (fan-out follows in
        mailbox order). ``barrier`` waits for everything queued before it."""
        await self._mailbox.tell(_Send(audience, payload))

    async def send_admitted(self, audience: Audience, payload: Payload, admits: Admits) -> None:
        """``send`` to the recipients ``admits`` accepts (it is given each one's
        registered ``handle``, in the router's task: it must decide at once).

        Such a send reaches this router's connections only: a backplane would
        carry the payload without the filter, so it is never published."""
        await self._mailbox.tell(_Send(audience, payload, local_only=True, admits=admits))

    async def barrier(self) -> None:
        """Returns once every command queued before it has been handled: the
        sends are in their recipients' outboxes."""
        await self._mailbox.ask(_Barrier)

    async def lookup(self, connection_id: str) -> Any:
        """The ``handle`` registered for a connection, or ``None``."""
        return await self._mailbox.ask(lambda reply: _Lookup(connection_id, reply))

    async def stats(self) -> RouterStats:
        return await self._mailbox.ask(_Stats)

    async def close(self, audience: Audience, reason: CloseReason, detail: str = "") -> None:
        """Ask every connection of ``audience`` to close (it then unregisters
        itself); ``detail`` goes to each connection's ``close`` callback."""
        await self._mailbox.tell(_Close(audience, reason, detail))

    async def close_all(self, reason: CloseReason = CloseReason.SHUTDOWN) -> None:
        await self.close(Audience(everyone=True), reason)


def _discard(index: dict[str, set[str]], key: str, connection_id: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(connection_id)
        if not members:
            del index[key]
