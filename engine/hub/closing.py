"""What a closing connection tells its client and its hub: the Close record
for each ``CloseReason``, whether ``on_disconnected`` sees an error, and which
closes log their detail in the connection's closing line."""

from __future__ import annotations

import attrs

from ..actors.control import CloseReason
from ..protocol import Close, Texts

__all__ = ["CLEAN", "DETAILED", "close_record"]

_ERROR_CLOSE = Close(error=Texts.CONNECTION_CLOSED_WITH_ERROR, allow_reconnect=True)
_CLOSE_RECORDS: dict[CloseReason, Close] = {
    CloseReason.CLIENT_CLOSED: Close(),
    # ``clients.user(...).abort(error)``, ``context.abort()``, a ban: no reconnect.
    CloseReason.ABORTED: Close(),
    CloseReason.CONNECT_FAILED: Close(error=Texts.CONNECTION_CLOSED_WITH_ERROR),
    CloseReason.PROTOCOL_ERROR: _ERROR_CLOSE,
    CloseReason.CLIENT_TIMEOUT: _ERROR_CLOSE,
    CloseReason.SLOW_CONSUMER: _ERROR_CLOSE,
    CloseReason.INTERNAL_ERROR: _ERROR_CLOSE,
    CloseReason.EXPIRED: Close(error=Texts.AUTHENTICATION_EXPIRED, allow_reconnect=True),
    # Revoked: the client's credential is refused, so reconnecting cannot work.
    CloseReason.REVOKED: Close(error=Texts.AUTHENTICATION_REVOKED),
    # No reconnect: coming back would only run into the same limits.
    CloseReason.LIMITS_EXCEEDED: Close(),
    # A server going down for a restart: let clients come back.
    CloseReason.SHUTDOWN: Close(allow_reconnect=True),
}

_TOLD = frozenset({CloseReason.ABORTED, CloseReason.LIMITS_EXCEEDED})
"""Reasons whose detail is addressed to the client, as its record's error: the
closer chose the words (``abort(error)``, ``Texts.limits_exceeded``). The
other reasons' details are only logged: they may hold what a client must not
see (an exception's message, a protocol error's data)."""

CLEAN = frozenset({CloseReason.CLIENT_CLOSED, CloseReason.ABORTED, CloseReason.SHUTDOWN})
"""Closes ``on_disconnected`` sees without an error."""

DETAILED = frozenset({CloseReason.CLIENT_CLOSED, CloseReason.ABORTED})
"""Closes whose detail the connection's closing line logs (the others logged
theirs when they happened)."""


def close_record(reason: CloseReason, detail: str) -> Close | None:
    """The Close record a connection closing for ``reason`` (with ``detail``)
    sends; ``None``: none (the transport is gone, or the handshake never
    completed)."""
    record = _CLOSE_RECORDS.get(reason)
    if record is not None and detail and reason in _TOLD:
        return attrs.evolve(record, error=detail)
    return record
