"""The router's vocabulary: what a connection registers, what a send names and
carries, and the seam a multi-node backplane plugs into."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs
import trio

from .supervisor import CloseReason

if TYPE_CHECKING:
    from .router import Router

__all__ = [
    "Admits",
    "Audience",
    "Backplane",
    "ConnectionEntry",
    "Interest",
    "JoinResult",
    "Outbox",
    "Payload",
    "RouterStats",
]


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
    the members of ``groups``, minus ``exclude`` (connection ids) and minus the
    members of ``exclude_groups`` (a backplane's send to several groups reaches
    a connection only through the first of them it is in).
    """

    everyone: bool = False
    connections: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    exclude_groups: frozenset[str] = frozenset()


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


Interest = Literal["connection", "user", "group"]


class JoinResult(enum.Enum):
    JOINED = "joined"
    """In the group (already or now)."""
    REFUSED = "refused"
    """In ``max_groups_per_connection`` groups already."""
    UNKNOWN = "unknown"
    """No such connection here (another node may hold it)."""


class Backplane(Protocol):
    """The seam for a multi-node deployment (the default is none).

    Every method is called from inside the actor and must not block:

    - ``interest``: what this node holds changed: a connection registered or
      went (``"connection"``), a user got a first or lost a last local
      connection (``"user"``), a group got a first or lost a last local member
      (``"group"``). A backplane subscribes to exactly that.
    - ``publish``: a send that originated here, after its local fan-out; for a
      send to connections only those not held here are left in the audience.
    - ``close``: the same for a close (an abort).

    Sends and closes from other nodes come back through ``Router.deliver`` and
    ``Router.close_local``, which reach local connections only.
    """

    def interest(self, kind: Interest, name: str, present: bool) -> None: ...

    def publish(self, audience: Audience, payload: Payload) -> None: ...

    def close(self, audience: Audience, reason: CloseReason, detail: str) -> None: ...

    async def run(
        self, router: Router, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...


@attrs.frozen
class RouterStats:
    connections: int
    users: int
    groups: int
    slow_consumers: int
