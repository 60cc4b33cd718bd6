"""``python -m demo --metrics --log-format json``: Prometheus text on ``GET /metrics``
(parsed with prometheus-client's own parser) and one JSON log line per connection
open and close, without credentials. Off by default: no ``/metrics`` page."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from demo.app import build_app

from .test_demo_cli import ENV, REPO

LISTENING = re.compile(r"triohub demo listening on (http://\S+)")


@pytest.fixture
def demo_with_metrics() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "demo",
            "--port",
            "0",
            "--metrics",
            "--log-format",
            "json",
            "--shutdown-grace",
            "1",
        ],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = LISTENING.search(line)
        assert found, line + (process.stderr.read() if process.stderr else "")
        yield found.group(1), process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``{(sample name, labels without the OpenTelemetry scope labels): value}``."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset(
                (key, value) for key, value in sample.labels.items() if not key.startswith("otel_")
            )
            found[sample.name, labels] = sample.value
    return found


def metrics(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


LONG_POLLING = frozenset({("signalr_transport", "long_polling")})


def test_metrics_and_json_logs(demo_with_metrics: tuple[str, subprocess.Popen[str]]) -> None:
    base, process = demo_with_metrics
    with httpx.Client(base_url=base, timeout=10) as client:
        negotiated = client.post("/hubs/echo/negotiate?negotiateVersion=1").json()
        token = negotiated["connectionToken"]
        url = f"/hubs/echo?id={token}"
        assert client.get(url).status_code == 200  # the first poll opens long polling
        assert client.post(url, content=b'{"protocol":"json","version":1}\x1e').status_code == 200
        assert client.get(url).content == b"{}\x1e"
        call = b'{"type":1,"invocationId":"1","target":"Echo","arguments":["hi"]}\x1e'
        assert client.post(url, content=call).status_code == 200
        assert b'"result":"hi"' in client.get(url).content

        opened = metrics(client)
        assert opened["signalr_server_active_connections", LONG_POLLING] == 1
        invocation = frozenset(
            {("triohub_hub", "EchoHub"), ("triohub_method", "Echo"), ("triohub_outcome", "ok")}
        )
        assert opened["triohub_invocations_total", invocation] == 1

        assert client.delete(url).status_code == 202
        closed: dict[Any, float] = {}
        for _ in range(100):  # the DELETE returns before the connection has closed
            closed = metrics(client)
            if closed["signalr_server_active_connections", LONG_POLLING] == 0:
                break
        assert closed["signalr_server_active_connections", LONG_POLLING] == 0
        status = LONG_POLLING | {("signalr_connection_status", "normal_closure")}
        assert closed["signalr_server_connection_duration_seconds_count", status] == 1

    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    lines = [json.loads(line) for line in stderr.splitlines()]
    events = {line.get("event"): line for line in lines if "event" in line}
    connection_id = negotiated["connectionId"]
    assert events["connection.opened"] | {"time": None} == {
        "time": None,
        "level": "INFO",
        "logger": "triohub.connection",
        "message": events["connection.opened"]["message"],
        "event": "connection.opened",
        "connection_id": connection_id,
        "hub": "EchoHub",
        "user_id": None,
        "transport": "LongPolling",
        "protocol": "json",
    }
    ended = events["connection.closed"]
    assert (ended["connection_id"], ended["transport"], ended["close_reason"]) == (
        connection_id,
        "LongPolling",
        "transport_closed",
    )
    assert isinstance(ended["duration"], float)
    # The connection token (a credential for this connection) is never logged.
    assert token not in stderr


async def test_no_metrics_page_by_default() -> None:
    app = build_app("x" * 48)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://demo"
    ) as client:
        assert (await client.get("/metrics")).status_code == 404
