"""Turning the load generator's raw repetitions into figures, a table, goals and a chart.

Every figure is the median over the timed repetitions (warm-up excluded).
Ratios divide a triohub figure by the peer's or the floor's from the same run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRIOHUB = ("hypercorn", "native", "trio-ws")
PEERS = ("aiosignalr", "floor", "floor-hc")
PEER_OF = {"floor-hc": ("hypercorn",)}
"""Peers compared with some triohub servers only (the hypercorn floor: with the
triohub app on hypercorn); every other peer with all of them."""
LABELS = {
    "hypercorn": "triohub hypercorn",
    "native": "triohub native",
    "native-metrics": "triohub native+metrics",
    "native-sampled": "triohub native+otel 1%",
    "native-sdksampled": "triohub native+sdk 1%",
    "native-otel": "triohub native+otel",
    "trio-ws": "triohub trio-ws",
    "aiosignalr": "aiosignalr",
    "floor": "floor",
    "floor-hc": "hc floor",
}

LEGEND = {
    "floor": "the raw floor (same transport, no hub)",
    "floor-hc": "the raw ASGI floor under hypercorn (no hub)",
}


def compared(server: str, peer: str) -> bool:
    """Whether the tables and the JSON divide ``server``'s figures by ``peer``'s."""
    return server in PEER_OF.get(peer, TRIOHUB)


@dataclass
class Metric:
    scenario: str
    title: str
    label: str
    unit: str
    better: str
    """``higher`` or ``lower``."""
    values: dict[str, float | None] = field(default_factory=dict)
    unsupported: dict[str, str] = field(default_factory=dict)
    """Servers that cannot run this scenario, and why."""
    failed: dict[str, str] = field(default_factory=dict)
    required: bool = True
    """Counted by the exit status: every supported server must have a number."""
    chart: bool = True

    def ratio(self, server: str, peer: str) -> float | None:
        mine, theirs = self.values.get(server), self.values.get(peer)
        if mine is None or theirs is None or theirs == 0:
            return None
        return mine / theirs

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "metric": self.label,
            "unit": self.unit,
            "better": self.better,
            "values": self.values,
            "ratios": {
                f"{server}/{peer}": self.ratio(server, peer)
                for server in TRIOHUB
                for peer in PEERS
                if compared(server, peer) and self.ratio(server, peer) is not None
            },
            "not_supported": self.unsupported,
            "failed": self.failed,
        }


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


Rep = dict[str, Any]


class _Builder:
    def __init__(
        self, results: dict[str, Any], servers: list[str], unsupported: dict[tuple[str, str], str]
    ) -> None:
        self.results = results
        self.servers = servers
        self.unsupported = unsupported
        self.metrics: list[Metric] = []

    def add(
        self,
        scenario: str,
        label: str,
        unit: str,
        better: str,
        value: Callable[[dict[str, Any]], float | None],
        *,
        required: bool = True,
        chart: bool = True,
    ) -> None:
        result = self.results.get(scenario)
        if result is None:
            return  # not run (filtered out)
        metric = Metric(
            scenario,
            _TITLES.get(scenario, scenario),
            label,
            unit,
            better,
            required=required,
            chart=chart,
        )
        for server in self.servers:
            reason = self.unsupported.get((server, scenario))
            if reason is not None:
                metric.unsupported[server] = reason
                continue
            if "failed" in result:
                metric.values[server] = None
                metric.failed[server] = result["failed"].splitlines()[0]
                continue
            target = result.get("targets", {}).get(server)
            if target is None:
                metric.values[server] = None
                metric.failed[server] = "no result"
                continue
            if target.get("errors"):
                metric.values[server] = None
                metric.failed[server] = (
                    f"{target['errors']} errors (closed connections or wrong replies)"
                )
                continue
            metric.values[server] = value(target)
        self.metrics.append(metric)


_TITLES = {
    "echo-1": "Echo, 1 connection",
    "echo-50": "Echo, 50 connections",
    "fanout-all": "Broadcast (clients.all) to 1,000 connections",
    "fanout-user": "clients.user: 500 users x 2 connections",
    "authz": "Authorization cost (authenticated, 50 connections)",
    "connect-hs256": "Connect: negotiate + WebSocket + handshake, JWT HS256",
    "connect-rs256": "Connect: negotiate + WebSocket + handshake, JWT RS256",
    "connect-anon": "Connect, anonymous",
    "expiry": "Expiry precision (close received - exp)",
    "memory": "Memory per idle connection",
}


def _reps(target: dict[str, Any], method: str | None = None) -> list[Rep]:
    reps: list[Rep] = target["reps"]
    return [rep[method] for rep in reps] if method else reps


def _slice_pairs(target: dict[str, Any]) -> list[tuple[list[float], list[float]]]:
    """The authorization scenario's slices, paired: each ``Echo`` slice with the
    ``EchoGuarded`` slice timed right before or after it, over every repetition;
    each slice is ``[count, seconds, server CPU seconds]``.

    The costs are the median over these pairs: this shared machine's speed
    swings by up to 2x within a second, and a pair timed back to back sees one
    speed where whole repetitions see a mix.
    """
    pairs: list[tuple[list[float], list[float]]] = []
    for rep in target["reps"]:
        open_, guarded = rep["Echo"], rep["EchoGuarded"]
        if "slices" in open_ and "slices" in guarded:
            pairs.extend(zip(open_["slices"], guarded["slices"], strict=True))
        else:  # one slice per repetition
            whole = ("count", "seconds", "server_cpu_s")
            pairs.append(([open_[k] for k in whole], [guarded[k] for k in whole]))
    return pairs


def _per(reps: list[Rep], scale: float) -> float | None:
    return _median(
        rep["server_cpu_s"] / rep["count"] * scale if rep["count"] else None for rep in reps
    )


def _gen(reps: list[Rep]) -> float | None:
    return _median(rep["gen_cpu_s"] / rep["seconds"] * 100 for rep in reps)


def build_metrics(
    results: dict[str, Any], servers: list[str], unsupported: dict[tuple[str, str], str]
) -> list[Metric]:
    b = _Builder(results, servers, unsupported)
    for scenario in ("echo-1", "echo-50"):
        b.add(
            scenario,
            "invocations/s",
            "1/s",
            "higher",
            lambda t: _median(r["rate"] for r in _reps(t, "Echo")),
        )
        b.add(
            scenario,
            "p50 latency",
            "ms",
            "lower",
            lambda t: _median(r["p50_ms"] for r in _reps(t, "Echo")),
        )
        b.add(
            scenario,
            "p99 latency",
            "ms",
            "lower",
            lambda t: _median(r["p99_ms"] for r in _reps(t, "Echo")),
        )
        b.add(
            scenario,
            "server CPU / invocation",
            "us",
            "lower",
            lambda t: _per(_reps(t, "Echo"), 1e6),
        )
        b.add(
            scenario,
            "load generator CPU",
            "% core",
            "lower",
            lambda t: _gen(_reps(t, "Echo")),
            chart=False,
        )
    for scenario in ("fanout-all", "fanout-user"):
        b.add(
            scenario,
            "deliveries/s",
            "1/s",
            "higher",
            lambda t: _median(r["rate"] for r in _reps(t)),
        )
        b.add(scenario, "server CPU / delivery", "us", "lower", lambda t: _per(_reps(t), 1e6))
        b.add(
            scenario, "load generator CPU", "% core", "lower", lambda t: _gen(_reps(t)), chart=False
        )

    def cost(t: dict[str, Any]) -> float | None:
        return _median(
            (1 - (g[0] / g[1]) / (o[0] / o[1])) * 100 if o[0] and g[1] else None
            for o, g in _slice_pairs(t)
        )

    def cpu_cost(t: dict[str, Any]) -> float | None:
        return _median(
            ((g[2] / g[0]) / (o[2] / o[0]) - 1) * 100 if o[0] and g[0] and o[2] else None
            for o, g in _slice_pairs(t)
        )

    b.add(
        "authz",
        "invocations/s, no policy",
        "1/s",
        "higher",
        lambda t: _median(r["rate"] for r in _reps(t, "Echo")),
    )
    b.add(
        "authz",
        "invocations/s, policy",
        "1/s",
        "higher",
        lambda t: _median(r["rate"] for r in _reps(t, "EchoGuarded")),
    )
    b.add("authz", "throughput cost", "%", "lower", cost)
    b.add("authz", "server CPU cost / invocation", "%", "lower", cpu_cost)
    b.add(
        "authz",
        "load generator CPU",
        "% core",
        "lower",
        lambda t: _gen(_reps(t, "Echo")),
        chart=False,
    )
    for scenario in ("connect-hs256", "connect-rs256", "connect-anon"):
        b.add(
            scenario,
            "connections/s",
            "1/s",
            "higher",
            lambda t: _median(r["rate"] for r in _reps(t)),
        )
        b.add(scenario, "server CPU / connection", "ms", "lower", lambda t: _per(_reps(t), 1e3))
        b.add(
            scenario, "load generator CPU", "% core", "lower", lambda t: _gen(_reps(t)), chart=False
        )
    hooks = results.get("echo-50", {}).get("telemetry_hooks_us")
    if isinstance(hooks, dict):
        # bench_telemetry.py: the hooks alone, in process, per SDK set-up (the
        # end-to-end server of each set-up is the column it is shown in).
        b.add(
            "echo-50",
            "telemetry hooks (in process)",
            "us",
            "lower",
            lambda t: None,
            required=False,
            chart=False,
        )
        metric = b.metrics[-1]
        for server, setup in HOOK_SETUPS.items():
            if server in metric.values:
                metric.values[server] = hooks.get(setup)
    b.add("expiry", "p50", "ms", "lower", lambda t: t["p50_ms"])
    b.add("expiry", "p99", "ms", "lower", lambda t: t["p99_ms"])
    b.add("expiry", "max", "ms", "lower", lambda t: t["max_ms"])
    b.add(
        "memory",
        "RSS / idle connection",
        "KiB",
        "lower",
        lambda t: t["bytes_per_connection"] / 1024,
    )
    return b.metrics


HOOK_SETUPS = {
    "native": "none",
    "native-metrics": "metrics",
    "native-sampled": "sampled",
    "native-sdksampled": "sdk-sampled",
}
"""Which ``bench_telemetry.py`` set-up each echo server runs."""

TELEMETRY_GOALS = (
    ("native-metrics", "metrics"),
    ("native-sampled", "metrics + 1 % of traces, head-sampled"),
    ("native-otel", "metrics + every trace"),
)


def telemetry_goals(metrics: list[Metric]) -> list[dict[str, Any]]:
    """Observability's cost against ``native`` in the same rounds: throughput lost
    and server CPU added per invocation (the steadier figure on a shared machine);
    and with nothing configured, the hooks' in-process CPU over ``native``'s CPU
    per invocation."""
    goals: list[dict[str, Any]] = []
    echo = _find(metrics, "echo-50", "invocations/s")
    cpu = _find(metrics, "echo-50", "server CPU / invocation")
    for server, what in TELEMETRY_GOALS:
        for metric, sign, figure in ((echo, -1, "throughput lost"), (cpu, 1, "CPU added")):
            if metric is None or server not in metric.values:
                continue
            ratio = metric.ratio(server, "native")
            cost = None if ratio is None else round(sign * (ratio - 1) * 100, 2)
            goals.append(
                {
                    "goal": f"echo 50, {what}: {figure} vs native",
                    "figure": cost,
                    "target": "<= 5 %",
                    "met": cost is not None and cost <= 5,
                }
            )
    hooks = _find(metrics, "echo-50", "telemetry hooks (in process)")
    if hooks is not None and cpu is not None:
        # The steadier figure: the hooks' own CPU (bench_telemetry.py) over the
        # whole invocation's (native, this run). Nothing configured: goal 1 %.
        total = cpu.values.get("native")
        for server, what, target in (
            ("native", "nothing configured", 1),
            ("native-metrics", "metrics", 5),
            ("native-sampled", "metrics + 1 % of traces, head-sampled", 5),
        ):
            spent = hooks.values.get(server)
            share = None if spent is None or not total else round(spent / total * 100, 2)
            goals.append(
                {
                    "goal": f"echo 50, {what}: hooks' CPU (in process) / native's",
                    "figure": share,
                    "target": f"<= {target} %",
                    "met": share is not None and share <= target,
                }
            )
    return goals


def _find(metrics: list[Metric], scenario: str, label: str) -> Metric | None:
    for metric in metrics:
        if metric.scenario == scenario and metric.label == label:
            return metric
    return None


def check_goals(metrics: list[Metric]) -> list[dict[str, Any]]:
    """The issue's goals, each with the figure it is judged on."""
    goals: list[dict[str, Any]] = []

    def ratio_goal(scenario: str, label: str, peer: str, at_least: float, text: str) -> None:
        metric = _find(metrics, scenario, label)
        if metric is None:
            return
        for server in TRIOHUB:
            if server in metric.unsupported or peer in metric.unsupported:
                continue
            if server not in metric.values and server not in metric.failed:
                continue  # not in this run (--servers)
            ratio = metric.ratio(server, peer)
            goals.append(
                {
                    "goal": f"{text} ({server})",
                    "figure": None if ratio is None else round(ratio, 3),
                    "target": f">= {at_least:.2f}x",
                    "met": ratio is not None and ratio >= at_least,
                }
            )

    ratio_goal("echo-1", "invocations/s", "aiosignalr", 1.0, "echo 1 conn >= aiosignalr")
    ratio_goal("echo-50", "invocations/s", "aiosignalr", 1.0, "echo 50 conns >= aiosignalr")
    ratio_goal("fanout-all", "deliveries/s", "aiosignalr", 1.5, "broadcast >= 1.5x aiosignalr")
    ratio_goal("fanout-user", "deliveries/s", "aiosignalr", 1.5, "clients.user >= 1.5x aiosignalr")
    goals.extend(telemetry_goals(metrics))

    def pair_goal(
        scenario: str, label: str, server: str, peer: str, at_least: float, text: str
    ) -> None:
        metric = _find(metrics, scenario, label)
        if metric is None or server not in metric.values or peer not in metric.values:
            return  # not in this run (--scenarios, --servers)
        ratio = metric.ratio(server, peer)
        goals.append(
            {
                "goal": text,
                "figure": None if ratio is None else round(ratio, 3),
                "target": f">= {at_least:.2f}x",
                "met": ratio is not None and ratio >= at_least,
            }
        )

    # Issue 15: the native server keeps its lead, and the hypercorn path comes
    # close to what hypercorn itself can do with no hub.
    pair_goal(
        "echo-50", "invocations/s", "native", "aiosignalr", 1.3, "native echo 50 >= 1.3x aiosignalr"
    )
    pair_goal(
        "fanout-all",
        "deliveries/s",
        "native",
        "aiosignalr",
        2.0,
        "native broadcast >= 2x aiosignalr",
    )
    for scenario, what in (("echo-50", "echo 50 conns"), ("fanout-all", "broadcast")):
        label = "invocations/s" if scenario == "echo-50" else "deliveries/s"
        pair_goal(
            scenario, label, "hypercorn", "floor-hc", 0.85, f"hypercorn {what} >= 0.85x its floor"
        )
    cost = _find(metrics, "authz", "throughput cost")
    worst = _find(metrics, "expiry", "max")
    for server in TRIOHUB:
        if cost is not None and server in cost.values:
            value = cost.values.get(server)
            goals.append(
                {
                    "goal": f"authorization cost <= 15% ({server})",
                    "figure": value,
                    "target": "<= 15 %",
                    "met": value is not None and value <= 15,
                }
            )
        if worst is not None and server in worst.values:
            value = worst.values.get(server)
            goals.append(
                {
                    "goal": f"expiry closes within 100 ms of exp, max ({server})",
                    "figure": value,
                    "target": "0..100 ms",
                    "met": value is not None and 0 <= value <= 100,
                }
            )
    memory = _find(metrics, "memory", "RSS / idle connection")
    if memory is not None:
        for server in (s for s in TRIOHUB if s in memory.values):
            ratio = memory.ratio(server, "aiosignalr")
            goals.append(
                {
                    "goal": f"memory per idle connection <= aiosignalr ({server})",
                    "figure": None if ratio is None else round(ratio, 3),
                    "target": "<= 1.00x",
                    "met": ratio is not None and ratio <= 1.0,
                }
            )
    return goals


