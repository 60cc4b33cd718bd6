"""The server's metrics, through ``opentelemetry-api``.

Nothing is measured until an application configures an OpenTelemetry SDK (a
``MeterProvider``, globally or passed to ``HubServer``); until then every
instrument is the API's no-op. Instruments are created once per server.

What happens per invocation or per connection is counted in plain integer
cells (``cell[0] += 1``, prebuilt per hub, method and outcome, or per transport
and close reason) that asynchronous instruments read when the SDK collects:
the SDK's synchronous ``add`` costs microseconds per call (attribute cleaning
and hashing), as much as a third of a whole echo invocation, and a count read
at collection time is the same number. Only the connection-duration histogram
records per event (once per connection).

Names: ASP.NET Core's where it has one (meter
``Microsoft.AspNetCore.Http.Connections``: ``signalr.server.active_connections``
and ``signalr.server.connection.duration`` with ``signalr.transport`` and
``signalr.connection.status``), so existing dashboards carry over; triohub's
own under the ``triohub.`` prefix (meter ``triohub``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from ..actors.control import CloseReason

__all__ = [
    "ASPNET_METER",
    "METER",
    "ConnectionMetrics",
    "MethodMetrics",
    "ServerMetrics",
    "close_status",
    "transport_attribute",
]

ASPNET_METER = "Microsoft.AspNetCore.Http.Connections"
"""The meter of ASP.NET Core's connection metrics (same names, same attributes)."""
METER = "triohub"
"""The meter of triohub's own metrics (every name starts with ``triohub.``)."""

_TRANSPORTS = {
    "WebSockets": "web_sockets",
    "ServerSentEvents": "server_sent_events",
    "LongPolling": "long_polling",
}

# ASP.NET's ``signalr.connection.status`` knows three values: a timeout, the
# application stopping, and everything else (normal_closure). triohub's own
# ``triohub.connection.closes`` carries the precise reason.
_STATUS = {
    CloseReason.CLIENT_TIMEOUT: "timeout",
    CloseReason.HANDSHAKE_TIMEOUT: "timeout",
    CloseReason.SHUTDOWN: "app_shutdown",
}

OUTCOMES = ("ok", "error", "denied", "cancelled")
"""``triohub.invocations``' ``triohub.outcome`` values: completed, raised (or
its stream failed), refused by its policy, cancelled by the client or the
connection's end."""


def transport_attribute(name: str) -> str:
    """ASP.NET's ``signalr.transport`` value for a transport's name."""
    return _TRANSPORTS.get(name, name.lower())


def close_status(reason: CloseReason) -> str:
    """ASP.NET's ``signalr.connection.status`` for a close reason."""
    return _STATUS.get(reason, "normal_closure")


def close_reason_attribute(reason: CloseReason) -> str:
    """``triohub.close_reason``: the reason's name in snake case (``slow_consumer``)."""
    return reason.name.lower()


Cell = list[int]
"""A count the hot path bumps (``cell[0] += 1``) and a callback reads."""


class Cells:
    """Counts by prebuilt attribute set, reported by an asynchronous instrument."""

    __slots__ = ("_cells", "_zeros")

    def __init__(self, *, zeros: bool = True) -> None:
        """``zeros=False``: counts still at zero are left out (a counter's row of
        zeros for every method and outcome says nothing)."""
        self._cells: list[tuple[Cell, dict[str, str]]] = []
        self._zeros = zeros

    def cell(self, attributes: dict[str, str]) -> Cell:
        """A new count reported under ``attributes`` (made once, bumped forever)."""
        made: Cell = [0]
        self._cells.append((made, attributes))
        return made

    def observe(self, _: CallbackOptions) -> Iterable[Observation]:
        totals: dict[tuple[tuple[str, str], ...], tuple[int, dict[str, str]]] = {}
        for cell, attributes in self._cells:
            key = tuple(attributes.items())
            total = totals.get(key)
            totals[key] = (cell[0] + (total[0] if total else 0), attributes)
        for value, attributes in totals.values():
            if value or self._zeros:
                yield Observation(value, attributes)


class MethodMetrics:
    """One hub method's counts, one per outcome."""

    __slots__ = ("attributes", "cells")

    def __init__(self, cells: Cells, hub: str, method: str) -> None:
        self.attributes = {"triohub.hub": hub, "triohub.method": method}
        self.cells = {
            outcome: cells.cell({**self.attributes, "triohub.outcome": outcome})
            for outcome in OUTCOMES
        }

    def count(self, outcome: str) -> None:
        """One invocation ended with ``outcome`` (one of ``OUTCOMES``)."""
        self.cells[outcome][0] += 1


