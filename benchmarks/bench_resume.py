"""``make bench``'s stateful reconnect part: a broadcast stream to 200 connections.

The server (``benchmarks/servers/triohub_server.py --transport native``, or
``hypercorn`` with ``--server hypercorn``) runs twice:

* ``plain``: the receivers connect directly, without stateful reconnect, no cuts;
* ``resumable``: ``--stateful-reconnect``; the receivers use ``withStatefulReconnect()``
  and go through a TCP proxy (in ``resume_load.mjs``) that cuts a tenth of them every
  second; each cut heals by a resume.

Reported: deliveries (each receiver must get every record exactly once, in order:
``missing``, ``duplicated``, ``reordered`` must be 0 and no client may have noticed a
cut), and the server's CPU per delivery (user + system time of its process over the
run) for both, with their ratio. Results: a table on stdout and
``benchmarks/results/bench-resume.json``; exit status non-zero when a delivery was
lost or repeated.

Usage: ``python benchmarks/bench_resume.py [--quick] [--server native|hypercorn]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench_cluster import BENCH, PATH, RESULTS, ROOT, SECRET, token


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(stateful: bool, server: str) -> tuple[subprocess.Popen[str], int]:
    command = [
        sys.executable,
        str(BENCH / "servers" / "triohub_server.py"),
        "--transport",
        server,
        "--key",
        SECRET,
    ]
    if stateful:
        command.append("--stateful-reconnect")
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("READY "):
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return process, int(line.split()[1])


def run(stateful: bool, receivers: int, messages: int, cut_ms: int, kind: str) -> dict[str, Any]:
    server, port = start_server(stateful, kind)
    try:
        before = cpu_seconds(server.pid)
        done = subprocess.run(
            [
                "node",
                str(BENCH / "resume_load.mjs"),
                f"http://127.0.0.1:{port}{PATH}",
                str(receivers),
                str(messages),
                "1" if stateful else "0",
                str(cut_ms),
                token("bench"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        cpu = cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.wait(timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["cpu_seconds"] = cpu
    result["cpu_us_per_delivery"] = cpu / max(result["deliveries"], 1) * 1e6
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--receivers", type=int, default=200)
    parser.add_argument("--server", choices=("native", "hypercorn"), default="native")
    args = parser.parse_args()
    messages = 1000 if args.quick else 5000
    results = {
        "plain": run(False, args.receivers, messages, 1000, args.server),
        "resumable": run(True, args.receivers, messages, 1000, args.server),
    }
    expected = args.receivers * messages
    print(f"broadcast of {messages} records to {args.receivers} connections ({args.server})")
    print(
        f"{'':10} {'deliveries':>10} {'missing':>7} {'dup':>4} {'reord':>5} "
        f"{'cuts':>4} {'noticed':>7} {'CPU us/delivery':>15}"
    )
    for name, r in results.items():
        noticed = r["reconnecting"] + r["closed"]
        print(
            f"{name:10} {r['deliveries']:>10} {r['missing']:>7} {r['duplicated']:>4} "
            f"{r['reordered']:>5} {r['cuts']:>4} {noticed:>7} {r['cpu_us_per_delivery']:>15.2f}"
        )
    ratio = results["resumable"]["cpu_us_per_delivery"] / results["plain"]["cpu_us_per_delivery"]
    print(f"resumable / plain CPU per delivery: {ratio:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    document = {
        "server": args.server,
        "messages": messages,
        "receivers": args.receivers,
        "ratio": ratio,
        **results,
    }
    suffix = "" if args.server == "native" else f"-{args.server}"
    (RESULTS / f"bench-resume{suffix}.json").write_text(json.dumps(document, indent=2))
    exact = all(
        r["deliveries"] == expected and not (r["missing"] or r["duplicated"] or r["reordered"])
        for r in results.values()
    )
    healed = results["resumable"]["reconnecting"] + results["resumable"]["closed"] == 0
    return 0 if exact and healed else 1


if __name__ == "__main__":
    sys.exit(main())