# -- output ---------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(metric: Metric, server: str) -> str:
    if server in metric.unsupported:
        return "n/s"
    if server in metric.failed:
        return "FAIL"
    return _fmt(metric.values.get(server))


TABLE_WIDTH = 120
"""Neither table is wider than this: figures first, then the ratios under them."""


def print_table(
    metrics: list[Metric], goals: list[dict[str, Any]], meta: dict[str, Any], servers: list[str]
) -> None:
    ratio_columns = [
        (server, peer)
        for server in TRIOHUB
        if server in servers
        for peer in PEERS
        if peer in servers and compared(server, peer)
    ]
    print()
    if meta.get("gc_threshold"):
        print(f"EXPERIMENT: every Python server's gen-0 GC threshold is {meta['gc_threshold']}")
    print(
        f"triohub benchmarks: {'QUICK smoke run, ' if meta['quick'] else ''}median of "
        f"{meta['reps']} repetitions after warm-up; python {meta['python']}, node {meta['node']},"
    )
    print(f"{meta['cpus']} CPUs; {meta['pinning']}; {meta['elapsed_s']:.0f} s")
    _print_figures(metrics, servers)
    if ratio_columns:
        _print_ratios(metrics, ratio_columns)
    reasons: dict[str, set[str]] = {}
    for metric in metrics:
        for server, reason in metric.unsupported.items():
            reasons.setdefault(f"{server}: {reason}", set()).add(metric.scenario)
        for server, reason in metric.failed.items():
            reasons.setdefault(f"{server} FAILED: {reason}", set()).add(metric.scenario)
    if reasons:
        print("\nNot supported / failed:")
        for reason, where in sorted(reasons.items()):
            print(f"  {reason} [{', '.join(sorted(where))}]")
    if goals:
        print("\nGoals (figure, then the target it is judged against):")
        width = max(len(goal["goal"]) for goal in goals)
        for goal in goals:
            print("  " + format_goal(goal, width))


