"""One span per hub invocation, as ASP.NET Core (.NET 9+) makes them.

Span ``{Hub}/{method}`` (kind SERVER) with ``rpc.system=signalr``,
``rpc.service`` (the hub) and ``rpc.method``, ``error.type`` when it fails; its
parent is the W3C ``traceparent`` (and ``tracestate``) of the invocation's
headers when the client sent one. A policy check is a child span
``authorize {policy}``.

Nothing is recorded unless an OpenTelemetry SDK's ``TracerProvider`` is passed
to ``HubServer`` or set globally before the server starts: ``HubServer.run``
looks once (``InvocationTracer.resolve``), and without one
``InvocationTracer.start`` returns ``None`` at once (the API's no-op tracer
would cost microseconds per invocation to hand back a span that records
nothing), so the dispatcher skips the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
    TracerProvider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "ACTIVITY_SOURCE",
    "InvocationTracer",
    "MethodSpan",
    "Span",
    "activate",
    "deactivate",
    "fail",
]

ACTIVITY_SOURCE = "Microsoft.AspNetCore.SignalR.Server"
"""ASP.NET Core's activity source name, used as the tracer's name."""

_PROPAGATOR = TraceContextTextMapPropagator()


class MethodSpan:
    """One hub method's prebuilt span name and attributes."""

    __slots__ = ("attributes", "name")

    def __init__(self, hub: str, method: str) -> None:
        self.name = f"{hub}/{method}"
        self.attributes = {"rpc.system": "signalr", "rpc.service": hub, "rpc.method": method}


class InvocationTracer:
    """Starts invocation spans for one server.

    Args:
        provider: the ``TracerProvider``; ``None``: the global one.
    """

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self.enabled = False
        """An SDK provider is in place: spans are made."""
        self.resolve()

    def resolve(self) -> None:
        """Look for the provider again (the global one may have been set since)."""
        provider = self._provider if self._provider is not None else trace.get_tracer_provider()
        self.enabled = not isinstance(provider, NoOpTracerProvider | ProxyTracerProvider)
        self._tracer = provider.get_tracer(ACTIVITY_SOURCE)

    def start(self, method: MethodSpan, headers: Mapping[str, str]) -> Span | None:
        """The invocation's span, started; ``None`` when nothing records."""
        if not self.enabled:
            return None
        parent = None
        if "traceparent" in headers:
            parent = _PROPAGATOR.extract(headers)
        span = self._tracer.start_span(
            method.name, context=parent, kind=SpanKind.SERVER, attributes=method.attributes
        )
        if not span.is_recording():
            return None
        return span

    def authorization(self, parent: Span, policy: str) -> Span:
        """A child span of ``parent`` around a policy check."""
        return self._tracer.start_span(
            f"authorize {policy}",
            context=trace.set_span_in_context(parent),
            attributes={"triohub.policy": policy},
        )


def activate(span: Span) -> Any:
    """Make ``span`` current in this task (what user code's spans nest under);
    returns the token for ``deactivate``."""
    return otel_context.attach(trace.set_span_in_context(span))


def deactivate(token: Any) -> None:
    otel_context.detach(token)


def fail(span: Span, error: BaseException | str) -> None:
    """Mark ``span`` failed: ``error.type`` (the exception's class, or the word given)."""
    kind = error if isinstance(error, str) else type(error).__name__
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR))
