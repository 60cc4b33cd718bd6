"""``make bench``'s workers part: one port served by 1 and by 2 worker processes.

Each deployment is the demo as an operator runs it, ``python -m demo --workers N
--redis URL --server native|hypercorn`` (N = 1: one process; N = 2: two processes
sharing the port with ``SO_REUSEPORT``, nodes of one cluster), with a
redis-server of its own (Redis pub/sub channels are global, so deployments on
one Redis would hear each other's broadcasts). Four deployments, measured in
the same loadgen runs (interleaved rounds, ``loadgen.mjs``), nothing pinned:

* ``echo-50``: 50 connections invoking ``Echo`` in closed loops (no negotiate:
  the kernel spreads the sockets over the workers);
* ``broadcast``: ``Broadcast`` to every receiver (each worker delivers to its
  own connections; the other worker's get it through Redis).

Reported per deployment: the rate, the CPU per message of its processes (the
workers and its redis-server), and the share of the machine each side used
during the timed windows: the servers' and the load generator's; per scenario,
how busy the whole machine was (``/proc/stat``: with other jobs on it, the
servers and the load generator are not all that ran). On a machine
with fewer cores than workers + 1 the load generator competes with the workers
(``benchmarks/README.md`` says what the ratio then means). Results: a table on
stdout and ``benchmarks/results/bench-workers.json``.

Usage: ``python benchmarks/bench_workers.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_cluster import RESULTS, Cluster, loadgen  # noqa: E402

SERVERS = ("native", "hypercorn")
WORKERS = (1, 2)
HUB = "/hubs/echo"
LISTENING = re.compile(rb"triohub demo listening on (http://\S+)")


def worker_pids(pid: int, workers: int) -> list[int]:
    """The processes that serve: the demo itself, or the workers it started."""
    if workers == 1:
        return [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def start_demo(cluster: Cluster, server: str, workers: int) -> dict[str, Any]:
    """A deployment with its own redis-server; a loadgen target."""
    redis_url, redis_pid = cluster.redis()
    name = f"{server}-{workers}w"
    command = [sys.executable, "-m", "demo", "--host", "127.0.0.1", "--port", "0"]
    command += ["--server", server, "--redis", redis_url, "--workers", str(workers)]
    command += ["--log-level", "WARNING", "--shutdown-grace", "1"]
    with (cluster.logs / f"workers-{name}.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, cwd=ROOT)
    cluster.processes.append(process)
    assert process.stdout is not None
    seen, deadline = b"", time.monotonic() + 60
    while (found := LISTENING.search(seen)) is None:
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(process.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            raise RuntimeError(f"{name} did not start (see {cluster.logs})")
        seen += chunk
    url = found.group(1).decode()
    # Nothing more comes on stdout (the workers' listening lines came before the
    # parent's), so the pipe cannot fill.
    pids = worker_pids(process.pid, workers)
    if len(pids) != workers:
        raise RuntimeError(f"{name}: found worker processes {pids}")
    return {
        "name": name,
        "kind": "signalr",
        "pid": pids[0],
        "pids": [*pids, redis_pid],
        "path": HUB,
        "http": url,
        "ws": url.replace("http://", "ws://", 1),
        "negotiate": True,
    }


def cpu_times() -> tuple[int, int]:
    """The machine's busy and total CPU time so far (``/proc/stat``, in ticks)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def summary(result: dict[str, Any], name: str, cores: int) -> dict[str, float]:
    """Medians over the timed repetitions of one target: its rate, its processes'
    CPU per message, and the share of all cores its processes and the load
    generator used during the timed windows."""
    reps = [
        rep if "rate" in rep else next(iter(rep.values()))
        for rep in result["targets"][name]["reps"]
    ]
    figures = [
        {
            "rate": rep["rate"],
            "cpu_us": 1e6 * rep["server_cpu_s"] / rep["count"],
            "server_share": rep["server_cpu_s"] / rep["seconds"] / cores,
            "loadgen_share": rep["gen_cpu_s"] / rep["seconds"] / cores,
        }
        for rep in reps
    ]
    return {key: statistics.median(f[key] for f in figures) for key in figures[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    reps = 2 if args.quick else 5
    receivers = 200 if args.quick else 1000
    cores = os.cpu_count() or 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(False, RESULTS)
    rows: list[dict[str, Any]] = []
    load = os.getloadavg()
    try:
        targets = [start_demo(cluster, server, n) for server in SERVERS for n in WORKERS]
        echo = {
            "scenario": "echo",
            "targets": targets,
            "connections": 50,
            "reps": reps,
            "warmup_ms": 1000 if args.quick else 2000,
            "rep_ms": 2000 if args.quick else 3000,
        }
        sends = (10_000 if args.quick else 30_000) // receivers  # deliveries per repetition
        broadcast = {
            "scenario": "fanout",
            "targets": targets,
            "receivers": receivers,
            "warmup_sends": max(1, sends // 10),
            "sends": sends,
            "max_lead": 4 * receivers,
            "drain_timeout_ms": 60_000,
            "reps": reps,
            # A worker's connection is reachable from the other once its first
            # invocation is answered (its subscriptions are in place before that).
            "receivers_invoke_first": True,
        }
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            for scenario, config in (("echo-50", echo), (f"broadcast-{receivers}", broadcast)):
                busy, total = cpu_times()
                result = loadgen(cluster, config, tmp, pin=False)
                busy_after, total_after = cpu_times()
                machine = (busy_after - busy) / (total_after - total)
                for server in SERVERS:
                    one, two = (summary(result, f"{server}-{n}w", cores) for n in WORKERS)
                    rows.append(
                        {
                            "scenario": scenario,
                            "server": server,
                            "1-worker": one,
                            "2-workers": two,
                            "rate_ratio": two["rate"] / one["rate"],
                            "machine_busy_share": machine,
                        }
                    )
    finally:
        cluster.stop()
    report = {"cores": cores, "loadavg_before": load, "rows": rows}
    (RESULTS / "bench-workers.json").write_text(json.dumps(report, indent=2))
    print(f"{cores} cores; load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"{'scenario':<15} {'server':<10} {'workers':>7} {'rate/s':>9} {'CPU us/msg':>10} "
        f"{'servers':>8} {'loadgen':>8}  (share of all {cores} cores)"
    )
    for row in rows:
        for n, key in zip(WORKERS, ("1-worker", "2-workers"), strict=True):
            f = row[key]
            print(
                f"{row['scenario']:<15} {row['server']:<10} {n:>7} {f['rate']:>9.0f} "
                f"{f['cpu_us']:>10.1f} {f['server_share']:>8.0%} {f['loadgen_share']:>8.0%}"
            )
        print(
            f"  2 workers / 1 worker: {row['rate_ratio']:.2f}x the rate; the whole machine was "
            f"{row['machine_busy_share']:.0%} busy over the scenario's run (every process)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