class ConnectionMetrics:
    """What one connection reports: opened, then closed once."""

    __slots__ = ("_active", "_attributes", "_server")

    def __init__(self, server: ServerMetrics, transport: str) -> None:
        self._server = server
        self._attributes, self._active = server.transport(transport)

    def opened(self) -> None:
        self._active[0] += 1

    def closed(self, reason: CloseReason, duration: float) -> None:
        server = self._server
        self._active[0] -= 1
        server.duration.record(duration, server.close_attributes(self._attributes, reason))
        server.closes_by_reason[reason][0] += 1


class ServerMetrics:
    """Every instrument of one ``HubServer``.

    Args:
        provider: the ``MeterProvider`` to use; ``None``: the global one
            (``opentelemetry.metrics.set_meter_provider``), a no-op until an SDK
            sets it.
    """

    def __init__(self, provider: MeterProvider | None = None) -> None:
        provider = provider if provider is not None else metrics.get_meter_provider()
        aspnet = provider.get_meter(ASPNET_METER)
        meter = provider.get_meter(METER)
        self.meter = meter
        self._active = Cells()
        aspnet.create_observable_up_down_counter(
            "signalr.server.active_connections",
            callbacks=[self._active.observe],
            unit="{connection}",
            description="Number of connections that are currently active on the server.",
        )
        self.duration = aspnet.create_histogram(
            "signalr.server.connection.duration",
            unit="s",
            description="The duration of connections on the server.",
        )
        closes = Cells(zeros=False)
        self.closes_by_reason = {
            reason: closes.cell({"triohub.close_reason": close_reason_attribute(reason)})
            for reason in CloseReason
        }
        meter.create_observable_counter(
            "triohub.connection.closes",
            callbacks=[closes.observe],
            unit="{connection}",
            description="Connections closed, by reason (triohub.close_reason: expired, "
            "slow_consumer, client_timeout, ...).",
        )
        self._invocations = Cells(zeros=False)
        meter.create_observable_counter(
            "triohub.invocations",
            callbacks=[self._invocations.observe],
            unit="{invocation}",
            description="Hub invocations, by hub, method and outcome (ok, error, denied, "
            "cancelled).",
        )
        self.authentication_failures = meter.create_counter(
            "triohub.authentication.failures",
            unit="{request}",
            description="Requests whose credential was refused, by reason (never the credential).",
        )
        self.refreshes = meter.create_counter(
            "triohub.authentication.refreshes",
            unit="{refresh}",
            description="Credential refreshes of open connections, by outcome.",
        )
        self.revocations = meter.create_counter(
            "triohub.authentication.revocations",
            unit="{revocation}",
            description="Credentials or sessions revoked, by kind.",
        )
        self.backplane_publish = meter.create_histogram(
            "triohub.backplane.publish.duration",
            unit="s",
            description="Time to publish one message to the backplane.",
        )
        self.backplane_errors = meter.create_counter(
            "triohub.backplane.errors",
            unit="{error}",
            description="Backplane operations that failed, by operation.",
        )
        self.backplane_dropped = meter.create_counter(
            "triohub.backplane.dropped",
            unit="{message}",
            description="Messages the backplane could not deliver, by reason.",
        )
        self._backplane_connected: dict[str, int] = {}
        meter.create_observable_gauge(
            "triohub.backplane.connected",
            callbacks=[self._observe_backplane],
            unit="1",
            description="1 while the backplane's connection (e.g. to Redis) is up, else 0.",
        )
        self._transports: dict[str, tuple[dict[str, str], Cell]] = {}
        self._closes: dict[tuple[str, CloseReason], dict[str, str]] = {}
        self._auth_failures: dict[str, dict[str, str]] = {}

    # -- connections ------------------------------------------------------------

    def connection(self, transport: str) -> ConnectionMetrics:
        """The metrics of one new connection on ``transport`` (its log name)."""
        return ConnectionMetrics(self, transport)

    def transport(self, transport: str) -> tuple[dict[str, str], Cell]:
        """The attributes of a transport (by its log name) and its live-connection count."""
        found = self._transports.get(transport)
        if found is None:
            attributes = {"signalr.transport": transport_attribute(transport)}
            found = self._transports[transport] = (attributes, self._active.cell(attributes))
        return found

    def close_attributes(self, transport: dict[str, str], reason: CloseReason) -> dict[str, str]:
        key = (transport["signalr.transport"], reason)
        found = self._closes.get(key)
        if found is None:
            found = self._closes[key] = {
                **transport,
                "signalr.connection.status": close_status(reason),
            }
        return found

    # -- hubs -------------------------------------------------------------------

    def method(self, hub: str, method: str) -> MethodMetrics:
        """The prebuilt attributes of one hub method (call at ``map_hub``)."""
        return MethodMetrics(self._invocations, hub, method)

    def observe_outbox(self, read: Callable[[], Iterable[tuple[int, int]]]) -> None:
        """Report outbox depth at collection time: ``read()`` yields
        ``(records, bytes)`` queued per live connection. Nothing runs per send."""

        def records(_: CallbackOptions) -> Iterable[Observation]:
            depths = [depth for depth, _ in read()]
            yield Observation(sum(depths), {"triohub.aggregation": "sum"})
            yield Observation(max(depths, default=0), {"triohub.aggregation": "max"})

        def size(_: CallbackOptions) -> Iterable[Observation]:
            sizes = [queued for _, queued in read()]
            yield Observation(sum(sizes), {"triohub.aggregation": "sum"})
            yield Observation(max(sizes, default=0), {"triohub.aggregation": "max"})

        self.meter.create_observable_gauge(
            "triohub.outbox.depth",
            callbacks=[records],
            unit="{record}",
            description="Records queued for clients: the sum over live connections and the "
            "largest one (triohub.aggregation = sum | max).",
        )
        self.meter.create_observable_gauge(
            "triohub.outbox.queued_bytes",
            callbacks=[size],
            unit="By",
            description="Bytes queued for clients: the sum over live connections and the "
            "largest one (triohub.aggregation = sum | max).",
        )

    def observe_authorization(
        self, read: Callable[[], Iterable[tuple[str, str | None, str, str, int]]]
    ) -> None:
        """Report authorization decisions at collection time from the auditor's
        counts: ``read()`` yields ``(hub, method, policy, outcome, count)``. The
        hot path (an allowed call nobody audits) only bumps the auditor's cell."""

        def decisions(_: CallbackOptions) -> Iterable[Observation]:
            for hub, method, policy, outcome, count in read():
                yield Observation(
                    count,
                    {
                        "triohub.hub": hub,
                        "triohub.method": method or "<connect>",
                        "triohub.policy": policy,
                        "triohub.outcome": outcome,
                    },
                )

        self.meter.create_observable_counter(
            "triohub.authorization.decisions",
            callbacks=[decisions],
            unit="{decision}",
            description="Authorization decisions by hub, method (<connect> for the hub's "
            "requests), policy and outcome (allowed, denied).",
        )

    # -- authentication ---------------------------------------------------------

    def authentication_failed(self, reason: str) -> None:
        """A credential was refused; ``reason`` is a fixed word (``expired``,
        ``invalid_signature``...), never the credential or client text."""
        found = self._auth_failures.get(reason)
        if found is None:
            found = self._auth_failures[reason] = {"triohub.reason": reason}
        self.authentication_failures.add(1, found)

    def refreshed(self, outcome: str) -> None:
        """A connection's credential refresh ended with ``outcome`` (``ok``, ``refused``...)."""
        self.refreshes.add(1, {"triohub.outcome": outcome})

    def revoked(self, kind: str) -> None:
        """A revocation (``kind``: ``session``, ``token``, ``user``...)."""
        self.revocations.add(1, {"triohub.kind": kind})

    # -- backplane --------------------------------------------------------------

    def backplane_published(self, seconds: float, backplane: str = "redis") -> None:
        self.backplane_publish.record(seconds, {"triohub.backplane": backplane})

    def backplane_failed(self, operation: str, backplane: str = "redis") -> None:
        self.backplane_errors.add(
            1, {"triohub.backplane": backplane, "triohub.operation": operation}
        )

    def backplane_dropped_messages(self, count: int, reason: str, backplane: str = "redis") -> None:
        self.backplane_dropped.add(
            count, {"triohub.backplane": backplane, "triohub.reason": reason}
        )

    def backplane_connection(self, connected: bool, backplane: str = "redis") -> None:
        """The backplane's connection went up or down (read at collection time)."""
        self._backplane_connected[backplane] = int(connected)

    def _observe_backplane(self, _: CallbackOptions) -> Iterable[Observation]:
        for backplane, up in list(self._backplane_connected.items()):
            yield Observation(up, {"triohub.backplane": backplane})
