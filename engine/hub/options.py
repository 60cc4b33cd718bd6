"""Typed, frozen options with the reference's defaults."""

from __future__ import annotations

from typing import Any

import attrs

from ..protocol.negotiate import TransportType
from ..protocol.resumable import DEFAULT_BUFFER_SIZE

__all__ = ["HubOptions", "TransportType"]


ALL_TRANSPORTS = frozenset(TransportType)


def _positive(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"HubOptions.{attribute.name} must be positive, got {value!r}")


def _count(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"HubOptions.{attribute.name} must be a positive integer, got {value!r}")


def _optional_count(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None:
        _count(instance, attribute, value)


@attrs.frozen(kw_only=True)
class HubOptions:
    """How a hub's connections behave. Every default is ASP.NET Core's."""

    keep_alive_interval: float = attrs.field(default=15.0, validator=_positive)
    """Seconds of send silence before the server pings (not on long polling)."""
    client_timeout: float = attrs.field(default=30.0, validator=_positive)
    """Seconds of client silence, once it has pinged, before the server closes."""
    handshake_timeout: float = attrs.field(default=15.0, validator=_positive)
    """Seconds for the handshake to arrive."""
    max_message_size: int | None = attrs.field(default=32 * 1024, validator=_optional_count)
    """Largest incoming record in bytes; ``None`` for no limit."""
    max_parallel_invocations: int = attrs.field(default=1, validator=_count)
    """Plain invocations one client may have running at once (more wait: the
    connection's records are not read meanwhile)."""
    stream_buffer_capacity: int = attrs.field(default=10, validator=_count)
    """Items buffered per client-to-server stream before the reader waits; with
    ``max_streams`` and ``max_message_size`` it bounds what uploads hold."""
    enable_detailed_errors: bool = False
    """Append exception types and messages to error texts (never in production)."""
    client_result_timeout: float = attrs.field(default=30.0, validator=_positive)
    """Default seconds ``client(id).invoke`` waits for the client's answer."""
    outbox_size: int = attrs.field(default=1024, validator=_count)
    """Records queued per connection before it counts as a slow consumer."""
    outbox_max_bytes: int = attrs.field(default=1024 * 1024, validator=_count)
    """Bytes queued per connection (1 MiB) before a send to it from elsewhere
    (a broadcast, a group, another caller) counts it as a slow consumer; the
    connection's own results and stream items wait for room instead."""
    close_timeout: float = attrs.field(default=5.0, validator=_positive)
    """Seconds the final record, the transport close and the disconnect hooks
    may take, each (leaving the router is never cut short)."""
    send_timeout: float = attrs.field(default=10.0, validator=_positive)
    """Seconds one transport write may take before the connection is dropped."""
    close_on_authentication_expiration: bool = False
    """Close connections when their credential expires (opt-in, as in ASP.NET)."""
    allow_authentication_refresh: bool = False
    """Accept ``POST {hub}/refresh?id={token}``: a fresh credential of the
    connection's own user replaces its principal and expiry in place (opt-in,
    as in ASP.NET Core 11). Negotiate then reports ``tokenLifetimeSeconds``."""
    transports: frozenset[TransportType] = attrs.field(default=ALL_TRANSPORTS, converter=frozenset)
    """Transports this hub accepts."""
    disconnect_timeout: float = attrs.field(default=15.0, validator=_positive)
    """Seconds a negotiated-but-unused or idle long-polling connection is kept,
    and a resumable WebSocket connection waits for its client to resume it."""
    long_poll_timeout: float = attrs.field(default=90.0, validator=_positive)
    """Seconds a poll is held open when there is nothing to send."""
    allow_stateful_reconnect: bool = False
    """Grant stateful reconnect to clients that ask for it on negotiate
    (``withStatefulReconnect()``; opt-in, as ASP.NET's ``AllowStatefulReconnects``).
    WebSockets only: a socket that drops without a Close keeps its connection
    (groups, invocations, streams, output buffered) for ``disconnect_timeout``,
    and a WebSocket request with the same connection token from the same user
    resumes it with nothing lost or repeated (``triohub.transports.resumable``)."""
    stateful_reconnect_buffer_size: int = attrs.field(default=DEFAULT_BUFFER_SIZE, validator=_count)
    """Bytes of sent, unacknowledged records kept per resumable connection for
    resending after a reconnect; when full, sending waits for the client's Ack."""

    # Per-connection limits: the reference has none of these; each keeps what an
    # anonymous client can make the server hold bounded. A refusal answers the
    # call with an error; ``max_refusals`` of them close the connection.
    max_streams: int = attrs.field(default=32, validator=_count)
    """Streams one connection may have open: each server-to-client stream and
    each client-to-server (upload) stream counts one, so an invocation with two
    upload parameters counts two. Counted apart from ``max_parallel_invocations``
    (streams run in the background, as in the reference). Past it the call is
    refused: ``An unexpected error occurred invoking 'M' on the server.
    HubException: Too many open streams: a connection may have 32 (...)``."""
    max_pending_client_results: int = attrs.field(default=10, validator=_count)
    """``client(id).invoke`` calls waiting for one connection's answer; past it
    ``invoke`` raises ``LimitExceeded`` (a ``HubError``)."""
    max_groups_per_connection: int = attrs.field(default=100, validator=_count)
    """Groups one connection may be in; past it ``groups.add`` raises
    ``LimitExceeded`` (``A connection may be in at most 100 groups.``)."""
    max_group_name_length: int = attrs.field(default=1024, validator=_count)
    """Characters in a group name; past it ``groups.add`` raises ``LimitExceeded``."""
    max_refusals: int = attrs.field(default=20, validator=_count)
    """Refusals (a call refused for a limit, or a hub method that raised
    ``LimitExceeded``) within ``refusal_window`` that close the connection:
    ``{"type":7,"error":"Connection closed with an error. HubException: 20
    requests were refused within 60 s for exceeding the connection's limits."}``
    (no reconnect)."""
    refusal_window: float = attrs.field(default=60.0, validator=_positive)
    """Seconds over which refusals are counted toward ``max_refusals``."""

    @transports.validator
    def _check_transports(
        self, _: attrs.Attribute[frozenset[TransportType]], value: frozenset[TransportType]
    ) -> None:
        unknown = [t for t in value if not isinstance(t, TransportType)]
        if unknown:
            raise ValueError(f"unknown transports {unknown!r}; use TransportType members")
