"""Metrics, traces and structured logs for operators (issue 20).

``Telemetry`` holds one server's instruments (``ServerMetrics``) and its
invocation tracer (``InvocationTracer``); ``HubServer(meter_provider=...,
tracer_provider=...)`` makes it, and without providers it uses OpenTelemetry's
global ones, which are no-ops until an application configures an SDK.
"""

from __future__ import annotations

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from .logformat import JsonFormatter
from .metrics import ASPNET_METER, METER, ConnectionMetrics, MethodMetrics, ServerMetrics
from .tracing import ACTIVITY_SOURCE, InvocationTracer, MethodSpan, Span, fail

__all__ = [
    "ACTIVITY_SOURCE",
    "ASPNET_METER",
    "METER",
    "ConnectionMetrics",
    "InvocationTracer",
    "JsonFormatter",
    "MethodMetrics",
    "MethodSpan",
    "MethodTelemetry",
    "ServerMetrics",
    "Telemetry",
]


class MethodTelemetry:
    """One hub method's prebuilt metric attributes and span name."""

    __slots__ = ("metrics", "span")

    def __init__(self, metrics: MethodMetrics, span: MethodSpan) -> None:
        self.metrics = metrics
        self.span = span

    def finish(self, span: Span | None, outcome: str, error_type: str | None) -> None:
        """Count one invocation's outcome and end its span (marked failed unless ok)."""
        self.metrics.count(outcome)
        if span is not None:
            if outcome != "ok" and error_type is not None:
                fail(span, error_type)
            span.end()


class Telemetry:
    """One server's metrics and tracer.

    Args:
        meter_provider: where metrics go (``None``: the global provider).
        tracer_provider: where spans go (``None``: the global provider).
        trace_sample_ratio: the share of invocations without a ``traceparent``
            that get a span (``InvocationTracer``).
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        trace_sample_ratio: float = 1.0,
    ) -> None:
        self.metrics = ServerMetrics(meter_provider)
        self.tracer = InvocationTracer(tracer_provider, trace_sample_ratio)

    def method(self, hub: str, method: str) -> MethodTelemetry:
        return MethodTelemetry(self.metrics.method(hub, method), MethodSpan(hub, method))
