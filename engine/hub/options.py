"""Typed, frozen options with the reference's defaults."""

from __future__ import annotations

from typing import Any

import attrs

from ..protocol.negotiate import TransportType

__all__ = ["HubOptions", "TransportType"]


ALL_TRANSPORTS = frozenset(TransportType)


def _positive(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"HubOptions.{attribute.name} must be positive, got {value!r}")


_optional_positive = _positive


@attrs.frozen(kw_only=True)
class HubOptions:
    """How a hub's connections behave. Every default is ASP.NET Core's."""

    keep_alive_interval: float = attrs.field(default=15.0, validator=_positive)
    """Seconds of send silence before the server pings (not on long polling)."""
    client_timeout: float = attrs.field(default=30.0, validator=_positive)
    """Seconds of client silence, once it has pinged, before the server closes."""
    handshake_timeout: float = attrs.field(default=15.0, validator=_positive)
    """Seconds for the handshake to arrive."""
    max_message_size: int | None = attrs.field(default=32 * 1024, validator=_optional_positive)
    """Largest incoming record in bytes; ``None`` for no limit."""
    max_parallel_invocations: int = attrs.field(default=1, validator=_positive)
    """Plain invocations one client may have running at once."""
    stream_buffer_capacity: int = attrs.field(default=10, validator=_positive)
    """Items buffered per client-to-server stream before the reader waits."""
    enable_detailed_errors: bool = False
    """Append exception types and messages to error texts (never in production)."""
    client_result_timeout: float = attrs.field(default=30.0, validator=_positive)
    """Default seconds ``client(id).invoke`` waits for the client's answer."""
    outbox_size: int = attrs.field(default=1024, validator=_positive)
    """Records queued per connection before it counts as a slow consumer."""
    outbox_max_bytes: int = attrs.field(default=1024 * 1024, validator=_positive)
    """Bytes queued per connection (1 MiB) before a send to it from elsewhere
    (a broadcast, a group, another caller) counts it as a slow consumer; the
    connection's own results and stream items wait for room instead."""
    close_timeout: float = attrs.field(default=5.0, validator=_positive)
    """Seconds the final record, transport close and disconnect hooks may take."""
    send_timeout: float = attrs.field(default=10.0, validator=_positive)
    """Seconds one transport write may take before the connection is dropped."""
    close_on_authentication_expiration: bool = False
    """Close connections when their credential expires (opt-in, as in ASP.NET)."""
    transports: frozenset[TransportType] = attrs.field(default=ALL_TRANSPORTS, converter=frozenset)
    """Transports this hub accepts."""
    disconnect_timeout: float = attrs.field(default=15.0, validator=_positive)
    """Seconds a negotiated-but-unused or idle long-polling connection is kept."""
    long_poll_timeout: float = attrs.field(default=90.0, validator=_positive)
    """Seconds a poll is held open when there is nothing to send."""

    @transports.validator
    def _check_transports(
        self, _: attrs.Attribute[frozenset[TransportType]], value: frozenset[TransportType]
    ) -> None:
        unknown = [t for t in value if not isinstance(t, TransportType)]
        if unknown:
            raise ValueError(f"unknown transports {unknown!r}; use TransportType members")
