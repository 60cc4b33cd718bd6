"""The OpenTelemetry SDK set-ups the benchmarks measure triohub under.

* ``metrics``: a ``MeterProvider`` whose ``PeriodicExportingMetricReader`` reads
  every instrument every 10 s (to an exporter writing to ``/dev/null``);
* ``sampled``: those metrics, and the tracing a production service typically
  runs: ``ParentBased(TraceIdRatioBased(0.01))`` (a client's sampled
  ``traceparent`` is followed; 1 % of the other invocations are recorded), spans
  batched by a ``BatchSpanProcessor``;
* ``all``: those metrics, and every invocation's span recorded (``ALWAYS_ON``),
  batched the same way.

Spans go to an exporter that drops them: the server's side of exporting,
without a collector to measure too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased

CHOICES = ("metrics", "sampled", "all")
SAMPLED_RATIO = 0.01
"""The share of root invocations ``sampled`` records."""


class Discard(SpanExporter):
    """Takes the batches and drops them."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def providers(which: str) -> dict[str, Any]:
    """``HubServer``'s ``meter_provider`` (and ``tracer_provider``) for ``which``."""
    if which not in CHOICES:
        raise ValueError(f"unknown telemetry set-up {which!r}; one of {CHOICES}")
    metrics = MeterProvider(
        metric_readers=[
            PeriodicExportingMetricReader(
                ConsoleMetricExporter(out=open(os.devnull, "w")),  # noqa: SIM115 - for the process
                export_interval_millis=10_000,
            )
        ]
    )
    if which == "metrics":
        return {"meter_provider": metrics}
    sampler: Sampler = (
        ALWAYS_ON if which == "all" else ParentBased(TraceIdRatioBased(SAMPLED_RATIO))
    )
    traces = TracerProvider(sampler=sampler)
    traces.add_span_processor(BatchSpanProcessor(Discard()))
    return {"meter_provider": metrics, "tracer_provider": traces}
