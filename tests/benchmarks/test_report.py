"""The benchmark's report is readable: tables within 120 columns, goals with targets."""

from __future__ import annotations

import pytest

from benchmarks.report import (
    LABELS,
    PEERS,
    TABLE_WIDTH,
    TRIOHUB,
    Metric,
    check_goals,
    format_goal,
    print_table,
    telemetry_goals,
)

SERVERS = [*TRIOHUB, *PEERS]


def _metrics() -> list[Metric]:
    echo = Metric("echo-50", "Echo, 50 connections", "invocations/s", "/s", "higher")
    echo.values = {
        "hypercorn": 9000.0,
        "native": 21000.0,
        "trio-ws": 12000.0,
        "aiosignalr": 14000.0,
        "floor": 30000.0,
    }
    authz = Metric("authz", "Authorization", "throughput cost", "%", "lower")
    authz.values = {"hypercorn": 9.0, "native": 17.5, "trio-ws": 11.0}
    authz.unsupported = {"aiosignalr": "no policies", "floor": "no hub"}
    return [echo, authz]


META = {
    "quick": False,
    "reps": 5,
    "python": "3.11.7",
    "node": "v20",
    "cpus": 2,
    "pinning": "load generator pinned to CPU 1",
    "elapsed_s": 300.0,
}


def test_every_line_of_the_report_fits_120_columns(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = _metrics()
    print_table(metrics, check_goals(metrics), META, SERVERS)
    out = capsys.readouterr().out
    too_wide = [line for line in out.splitlines() if len(line) > TABLE_WIDTH]
    assert too_wide == []
    # Every server and every ratio column is present, and the legend names them.
    for server in SERVERS:
        assert LABELS[server].replace("triohub ", "") in out
    assert "nat/aio" in out
    assert "  nat = triohub native" in out
    assert "  aio = aiosignalr" in out


def test_goals_show_the_verdict_the_figure_and_the_target() -> None:
    goals = {goal["goal"]: goal for goal in check_goals(_metrics())}
    echo = goals["echo 50 conns >= aiosignalr (native)"]
    assert (
        format_goal(echo)
        == "[met   ] echo 50 conns >= aiosignalr (native):    1.50  (target >= 1.00x)"
    )
    cost = goals["authorization cost <= 15% (native)"]
    assert format_goal(cost).startswith("[MISSED] authorization cost <= 15% (native):")
    assert format_goal(cost).endswith("17.50  (target <= 15 %)")


def test_telemetry_goals_compare_with_native_in_the_same_run() -> None:
    echo = Metric("echo-50", "Echo, 50 connections", "invocations/s", "/s", "higher")
    echo.values = {"native": 10000.0, "native-metrics": 9900.0, "native-sampled": 9000.0}
    cpu = Metric("echo-50", "Echo, 50 connections", "server CPU / invocation", "us", "lower")
    cpu.values = {"native": 50.0, "native-metrics": 51.0, "native-sampled": 54.0}
    hooks = Metric("echo-50", "Echo, 50 connections", "telemetry hooks (in process)", "us", "lower")
    hooks.values = {"native": 0.2, "native-metrics": 0.25, "native-sampled": 4.0}
    goals = {
        goal["goal"]: (goal["figure"], goal["met"]) for goal in telemetry_goals([echo, cpu, hooks])
    }
    assert goals == {
        "echo 50, metrics: throughput lost vs native": (1.0, True),
        "echo 50, metrics: CPU added vs native": (2.0, True),
        "echo 50, metrics + 1 % of traces, head-sampled: throughput lost vs native": (10.0, False),
        "echo 50, metrics + 1 % of traces, head-sampled: CPU added vs native": (8.0, False),
        "echo 50, nothing configured: hooks' CPU (in process) / native's": (0.4, True),
        "echo 50, metrics: hooks' CPU (in process) / native's": (0.5, True),
        "echo 50, metrics + 1 % of traces, head-sampled: hooks' CPU (in process) / native's": (
            8.0,
            False,
        ),
    }
    # No native-otel in this run: no goal about it.


def test_the_hypercorn_floor_is_compared_with_triohub_on_hypercorn_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    echo = Metric("echo-50", "Echo, 50 connections", "invocations/s", "/s", "higher")
    echo.values = {
        "hypercorn": 8000.0,
        "native": 21000.0,
        "aiosignalr": 14000.0,
        "floor-hc": 10000.0,
    }
    goals = {goal["goal"]: goal for goal in check_goals([echo])}
    assert echo.as_json()["ratios"] == {
        "hypercorn/aiosignalr": 8000.0 / 14000.0,
        "hypercorn/floor-hc": 0.8,
        "native/aiosignalr": 1.5,
    }
    assert goals["hypercorn echo 50 conns >= 0.85x its floor"]["figure"] == 0.8
    assert not goals["hypercorn echo 50 conns >= 0.85x its floor"]["met"]
    assert goals["native echo 50 >= 1.3x aiosignalr"]["met"]
    print_table([echo], [], META, ["hypercorn", "native", "aiosignalr", "floor-hc"])
    out = capsys.readouterr().out
    assert "hc/hcfl" in out
    assert "nat/hcfl" not in out