def format_goal(goal: dict[str, Any], width: int = 0) -> str:
    """``[met   ] <goal>: <figure>  (target <target>)``."""
    figure = goal["figure"]
    shown = "-" if figure is None else f"{figure:.2f}"
    verdict = "met" if goal["met"] else "MISSED"
    return f"[{verdict:<6}] {goal['goal'] + ':':<{width + 1}} {shown:>7}  (target {goal['target']})"


def _rows(metrics: list[Metric], cells: Callable[[Metric], list[str]], width: int) -> None:
    scenario = None
    for metric in metrics:
        if metric.scenario != scenario:
            scenario = metric.scenario
            print("-" * width)
            print(metric.title)
        arrow = "^" if metric.better == "higher" else "v"
        print(f"  {metric.label + ' ' + arrow:<30} {metric.unit:>6} " + " ".join(cells(metric)))


def _print_figures(metrics: list[Metric], servers: list[str]) -> None:
    header = f"{'metric':<32} {'unit':>6} " + " ".join(
        f"{LABELS[s].replace('triohub ', ''):>11}" for s in servers
    )
    width = min(len(header), TABLE_WIDTH)
    print("=" * width)
    print(header)
    _rows(metrics, lambda metric: [f"{_cell(metric, s):>11}" for s in servers], width)
    print("=" * width)
    print("hypercorn, native and trio-ws are triohub served three ways; ^ higher is better,")
    print("v lower is better; n/s = the server cannot run this scenario (reasons below),")
    print("FAIL = it should have but did not. Load generator CPU is the share of its one core it")
    print("used during the timed windows: well under 100% means it was not the bottleneck.")
    print(
        "Authorization costs: median over pairs of slices timed back to back (benchmarks/README.md)."
    )


