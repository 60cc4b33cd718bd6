"""The soak: normal clients next to hostile ones for minutes, on each server.

``make soak`` (``SOAK_SECONDS=20 make soak`` to try it briefly;
``SOAK_PATTERNS=garbage,no-read`` to run some hostile patterns only; the names
are in ``tests/soak/hostile.py``). Per server (``python -m demo --server hypercorn``
and ``--server native``):

1. warm-up: 20 normal clients echo every 50 ms while every hostile pattern runs
   briefly (so the allocator and caches have seen the load once);
2. unloaded: the normal clients alone; their p99 echo latency and the server's
   RSS (``VmRSS``) are the baselines;
3. soak: the hostile patterns for ``SOAK_SECONDS`` (default 300) in a child
   process at nice 19 (its own CPU use must not be what delays the normal
   clients: on two cores it would otherwise take one of them; the server still
   does all the work the hostile clients cause), the normal clients still echoing;
4. settle: the hostile clients have left; RSS must come back within 10 % of
   the baseline (polled for up to a minute).

Asserted: the server process never exits (until SIGTERM at the end, which must
end it with 0), RSS after the hostile clients leave is within 10 % of the
baseline, no ERROR (or CRITICAL, or traceback) line in the server's log, the
normal clients' p99 during the soak is within 3x the unloaded p99, and no
``no-read`` client is still open when it reads again (past the send timeout). Everything
measured is printed as a report, also when an assertion fails.
"""

from __future__ import annotations

import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
import trio

from ..lifecycle.hubwire import Closed, HubWire
from ..lifecycle.processes import (
    REPO_ROOT,
    ServerProcess,
    demo_command,
    open_files_limit,
    start_server,
)

pytestmark = pytest.mark.soak

HOST = "127.0.0.1"
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))
PATTERNS = os.environ.get("SOAK_PATTERNS", "")
WARM_UP = min(30.0, max(15.0, SOAK_SECONDS / 10))
"""Long enough for every hostile pattern to finish a try."""
UNLOADED = min(30.0, max(10.0, SOAK_SECONDS / 10))
SETTLE_LIMIT = 60.0
NORMAL_CLIENTS = 20
NORMAL_INTERVAL = 0.05
RSS_TOLERANCE = 0.10
LATENCY_FACTOR = 3.0
CONNECTION_ID = re.compile(r"\b[A-Za-z0-9_-]{22}\b")
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ ([A-Z]+) (.*)$")
TRACEBACK = re.compile(r"^\s*\+?\s*(Exception Group )?Traceback \(most recent call last\):")
EXCEPTION_LINE = re.compile(r"^[\s|]*((?:[\w.]+\.)?\w*(?:Error|Exception|Group)\b.*)$")

SERVERS = {
    "hypercorn": (demo_command("--log-level", "WARNING"), 1),
    "native": (demo_command("--server", "native", "--log-level", "WARNING"), 1),
}


def p99(samples: list[float]) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


