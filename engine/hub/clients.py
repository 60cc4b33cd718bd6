"""Who to send to: ``clients.all``, ``clients.user(uid)``, groups, and the
hub context for code outside hubs (ASP.NET's ``IHubContext``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ..actors.router import Router
from ..actors.routing import Admits, Audience, JoinResult
from ..actors.supervisor import CloseReason
from ..backplane.codec import GroupAction
from ..protocol import HubProtocol, Invocation, LocalProtocolError, Texts
from .hub import HubError, LimitExceeded
from .logs import clip

if TYPE_CHECKING:
    from ..backplane.hub import HubNode
    from .group_policies import GroupAdmission
    from .session import HubSession

__all__ = [
    "ClientProxy",
    "GroupManager",
    "HubCallerClients",
    "HubClients",
    "HubContext",
    "SingleClientProxy",
    "UnserializableError",
]


class UnserializableError(HubError, TypeError):
    """A send's arguments cannot be encoded for every client of the hub.

    A ``HubError``: raised out of a hub method, the caller sees why (the
    values usually came from a client); a ``TypeError`` for code that caught
    that before.
    """


class _InvocationPayload:
    """A non-blocking Invocation, encoded at most once per protocol."""

    __slots__ = ("_encoded", "_message", "_protocols")

    def __init__(self, message: Invocation, protocols: Mapping[str, HubProtocol]) -> None:
        self._message = message
        self._protocols = protocols
        self._encoded: dict[str, bytes] = {}

    def encode(self, key: str) -> bytes:
        data = self._encoded.get(key)
        if data is None:
            data = self._encoded[key] = self._protocols[key].encode(self._message)
        return data

    def check(self) -> None:
        """Encode for every protocol now, so the sender learns of a payload no
        client could receive (the router would only be able to log it)."""
        for key in self._protocols:
            self.encode(key)


@attrs.frozen
class _Lifetime:
    """What the client proxies need: the hub's router and protocols."""

    router: Router
    protocols: Mapping[str, HubProtocol]
    default_invoke_timeout: float
    max_group_name_length: int | None = None
    max_groups_per_connection: int | None = None
    node: HubNode | None = None
    """The hub's side of the backplane (``None``: this process only)."""
    admission: GroupAdmission | None = None
    """The hub's group policies, if it has any."""
    recipient_filter: Callable[[str, str], Admits] | None = None
    """``(policy, method)`` -> the filter of a send with a policy."""


Mark = Callable[[], None] | None
"""Told of every send made through a caller's proxies (see ``HubSession.settle``)."""


class ClientProxy:
    """A set of connections that can be sent a message."""

    __slots__ = ("_audience", "_lifetime", "_mark")

    def __init__(self, lifetime: _Lifetime, audience: Audience, mark: Mark = None) -> None:
        self._lifetime = lifetime
        self._audience = audience
        self._mark = mark

    async def send(self, method: str, *args: Any, policy: str | None = None) -> None:
        """Invoke ``method`` on every connection of this audience, not waiting for them.

        Returns once the router has the message; delivery to each connection is
        independent (a slow one is closed, never waited for).

        Args:
            policy: a registered policy each recipient's *current* principal
                must meet to receive it (checked as the message goes out, once
                per distinct principal; a connection refreshed to a principal
                without the role stops receiving). Its handlers must be plain
                ``def``. Such a send reaches the connections of this server only.

        Raises:
            UnknownPolicyError: ``policy`` is not registered.
            ValueError: ``policy`` has an ``async def`` handler.
            UnserializableError: an argument cannot be serialized by one of the
                hub's protocols (often a value a client sent, such as a
                MessagePack map with integer keys, broadcast to JSON clients).
        """
        payload = _InvocationPayload(Invocation(method, args), self._lifetime.protocols)
        try:
            payload.check()
        except LocalProtocolError as error:
            raise UnserializableError(
                f"Cannot send '{clip(method, 100)}': an argument cannot be serialized "
                f"({clip(error, 100)})."
            ) from None
        lifetime = self._lifetime
        if policy is None:
            await lifetime.router.send(self._audience, payload)
        else:
            assert lifetime.recipient_filter is not None  # set by map_hub
            admits = lifetime.recipient_filter(policy, method)
            await lifetime.router.send_admitted(self._audience, payload, admits)
        if self._mark is not None:
            self._mark()

    async def abort(self, error: str | None = None) -> None:
        """Close every connection of this audience (each gets ``{"type":7}``,
        without ``allowReconnect``, so clients do not come back on their own).

        Args:
            error: what the clients are told, as the Close record's ``error``
                (``"You were banned from the chat."``: the official clients
                report it as the reason their connection closed); none by default.
        """
        await self._lifetime.router.close(self._audience, CloseReason.ABORTED, error or "")


class SingleClientProxy(ClientProxy):
    """One connection: can also ``invoke`` and wait for the client's result."""

    __slots__ = ("_connection_id",)

    def __init__(self, lifetime: _Lifetime, connection_id: str, mark: Mark = None) -> None:
        super().__init__(lifetime, Audience(connections=frozenset((connection_id,))), mark)
        self._connection_id = connection_id

    async def invoke(self, method: str, *args: Any) -> Any:
        """Call a client method and return its result (client results).

        Waits at most the hub's ``client_result_timeout``; wrap the call in
        ``trio.fail_after`` / ``move_on_after`` for a shorter limit.

        Raises:
            HubError: the client answered with an error, is not connected, or
                did not answer in time.
        """
        lifetime = self._lifetime
        session: HubSession | None = await lifetime.router.lookup(self._connection_id)
        if session is None:
            if lifetime.node is not None:  # held by another node, or by none
                return await lifetime.node.invoke(
                    self._connection_id, method, args, limit=lifetime.default_invoke_timeout
                )
            raise HubError(f"Connection '{self._connection_id}' is not connected.")
        return await session.invoke_client(method, args, limit=lifetime.default_invoke_timeout)


