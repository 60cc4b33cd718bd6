"""One span per hub invocation, as ASP.NET Core (.NET 9+) makes them.

Span ``{Hub}/{method}`` (kind SERVER) with ``rpc.system=signalr``,
``rpc.service`` (the hub) and ``rpc.method``, ``error.type`` when it fails; its
parent is the W3C ``traceparent`` (and ``tracestate``) of the invocation's
headers when the client sent one, and none otherwise: like ASP.NET's, an
invocation span never nests under whatever span is current where the
connection runs (ASP.NET: "hub method activities don't have a parent"). A
policy check is a child span ``authorize {policy}``.

A span the SDK's sampler drops is still made current while the method runs,
as OpenTelemetry .NET keeps a dropped root or remote-parented activity
(``ActivitySamplingResult.PropagationData``): what the method calls carries
the trace on, and a ``ParentBased`` sampler drops its children too instead of
starting new traces from them. Attributes beyond the prebuilt ones are set
only on a recording span.

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
from opentelemetry.context import Context
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
_NO_PARENT = Context()
"""The parent of an invocation without ``traceparent``: none, an explicit empty
context rather than the task's current one (which the SDK also reads slower)."""


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
        self._policies: dict[str, tuple[str, dict[str, str]]] = {}
        self.enabled = False
        """An SDK provider is in place: spans are made."""
        self.resolve()

    def resolve(self) -> None:
        """Look for the provider again (the global one may have been set since)."""
        provider = self._provider if self._provider is not None else trace.get_tracer_provider()
        self.enabled = not isinstance(provider, NoOpTracerProvider | ProxyTracerProvider)
        self._tracer = provider.get_tracer(ACTIVITY_SOURCE)

    def start(self, method: MethodSpan, headers: Mapping[str, str]) -> Span | None:
        """The invocation's span, started: ``None`` when no SDK is configured,
        else the SDK's span, recording or not (its sampler decides)."""
        if not self.enabled:
            return None
        parent = _PROPAGATOR.extract(headers) if "traceparent" in headers else _NO_PARENT
        # Positional: the API's and the SDK's order; keywords cost more per call.
        return self._tracer.start_span(method.name, parent, SpanKind.SERVER, method.attributes)

    def authorization(self, parent: Span, policy: str) -> Span:
        """A child span of ``parent`` around a policy check (the sampler decides
        whether it records, as for any child)."""
        found = self._policies.get(policy)
        if found is None:
            found = self._policies[policy] = (f"authorize {policy}", {"triohub.policy": policy})
        name, attributes = found
        return self._tracer.start_span(
            name, trace.set_span_in_context(parent, _NO_PARENT), SpanKind.INTERNAL, attributes
        )


def activate(span: Span) -> Any:
    """Make ``span`` current in this task (what user code's spans nest under, what
    an outgoing call propagates); returns the token for ``deactivate``."""
    return otel_context.attach(trace.set_span_in_context(span))


def deactivate(token: Any) -> None:
    otel_context.detach(token)


def fail(span: Span, error: BaseException | str) -> None:
    """Mark ``span`` failed: ``error.type`` (the exception's class, or the word given)."""
    if not span.is_recording():
        return  # a dropped span: nothing to build
    kind = error if isinstance(error, str) else type(error).__name__
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR))