@attrs.define
class Normal:
    """Well-behaved clients: each echoes 100 bytes every ``NORMAL_INTERVAL``."""

    port: int
    latencies: list[float] = attrs.Factory(list)
    failures: Counter[str] = attrs.Factory(Counter)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        clients = [await HubWire.open(HOST, self.port) for _ in range(NORMAL_CLIENTS)]
        async with trio.open_nursery() as nursery:
            for index, client in enumerate(clients):
                nursery.start_soon(self.echo, client, index * NORMAL_INTERVAL / NORMAL_CLIENTS)
            task_status.started()

    async def echo(self, client: HubWire, offset: float) -> None:
        await trio.sleep(offset)  # spread the clients over the interval
        index = 0
        next_at = trio.current_time()
        while True:
            index += 1
            started = time.perf_counter()
            try:
                with trio.fail_after(10):
                    await client.call(str(index), "Echo", "n" * 100)
                    await client.result(str(index))
            except (Closed, trio.TooSlowError, trio.BrokenResourceError, OSError) as error:
                # A normal client must never be dropped; reconnect and count it.
                self.failures[f"{type(error).__name__}: {error}"] += 1
                await client.aclose()
                await trio.sleep(1)
                with trio.move_on_after(10):
                    client = await HubWire.open(HOST, self.port)
                continue
            self.latencies.append(time.perf_counter() - started)
            next_at += NORMAL_INTERVAL
            await trio.sleep_until(max(next_at, trio.current_time()))

    def take(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of the whole machine so far (``/proc/stat``)."""
    fields = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields[:8])


def steal_since(start: tuple[int, int]) -> str:
    """The share of CPU time the hypervisor took from this machine since ``start``:
    on a shared host the latencies mean little when it is high."""
    steal, total = cpu_ticks()
    return f"{(steal - start[0]) / max(1, total - start[1]):.0%} CPU stolen by the host"


async def rss(server: ServerProcess) -> int:
    """The median of five ``VmRSS`` samples over two seconds, in KiB."""
    samples = []
    for _ in range(5):
        samples.append(server.rss_kib())
        await trio.sleep(0.5)
    return int(statistics.median(samples))


@attrs.define
class Report:
    kind: str
    lines: list[str] = attrs.Factory(list)
    problems: list[str] = attrs.Factory(list)

    def note(self, line: str) -> None:
        self.lines.append(line)
        print(f"[soak {self.kind}] {line}", flush=True)

    def problem(self, line: str) -> None:
        self.problems.append(line)
        self.note("PROBLEM: " + line)

    def text(self) -> str:
        return "\n".join([f"soak of {self.kind}:", *self.lines])


async def run_hostile(
    ports: list[int], seconds: float, server: ServerProcess, report: Report, phase: str
) -> dict[str, dict[str, int]]:
    """The hostile child for ``seconds``; watches that the server stays up."""
    command = [
        sys.executable,
        "-m",
        "tests.soak.hostile",
        "--hub-port",
        str(ports[0]),
        "--web-port",
        str(ports[-1]),
        "--seconds",
        str(seconds),
    ]
    if PATTERNS:
        command += ["--patterns", PATTERNS]
    process = await trio.lowlevel.open_process(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    output = bytearray()
    errors = bytearray()
    try:
        async with trio.open_nursery() as nursery:

            async def collect(stream: Any, into: bytearray) -> None:
                async for chunk in stream:
                    into.extend(chunk)

            nursery.start_soon(collect, process.stdout, output)
            nursery.start_soon(collect, process.stderr, errors)
            with trio.fail_after(seconds + 60):
                while process.returncode is None:
                    if server.process.poll() is not None:
                        report.problem(
                            f"the server exited with {server.process.returncode} during {phase}"
                        )
                        process.send_signal(signal.SIGTERM)
                        break
                    with trio.move_on_after(1.0):
                        await process.wait()
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
    if process.returncode != 0:
        report.problem(f"the hostile clients exited with {process.returncode}: {errors[-2000:]!r}")
        return {}
    outcomes: dict[str, dict[str, int]] = orjson.loads(bytes(output).strip().splitlines()[-1])
    return outcomes


def log_errors(server: ServerProcess) -> Counter[str]:
    """ERROR and CRITICAL records, and tracebacks outside any record (a crash),
    by what they say: the record's message and the last exception line of its
    traceback, timestamps cut."""
    found: Counter[str] = Counter()
    headline: str | None = None
    last_exception = ""

    def close_entry() -> None:
        if headline is not None:
            found[f"{headline} -> {last_exception or '(no traceback)'}"] += 1

    for line in server.log_path.read_text(errors="replace").splitlines():
        record = LOG_RECORD.match(line)
        if record is not None:
            close_entry()
            level = record.group(1)
            message = CONNECTION_ID.sub("<id>", record.group(2))  # group alike records
            headline = f"{level} {message[:120]}" if level in ("ERROR", "CRITICAL") else None
            last_exception = ""
        elif headline is None and TRACEBACK.match(line):
            headline, last_exception = "uncaught traceback", ""
        elif headline is not None and (exception := EXCEPTION_LINE.match(line)):
            last_exception = exception.group(1)[:160]
    close_entry()
    return found


@pytest.mark.parametrize("kind", SERVERS)
async def test_soak(kind: str, tmp_path: Path) -> None:
    command, listeners = SERVERS[kind]
    report = Report(kind)
    report.note(
        f"SOAK_SECONDS={SOAK_SECONDS:g}, warm-up {WARM_UP:g} s, unloaded run {UNLOADED:g} s, "
        f"patterns {PATTERNS or 'all'}, {NORMAL_CLIENTS} normal clients every "
        f"{NORMAL_INTERVAL * 1000:g} ms"
    )
    with open_files_limit(8192):
        server = await start_server(command, tmp_path / f"{kind}.log", listeners=listeners)
    report.note(f"server pid {server.pid}, ports {server.ports}, log {server.log_path}")
    try:
        async with trio.open_nursery() as nursery:
            normal = Normal(server.ports[0])
            await nursery.start(normal.run)
            try:
                await soak_phases(server, normal, report)
            finally:
                nursery.cancel_scope.cancel()
        if server.process.poll() is None:
            server.signal(signal.SIGTERM)
            code = await server.exit_code(30)
            report.note(f"SIGTERM at the end: exit code {code}")
            if code != 0:
                report.problem(f"SIGTERM at the end gave exit code {code}")
    finally:
        await server.kill()
    errors = log_errors(server)
    for text, count in errors.most_common(10):
        report.problem(f"server log: {count} x {text}")
    (tmp_path / "report.txt").write_text(report.text())
    if report.problems:
        pytest.fail(f"{report.text()}\n\n{server.log(60)}", pytrace=False)


async def soak_phases(server: ServerProcess, normal: Normal, report: Report) -> None:
    outcomes = await run_hostile(server.ports, WARM_UP, server, report, "the warm-up")
    report.note(f"warm-up hostile outcomes: {outcomes}")
    if report.problems:
        return
    normal.take()
    ticks = cpu_ticks()
    await trio.sleep(UNLOADED)
    unloaded = normal.take()
    stolen = steal_since(ticks)
    baseline_rss = await rss(server)
    unloaded_p99 = p99(unloaded)
    report.note(
        f"unloaded: {len(unloaded)} echoes, p99 {unloaded_p99 * 1000:.2f} ms, "
        f"RSS {baseline_rss / 1024:.1f} MiB, {stolen}"
    )

    peak = [baseline_rss]

    async def watch_rss() -> None:
        while True:
            peak[0] = max(peak[0], server.rss_kib())
            await trio.sleep(1)

    ticks = cpu_ticks()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_rss)
        outcomes = await run_hostile(server.ports, SOAK_SECONDS, server, report, "the soak")
        nursery.cancel_scope.cancel()
    loaded = normal.take()
    loaded_p99 = p99(loaded)
    report.note(
        f"soak: {len(loaded)} echoes, p99 {loaded_p99 * 1000:.2f} ms "
        f"({loaded_p99 / unloaded_p99:.2f}x unloaded), median "
        f"{statistics.median(loaded or [math.nan]) * 1000:.2f} ms, peak RSS {peak[0] / 1024:.1f} MiB, "
        f"{steal_since(ticks)}"
    )
    for pattern, counts in outcomes.items():
        report.note(f"  {pattern}: {dict(sorted(counts.items(), key=lambda kv: -kv[1]))}")
    if normal.failures:
        report.problem(f"normal clients were dropped: {dict(normal.failures)}")
    # ``no-read`` stops reading for longer than the send timeout: by the time it
    # reads again the server must have cut it.
    if lingering := outcomes.get("no-read", {}).get("still open", 0):
        report.problem(f"{lingering} no-read client(s) outlived the send timeout")
    if server.process.poll() is not None:
        return
    if not loaded_p99 <= LATENCY_FACTOR * unloaded_p99:
        report.problem(
            f"p99 under hostile load {loaded_p99 * 1000:.2f} ms > {LATENCY_FACTOR:g} x "
            f"unloaded {unloaded_p99 * 1000:.2f} ms"
        )

    # Settle: the hostile clients have left; memory must come back.
    limit = baseline_rss * (1 + RSS_TOLERANCE)
    settled = await rss(server)
    deadline = trio.current_time() + SETTLE_LIMIT
    while settled > limit and trio.current_time() < deadline:
        settled = await rss(server)
    report.note(
        f"after the hostile clients left: RSS {settled / 1024:.1f} MiB "
        f"({(settled / baseline_rss - 1) * 100:+.1f} % of the baseline)"
    )
    if settled > limit:
        report.problem(
            f"RSS {settled / 1024:.1f} MiB did not return within {RSS_TOLERANCE:.0%} of "
            f"{baseline_rss / 1024:.1f} MiB in {SETTLE_LIMIT:g} s"
        )
