"""The OpenTelemetry SDK set-ups the benchmarks measure triohub under.

* ``metrics``: a ``MeterProvider`` whose ``PeriodicExportingMetricReader`` reads
  every instrument every 10 s (to an exporter writing to ``/dev/null``);
* ``sampled``: those metrics, and 1 % of the invocations traced the way the
  README recommends: triohub's head sampling (``trace_sample_ratio=0.01``: a
  client's ``traceparent`` is followed, 1 % of the other invocations get a span)
  and the SDK's default sampler (``ParentBased(ALWAYS_ON)``) recording those,
  spans batched by a ``BatchSpanProcessor``;
* ``sdk-sampled``: the same share sampled by the SDK alone, as OpenTelemetry's
  own docs configure it: ``ParentBased(TraceIdRatioBased(0.01))``, every
  invocation through the SDK's ``start_span`` (what head sampling saves);
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

CHOICES = ("metrics", "sampled", "sdk-sampled", "all")
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
    sampler: Sampler = {
        "sampled": ParentBased(ALWAYS_ON),  # the SDK's default
        "sdk-sampled": ParentBased(TraceIdRatioBased(SAMPLED_RATIO)),
        "all": ALWAYS_ON,
    }[which]
    traces = TracerProvider(sampler=sampler)
    traces.add_span_processor(BatchSpanProcessor(Discard()))
    made: dict[str, Any] = {"meter_provider": metrics, "tracer_provider": traces}
    if which == "sampled":
        made["trace_sample_ratio"] = SAMPLED_RATIO
    return made
