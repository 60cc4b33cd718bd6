"""The demo's ``--metrics`` (Prometheus text on ``GET /metrics``) and
``--log-format json`` (one JSON object per log line)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
from opentelemetry.metrics import MeterProvider

from triohub.observability import JsonFormatter

__all__ = ["PROMETHEUS_CONTENT_TYPE", "Prometheus", "configure_logging", "prometheus"]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format."""


@attrs.frozen
class Prometheus:
    provider: MeterProvider
    """Hand it to ``HubServer(meter_provider=...)``."""
    text: Callable[[], bytes]
    """The current metrics in Prometheus' text format."""


def prometheus() -> Prometheus:
    """An OpenTelemetry SDK ``MeterProvider`` whose reader serves Prometheus text.

    Raises:
        SystemExit: the ``metrics`` extra is not installed (said how to install it).
    """
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
        from prometheus_client import CollectorRegistry, generate_latest
    except ImportError as error:
        raise SystemExit(
            f"error: --metrics needs the OpenTelemetry SDK and Prometheus exporter ({error.name} "
            "is missing); install them: pip install -e '.[metrics]'"
        ) from None
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    return Prometheus(SdkMeterProvider(metric_readers=[reader]), lambda: generate_latest(registry))


def configure_logging(level: str, log_format: str, *, worker: bool = False) -> None:
    """Log to stderr at ``level``, as text lines or JSON objects (``log_format``);
    ``worker``: one of several processes on one port, whose text lines say which
    (``[pid]``)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        who = "[%(process)d] " if worker else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {who}%(levelname)s %(name)s: %(message)s")
        )
    logging.basicConfig(level=level, handlers=[handler])
