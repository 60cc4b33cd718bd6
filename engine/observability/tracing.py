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

Head sampling (``HubServer(trace_sample_ratio=...)``, 1.0 by default): the SDK's
``start_span`` costs CPython about 5 us per invocation even when its sampler
drops the span (it makes ids, a ``SamplingResult``, a ``SpanContext`` and a
non-recording span), against some 70 us for a whole ``Echo`` invocation. So
triohub may decide first, once per invocation and before any SDK call: an
invocation whose headers carry a valid ``traceparent`` always gets its span (the
parent's sampled flag wins, as W3C Trace Context has it; the SDK's
``ParentBased`` sampler follows it), and any other gets one with probability
``trace_sample_ratio`` (the SDK's sampler then decides for it too: leave it at
its default, ``ParentBased(ALWAYS_ON)``, to record exactly that share). An
invocation left out has no span and nothing is made current: like an ASP.NET
activity whose listener answers ``ActivitySamplingResult.None``, and unlike a
span the SDK drops, spans its method opens are roots the SDK's sampler decides.

Nothing is recorded unless an OpenTelemetry SDK's ``TracerProvider`` is passed
to ``HubServer`` or set globally before the server starts: ``HubServer.run``
looks once (``InvocationTracer.resolve``), and without one
``InvocationTracer.start`` returns ``None`` at once (the API's no-op tracer
would cost microseconds per invocation to hand back a span that records
nothing), so the dispatcher skips the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from random import random
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
        sample_ratio: the share of invocations without a valid ``traceparent``
            that get a span (head sampling, see the module's docstring).
    """

    def __init__(self, provider: TracerProvider | None = None, sample_ratio: float = 1.0) -> None:
        if not 0.0 <= sample_ratio <= 1.0:
            raise ValueError(f"trace_sample_ratio must be within [0, 1], not {sample_ratio!r}")
        self._provider = provider
        self._ratio = sample_ratio
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
        """The invocation's span, started: ``None`` when no SDK is configured or
        head sampling leaves the invocation out, else the SDK's span, recording
        or not (its sampler decides)."""
        if not self.enabled:
            return None
        parent = _NO_PARENT
        if "traceparent" in headers:
            parent = _PROPAGATOR.extract(headers)  # empty when the header is not valid
        # random() < 1.0 always: with the default ratio every invocation is traced.
        if not parent and random() >= self._ratio:
            return None
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
