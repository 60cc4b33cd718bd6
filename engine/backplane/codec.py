"""The backplane's wire format (sans-IO): channel names and MessagePack envelopes.

The layout is ASP.NET Core SignalR's Redis backplane (``RedisChannels.cs``,
``RedisProtocol.cs``; see docs/scale-out.md), so its facts carry over:

=============================  ===============================================
channel                        carries
=============================  ===============================================
``P:all``                      sends to everyone (with excluded connection ids)
``P:internal:close``           aborts (ours: ASP.NET has no cross-node abort)
``P:internal:ack:{server}``    acks of that node's group commands
``P:internal:return:{server}`` client results coming back to that node
``P:connection:{id}``          sends to one connection, client-result requests,
                               group commands for it (ours, see below)
``P:group:{group}``            group sends
``P:user:{userId}``            user sends
=============================  ===============================================

Departures, each a trailing array item or a channel, so the ASP.NET items keep
their places:

- An invocation carries two more items after ``invocation_id`` and
  ``return_channel`` (``nil`` when no result is expected): the publishing
  node's name (so it skips its own message: it delivered locally at once) and,
  for a send to several groups, their ordered names (a connection in several
  of them is reached only through the first, so it gets the send once).
- Group commands go to ``P:connection:{id}``, not ``P:internal:groups``:
  PUBLISH then tells at once whether any node holds the connection, instead
  of ASP.NET's 30 s wait for an ack that never comes. The ack carries a second
  item: whether the add was applied (``False``: the connection is in too many
  groups).
- Revocations (ours: ASP.NET has none) go to ``triohub:internal:revocations``,
  one channel per cluster rather than per hub: a revoked credential is refused
  on every hub.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import msgpack

from ..authorization.revocation import Revocation

__all__ = [
    "Ack",
    "Channels",
    "CloseCommand",
    "CodecError",
    "GroupAction",
    "GroupCommand",
    "RemoteInvocation",
    "ReturnedCompletion",
    "decode_ack",
    "decode_close",
    "decode_connection_message",
    "decode_foreign_invocation",
    "decode_invocation",
    "decode_return",
    "decode_revocation",
    "encode_ack",
    "encode_close",
    "encode_group_command",
    "encode_invocation",
    "encode_return",
    "encode_revocation",
]


class CodecError(ValueError):
    """An envelope that does not have the expected shape."""


@attrs.frozen
class Channels:
    """The channel names of one hub, under ``prefix`` (ASP.NET: the hub's .NET type name)."""

    prefix: str

    @property
    def all(self) -> str:
        return f"{self.prefix}:all"

    @property
    def close(self) -> str:
        return f"{self.prefix}:internal:close"

    def ack(self, server: str) -> str:
        return f"{self.prefix}:internal:ack:{server}"

    def return_(self, server: str) -> str:
        return f"{self.prefix}:internal:return:{server}"

    def connection(self, connection_id: str) -> str:
        return f"{self.prefix}:connection:{connection_id}"

    def group(self, group: str) -> str:
        return f"{self.prefix}:group:{group}"

    def user(self, user_id: str) -> str:
        return f"{self.prefix}:user:{user_id}"


class GroupAction(enum.IntEnum):
    ADD = 1
    REMOVE = 2


@attrs.frozen
class RemoteInvocation:
    """A send: the framed record for every protocol, and who must not get it."""

    excluded: tuple[str, ...]
    framed: Mapping[str, bytes]
    """Protocol name -> the complete framed record, written to connections as is."""
    invocation_id: str | None = None
    return_channel: str | None = None
    origin: str | None = None
    groups: tuple[str, ...] = ()
    """For a send to several groups: all of them, in order."""


@attrs.frozen
class GroupCommand:
    id: int
    server: str
    action: GroupAction
    group: str
    connection_id: str


@attrs.frozen
class Ack:
    id: int
    applied: bool = True


@attrs.frozen
class ReturnedCompletion:
    protocol: str
    framed: bytes


@attrs.frozen
class CloseCommand:
    """Close the connections an audience names, on every node (an abort)."""

    everyone: bool
    connections: tuple[str, ...]
    users: tuple[str, ...]
    groups: tuple[str, ...]
    excluded: tuple[str, ...]
    reason: str
    origin: str
    detail: str = ""
    """Why, for the connection's Close record (``abort(error)``)."""


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(data: bytes) -> list[Any]:
    try:
        value = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as error:
        raise CodecError(f"not a MessagePack envelope: {error}") from None
    if not isinstance(value, list) or not value:
        raise CodecError("an envelope is a non-empty array")
    return value


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CodecError(f"{what} must be an array of strings")
    return tuple(value)


def _optional_string(items: list[Any], index: int, what: str) -> str | None:
    if len(items) <= index or items[index] is None:
        return None
    if not isinstance(items[index], str):
        raise CodecError(f"{what} must be a string")
    return str(items[index])


# -- invocations ----------------------------------------------------------------


def encode_invocation(
    excluded: Sequence[str],
    framed: Mapping[str, bytes],
    *,
    invocation_id: str | None = None,
    return_channel: str | None = None,
    origin: str | None = None,
    groups: Sequence[str] = (),
) -> bytes:
    """``[excluded, {protocol: bin}]``, ``[..., invocation_id, return_channel]``
    when a result is expected, then our two trailing items when given."""
    items: list[Any] = [list(excluded), dict(framed)]
    if invocation_id is not None or origin is not None or groups:
        items += [invocation_id, return_channel]
    if origin is not None or groups:
        items.append(origin)
    if groups:
        items.append(list(groups))
    return _pack(items)


def _invocation(items: list[Any]) -> RemoteInvocation:
    excluded = _strings(items[0], "excluded connection ids")
    framed = items[1] if len(items) > 1 else None
    if not isinstance(framed, dict) or not all(
        isinstance(k, str) and isinstance(v, bytes) for k, v in framed.items()
    ):
        raise CodecError("an invocation carries a map of protocol name to bytes")
    return RemoteInvocation(
        excluded=excluded,
        framed=framed,
        invocation_id=_optional_string(items, 2, "invocation id"),
        return_channel=_optional_string(items, 3, "return channel"),
        origin=_optional_string(items, 4, "origin"),
        groups=_strings(items[5], "groups") if len(items) > 5 else (),
    )


def decode_invocation(data: bytes) -> RemoteInvocation:
    return _invocation(_unpack(data))


def decode_foreign_invocation(data: bytes, server: str) -> RemoteInvocation | None:
    """``decode_invocation``, or ``None`` as soon as the envelope says ``server``
    published it (Redis echoes a node's publishes to its own subscriptions: a
    node that holds a connection of the user it sends to gets each send back)."""
    items = _unpack(data)
    if len(items) > 4 and items[4] == server:
        return None
    return _invocation(items)


# -- group commands and acks ----------------------------------------------------


def encode_group_command(command: GroupCommand) -> bytes:
    return _pack(
        [
            command.id,
            command.server,
            int(command.action),
            command.group,
            command.connection_id,
        ]
    )


def _group_command(items: list[Any]) -> GroupCommand:
    if len(items) < 5:
        raise CodecError("a group command has five items")
    id_, server, action, group, connection_id = items[:5]
    if not isinstance(id_, int) or not isinstance(action, int):
        raise CodecError("a group command's id and action are integers")
    if not all(isinstance(v, str) for v in (server, group, connection_id)):
        raise CodecError("a group command's server, group and connection are strings")
    try:
        kind = GroupAction(action)
    except ValueError:
        raise CodecError(f"unknown group action {action}") from None
    return GroupCommand(id_, server, kind, group, connection_id)


def decode_connection_message(data: bytes) -> RemoteInvocation | GroupCommand:
    """What ``P:connection:{id}`` carries: an invocation (its first item is
    an array) or a group command (its first item is the command's id)."""
    items = _unpack(data)
    if isinstance(items[0], int):
        return _group_command(items)
    return _invocation(items)


def encode_ack(ack: Ack) -> bytes:
    return _pack([ack.id, ack.applied])


def decode_ack(data: bytes) -> Ack:
    items = _unpack(data)
    if not isinstance(items[0], int):
        raise CodecError("an ack's id is an integer")
    applied = items[1] if len(items) > 1 else True
    return Ack(items[0], bool(applied))


# -- client results -------------------------------------------------------------


def encode_return(completion: ReturnedCompletion) -> bytes:
    return _pack([completion.protocol, completion.framed])


def decode_return(data: bytes) -> ReturnedCompletion:
    items = _unpack(data)
    if len(items) < 2 or not isinstance(items[0], str) or not isinstance(items[1], bytes):
        raise CodecError("a returned completion is [protocol, bin]")
    return ReturnedCompletion(items[0], items[1])


# -- aborts ---------------------------------------------------------------------


def encode_close(command: CloseCommand) -> bytes:
    return _pack(
        [
            command.everyone,
            list(command.connections),
            list(command.users),
            list(command.groups),
            list(command.excluded),
            command.reason,
            command.origin,
            command.detail,
        ]
    )


def decode_close(data: bytes) -> CloseCommand:
    items = _unpack(data)
    if len(items) < 7 or not isinstance(items[0], bool):
        raise CodecError("a close command has seven items")
    reason, origin = items[5], items[6]
    detail = items[7] if len(items) > 7 else ""
    if not all(isinstance(v, str) for v in (reason, origin, detail)):
        raise CodecError("a close command's reason, origin and detail are strings")
    return CloseCommand(
        everyone=items[0],
        connections=_strings(items[1], "connections"),
        users=_strings(items[2], "users"),
        groups=_strings(items[3], "groups"),
        excluded=_strings(items[4], "excluded"),
        reason=reason,
        origin=origin,
        detail=detail,
    )


# -- revocations ----------------------------------------------------------------

REVOCATIONS_CHANNEL = "triohub:internal:revocations"
"""Where revocations go: one channel for the server, not per hub (a revocation
refuses a credential on every hub)."""


def encode_revocation(origin: str, revocation: Revocation) -> bytes:
    """``[origin, until, user_id, token_id, issued_before]`` (``nil`` for a
    fact not given)."""
    return _pack(
        [
            origin,
            revocation.until,
            revocation.user_id,
            revocation.token_id,
            revocation.issued_before,
        ]
    )


def decode_revocation(data: bytes) -> tuple[str, Revocation]:
    """The publishing node's name and the revocation."""
    items = _unpack(data)
    if len(items) < 5 or not isinstance(items[0], str):
        raise CodecError("a revocation is [origin, until, user_id, token_id, issued_before]")
    try:
        revocation = Revocation(
            until=items[1], user_id=items[2], token_id=items[3], issued_before=items[4]
        )
    except (TypeError, ValueError) as error:
        raise CodecError(f"not a revocation: {error}") from None
    return items[0], revocation