def _ids(values: Iterable[str], what: str) -> frozenset[str]:
    if isinstance(values, str):
        raise TypeError(f"expected a collection of {what}, got the single string {values!r}")
    found = frozenset(values)
    if any(not isinstance(v, str) or not v for v in found):
        raise ValueError(f"{what} must be non-empty strings, got {sorted(map(repr, found))}")
    return found


class HubClients:
    """Every way to address connections of one hub (hub context and hubs)."""

    __slots__ = ("_lifetime", "_mark")

    def __init__(self, lifetime: _Lifetime, mark: Mark = None) -> None:
        self._lifetime = lifetime
        self._mark = mark

    def _proxy(self, **audience: Any) -> ClientProxy:
        return ClientProxy(self._lifetime, Audience(**audience), self._mark)

    @property
    def all(self) -> ClientProxy:
        return self._proxy(everyone=True)

    def all_except(self, connection_ids: Iterable[str]) -> ClientProxy:
        return self._proxy(everyone=True, exclude=_ids(connection_ids, "connection ids"))

    def client(self, connection_id: str) -> SingleClientProxy:
        return SingleClientProxy(self._lifetime, connection_id, self._mark)

    def clients(self, connection_ids: Iterable[str]) -> ClientProxy:
        return self._proxy(connections=_ids(connection_ids, "connection ids"))

    def group(self, group: str) -> ClientProxy:
        return self._proxy(groups=_ids((group,), "group names"))

    def groups(self, groups: Iterable[str]) -> ClientProxy:
        return self._proxy(groups=_ids(groups, "group names"))

    def group_except(self, group: str, connection_ids: Iterable[str]) -> ClientProxy:
        return self._proxy(
            groups=_ids((group,), "group names"),
            exclude=_ids(connection_ids, "connection ids"),
        )

    def user(self, user_id: str) -> ClientProxy:
        return self._proxy(users=_ids((user_id,), "user ids"))

    def users(self, user_ids: Iterable[str]) -> ClientProxy:
        return self._proxy(users=_ids(user_ids, "user ids"))


class HubCallerClients(HubClients):
    """``HubClients`` plus the caller-relative targets."""

    __slots__ = ("_caller",)

    def __init__(self, lifetime: _Lifetime, caller: str, mark: Mark = None) -> None:
        super().__init__(lifetime, mark)
        self._caller = caller

    @property
    def caller(self) -> SingleClientProxy:
        return self.client(self._caller)

    @property
    def others(self) -> ClientProxy:
        return self.all_except((self._caller,))

    def others_in_group(self, group: str) -> ClientProxy:
        return self.group_except(group, (self._caller,))


class GroupManager:
    """Adds and removes connections to and from groups (idempotent).

    Membership is per connection, in memory, and dropped when the connection
    ends. Adding an unknown connection id does nothing; with a backplane, a
    connection another node holds is added there (through its channel, with
    an ack), and one no node holds raises ``HubError`` at once.
    """

    __slots__ = ("_lifetime",)

    def __init__(self, lifetime: _Lifetime) -> None:
        self._lifetime = lifetime

    async def add(self, connection_id: str, group: str) -> None:
        """Add a connection to a group; returns once it is in.

        Raises:
            LimitExceeded: the name is longer than ``max_group_name_length``, or
                the connection is in ``max_groups_per_connection`` groups already.
            Unauthorized: the group has a policy (``map_hub(group_policies=...)``)
                that the connection's principal does not meet.
        """
        _ids((group,), "group names")
        lifetime = self._lifetime
        limit = lifetime.max_group_name_length
        if limit is not None and len(group) > limit:
            raise LimitExceeded(Texts.group_name_too_long(len(group), limit))
        admission = lifetime.admission
        if admission is not None:
            await admission.admit(connection_id, group)
        node = lifetime.node
        result = await lifetime.router.join(connection_id, group)
        if result is JoinResult.UNKNOWN and node is not None:
            applied = await node.group_command(GroupAction.ADD, connection_id, group)
            result = JoinResult.JOINED if applied else JoinResult.REFUSED
        elif result is JoinResult.JOINED and node is not None:
            await node.ready()  # the group's channel: other nodes' sends reach it now
        if result is JoinResult.REFUSED:
            raise LimitExceeded(Texts.too_many_groups(lifetime.max_groups_per_connection or 0))
        if admission is not None:
            admission.joined(connection_id, group)

    async def remove(self, connection_id: str, group: str) -> None:
        _ids((group,), "group names")
        lifetime = self._lifetime
        if lifetime.node is None:
            await lifetime.router.remove_from_group(connection_id, group)
        elif not await lifetime.router.leave(connection_id, group):
            await lifetime.node.group_command(GroupAction.REMOVE, connection_id, group)
        if lifetime.admission is not None:
            lifetime.admission.left(connection_id, group)


@attrs.frozen
class HubContext:
    """Send to a hub's clients from outside the hub (a background job, an
    HTTP endpoint): ``server.hub_context(ChatHub).clients.all.send(...)``."""

    clients: HubClients
    groups: GroupManager