def _print_ratios(metrics: list[Metric], columns: list[tuple[str, str]]) -> None:
    header = f"{'ratio: triohub / peer':<32} {'unit':>6} " + " ".join(
        f"{_short(s) + '/' + _short(p):>9}" for s, p in columns
    )
    width = min(len(header), TABLE_WIDTH)
    print()
    print("=" * width)
    print(header)

    def cells(metric: Metric) -> list[str]:
        shown = []
        for server, peer in columns:
            ratio = metric.ratio(server, peer)
            shown.append(f"{'-' if ratio is None else f'{ratio:.2f}':>9}")
        return shown

    _rows(metrics, cells, width)
    print("=" * width)
    names = dict.fromkeys(s for pair in columns for s in pair)
    print("Each ratio divides triohub's figure by the peer's from this run:")
    for server in names:
        print(f"  {_short(server):>5} = {LEGEND.get(server, LABELS[server])}")
    print("For a ^ metric a ratio above 1 means triohub is better; for a v metric, below 1.")


def _short(server: str) -> str:
    return {
        "hypercorn": "hc",
        "native": "nat",
        "native-metrics": "met",
        "native-sampled": "otel1",
        "native-sdksampled": "sdk1",
        "native-otel": "otel",
        "trio-ws": "tws",
        "aiosignalr": "aio",
        "floor": "floor",
        "floor-hc": "hcfl",
    }[server]


