"""What a closing connection tells its client and its hub: the Close record
for each ``CloseReason``, whether ``on_disconnected`` sees an error, and which
closes log their detail."""

from __future__ import annotations

from ..actors.control import CloseReason
from ..protocol import Close, Texts
from .options import HubOptions

__all__ = ["CLEAN", "DETAILED", "close_record"]

_ERROR_CLOSE = Close(error=Texts.CONNECTION_CLOSED_WITH_ERROR, allow_reconnect=True)
_CLOSE_RECORDS: dict[CloseReason, Close] = {
    CloseReason.CLIENT_CLOSED: Close(),
    CloseReason.ABORTED: Close(),
    CloseReason.CONNECT_FAILED: Close(error=Texts.CONNECTION_CLOSED_WITH_ERROR),
    CloseReason.PROTOCOL_ERROR: _ERROR_CLOSE,
    CloseReason.CLIENT_TIMEOUT: _ERROR_CLOSE,
    CloseReason.SLOW_CONSUMER: _ERROR_CLOSE,
    CloseReason.INTERNAL_ERROR: _ERROR_CLOSE,
    CloseReason.EXPIRED: Close(error=Texts.AUTHENTICATION_EXPIRED, allow_reconnect=True),
    # Revoked: the client's credential is refused, so reconnecting cannot work.
    CloseReason.REVOKED: Close(error=Texts.AUTHENTICATION_REVOKED),
    # A server going down for a restart: let clients come back.
    CloseReason.SHUTDOWN: Close(allow_reconnect=True),
}

CLEAN = frozenset(
    {
        CloseReason.CLIENT_CLOSED,
        CloseReason.ABORTED,
        CloseReason.ABORTED_WITH_ERROR,
        CloseReason.SHUTDOWN,
    }
)
"""Closes ``on_disconnected`` sees without an error."""

DETAILED = frozenset(
    {CloseReason.CLIENT_CLOSED, CloseReason.ABORTED, CloseReason.ABORTED_WITH_ERROR}
)
"""Closes whose detail the connection's closing line logs (the others logged
theirs when they happened)."""


def close_record(reason: CloseReason, detail: str, options: HubOptions) -> Close | None:
    """The Close record a connection closing for ``reason`` sends; ``None``: none
    (the transport is gone, or the handshake never completed)."""
    if reason is CloseReason.LIMITS_EXCEEDED:
        # No reconnect: coming back would only run into the same limits.
        return Close(error=Texts.limits_exceeded(options.max_refusals, options.refusal_window))
    if reason is CloseReason.ABORTED_WITH_ERROR:
        # ``clients.user(...).abort(error)``: the client is told why (no
        # reconnect, as for any abort).
        return Close(error=detail)
    return _CLOSE_RECORDS.get(reason)
