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
the join. Sends and closes from other nodes (``deliver``, ``close_local``) that
arrive with nothing queued after them join one mailbox command: a read of the
backplane's connection costs the router one step, not one per message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import attrs
import trio

from .kit import ActorStopped, Mailbox, Reply
from .routing import (
    Admits,
    Audience,
    Backplane,
    ConnectionEntry,
    Interest,
    JoinResult,
    Payload,
    RouterStats,
)
from .supervisor import CloseReason

__all__ = ["Router"]

log = logging.getLogger("triohub.router")


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
    reply: Reply[JoinResult]


@attrs.frozen
class _Leave:
    connection_id: str
    group: str
    reply: Reply[bool] | None = None


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
    local_only: bool = False


@attrs.frozen
class _Remote:
    """Sends and closes from other nodes, handled in order in one step."""

    commands: list[_Send | _Close]


_Command = (
    _Register
    | _Unregister
    | _Join
    | _Leave
    | _Send
    | _Lookup
    | _Stats
    | _Close
    | _Barrier
    | _Remote
)

_REMOTE_BATCH = 256
"""Commands from other nodes in one ``_Remote`` at most."""


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
        self._connections: dict[str, ConnectionEntry] = {}
        self._users: dict[str, set[str]] = {}
        self._groups: dict[str, set[str]] = {}
        self._slow_consumers = 0
        self._remote: list[_Send | _Close] | None = None
        """The commands of the last ``_Remote`` queued, while it may still grow."""
        self._remote_queued = 0
        """``Mailbox.queued`` right after it was queued."""

    # -- the actor ----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the mailbox until cancelled."""
        async with trio.open_nursery() as nursery:
            if self._backplane is not None:
                await nursery.start(self._backplane.run, self)
            task_status.started()
            try:
                await self._mailbox.serve(self._handle)
            finally:
                nursery.cancel_scope.cancel()

    def _handle(self, command: _Command) -> None:
        match command:
            case _Remote(commands):
                if commands is self._remote:
                    self._remote = None  # taken: what comes next goes in a new one
                for queued in commands:
                    self._handle(queued)
            case _Send(audience, payload, local_only, admits):
                self._fan_out(audience, payload, admits)
                if self._backplane is not None and not local_only:
                    remote = self._remote_part(audience)
                    if remote is not None:
                        self._backplane.publish(remote, payload)
            case _Register(entry):
                self._register(entry)
            case _Unregister(connection_id):
                self._unregister(connection_id)
            case _Join(connection_id, group, join_reply):
                join_reply.set(self._join(connection_id, group))
            case _Leave(connection_id, group, leave_reply):
                known = self._leave(connection_id, group)
                if leave_reply is not None:
                    leave_reply.set(known)
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
            case _Close(audience, reason, detail, local_only):
                for connection_id in list(self._recipients(audience)):
                    target = self._connections.get(connection_id)
                    if target is not None:
                        target.close(reason, detail)
                if self._backplane is not None and not local_only:
                    remote = self._remote_part(audience)
                    if remote is not None:
                        self._backplane.close(remote, reason, detail)

    def _remote_part(self, audience: Audience) -> Audience | None:
        """What other nodes must still do for ``audience``: all of it, except a
        send naming connections only, where those held here are done."""
        if audience.everyone or audience.users or audience.groups:
            return audience
        remote = frozenset(c for c in audience.connections if c not in self._connections)
        if not remote:
            return None
        return attrs.evolve(audience, connections=remote)

    def _interest(self, kind: Interest, name: str, present: bool) -> None:
        if self._backplane is not None:
            self._backplane.interest(kind, name, present)

    def _register(self, entry: ConnectionEntry) -> None:
        if entry.connection_id in self._connections:
            log.error("connection %s registered twice; keeping the first", entry.connection_id)
            entry.close(CloseReason.INTERNAL_ERROR, "registered twice")
            return
        self._connections[entry.connection_id] = entry
        self._interest("connection", entry.connection_id, True)
        if entry.user_id is not None:
            members = self._users.setdefault(entry.user_id, set())
            members.add(entry.connection_id)
            if len(members) == 1:
                self._interest("user", entry.user_id, True)

    def _unregister(self, connection_id: str) -> None:
        entry = self._connections.pop(connection_id, None)
        if entry is None:
            return
        self._interest("connection", connection_id, False)
        if entry.user_id is not None and _discard(self._users, entry.user_id, connection_id):
            self._interest("user", entry.user_id, False)
        for group in entry.groups:
            if _discard(self._groups, group, connection_id):
                self._interest("group", group, False)

    def _join(self, connection_id: str, group: str) -> JoinResult:
        entry = self._connections.get(connection_id)
        if entry is None:
            return JoinResult.UNKNOWN
        if group in entry.groups:
            return JoinResult.JOINED
        if self._max_groups is not None and len(entry.groups) >= self._max_groups:
            return JoinResult.REFUSED
        entry.groups.add(group)
        members = self._groups.setdefault(group, set())
        members.add(connection_id)
        if len(members) == 1:
            self._interest("group", group, True)
        return JoinResult.JOINED

    def _leave(self, connection_id: str, group: str) -> bool:
        entry = self._connections.get(connection_id)
        if entry is None:
            return False
        if group in entry.groups:
            entry.groups.discard(group)
            if _discard(self._groups, group, connection_id):
                self._interest("group", group, False)
        return True

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
        for group in audience.exclude_groups:
            found.difference_update(self._groups.get(group, ()))
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
        return await self.join(connection_id, group) is not JoinResult.REFUSED

    async def join(self, connection_id: str, group: str) -> JoinResult:
        """``add_to_group`` telling an unknown connection apart (a backplane
        then asks the node that holds it)."""
        return await self._mailbox.ask(lambda reply: _Join(connection_id, group, reply))

    async def remove_from_group(self, connection_id: str, group: str) -> None:
        await self._mailbox.tell(_Leave(connection_id, group))

    async def leave(self, connection_id: str, group: str) -> bool:
        """``remove_from_group``, once done; ``False``: no such connection here."""
        return await self._mailbox.ask(lambda reply: _Leave(connection_id, group, reply))

    def deliver(self, audience: Audience, payload: Payload) -> None:
        """A send from another node (through the backplane): local connections
        only, in mailbox order; never waits (a full mailbox drops it, logged)."""
        self._tell_remote(_Send(audience, payload, local_only=True))

    def close_local(self, audience: Audience, reason: CloseReason, detail: str = "") -> None:
        """A close from another node: local connections only; never waits."""
        self._tell_remote(_Close(audience, reason, detail, local_only=True))

    def _tell_remote(self, command: _Send | _Close) -> None:
        """Queue ``command``, in the ``_Remote`` queued last if nothing was queued
        after it and the router has not taken it yet: a read of the backplane's
        messages is then one step of the router, not one each (and one scheduler
        pass each), in the same order."""
        batch = self._remote
        if (
            batch is not None
            and self._mailbox.queued == self._remote_queued
            and len(batch) < _REMOTE_BATCH
        ):
            batch.append(command)
            return
        batch = [command]
        try:
            self._mailbox.tell_nowait(_Remote(batch))
        except (trio.WouldBlock, ActorStopped):
            log.warning("router mailbox full or stopped: dropped a command from the backplane")
            return
        self._remote = batch
        self._remote_queued = self._mailbox.queued

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


def _discard(index: dict[str, set[str]], key: str, connection_id: str) -> bool:
    """Returns whether ``key`` lost its last member."""
    members = index.get(key)
    if members is not None:
        members.discard(connection_id)
        if not members:
            del index[key]
            return True
    return False