COLOURS = {
    "hypercorn": "#1f77b4",
    "native": "#2ca02c",
    "native-metrics": "#bcbd22",
    "native-sampled": "#c5b0d5",
    "native-sdksampled": "#9467bd",
    "native-otel": "#98df8a",
    "trio-ws": "#17becf",
    "aiosignalr": "#ff7f0e",
    "floor": "#7f7f7f",
    "floor-hc": "#c7c7c7",
}


def write_chart(
    metrics: list[Metric], servers: list[str], path: Path, meta: dict[str, Any]
) -> Path | None:
    """One small bar chart per figure; ``None`` when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    shown = [m for m in metrics if m.chart]
    if not shown:
        return None
    columns = 4
    rows = (len(shown) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.9 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, shown, strict=False):
        names = [LABELS[s].replace("triohub ", "") for s in servers]
        heights = [metric.values.get(s) or 0 for s in servers]
        bars = ax.bar(names, heights, color=[COLOURS[s] for s in servers])
        for bar, server in zip(bars, servers, strict=True):
            text = _cell(metric, server)
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        arrow = "higher is better" if metric.better == "higher" else "lower is better"
        ax.set_title(f"{metric.scenario}: {metric.label}\n[{metric.unit}, {arrow}]", fontsize=8)
        ax.tick_params(axis="x", labelsize=7, rotation=20)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.2)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    figure.suptitle(
        f"triohub benchmarks ({'quick' if meta['quick'] else 'full'} run, {meta['date']}"
        + (f", GC threshold {meta['gc_threshold']}" if meta.get("gc_threshold") else "")
        + "); n/s = not supported",
        fontsize=10,
    )
    # Keep the top band for the title: tight_layout alone lets it overlap the first row.
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.9 * rows)))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
