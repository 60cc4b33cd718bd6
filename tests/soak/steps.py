"""Which hostile pattern holds the server's event loop longest: a diagnosis, not a test.

``python -m tests.soak.steps --server hypercorn --seconds 20 [--patterns a,b]``
serves the demo in this process with a trio ``Instrument`` timing every task
step, then runs each hostile pattern of ``tests/soak/hostile.py`` alone (its own
process, at nice 19, as the soak does) for ``--seconds``, and prints per
pattern: the longest task steps (with the task's name: what ran), the longest
scheduler batches (every task that became runnable during one I/O wait runs
in one batch; a normal client's echo waits for the batch it lands behind) and
their 99th percentiles. A step that runs long delays every other connection
by as much, so those are what the soak's p99 echo latency sees.

Steps are ranked by the CPU time of this thread (``time.thread_time``): on a
shared machine a step's wall-clock time also holds the time other processes had
the CPU; batches are wall-clock. Compare the patterns of one run, and repeat.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from functools import partial

import attrs
import trio

from triohub import run_until_signalled, serve_hypercorn, serve_native

from ..lifecycle.processes import REPO_ROOT
from .hostile import PATTERNS

SLOW_STEP = 0.001
"""Steps that took more CPU time than this (seconds) are counted per task name."""
KEEP = 5
"""The longest steps and batches kept per pattern."""


def percentile(samples: list[float], share: float) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@attrs.define(eq=False)
class StepTimer(trio.abc.Instrument):
    """Times task steps and scheduler batches (the time between two I/O waits)."""

    steps: list[float] = attrs.Factory(list)
    batches: list[float] = attrs.Factory(list)
    batches_cpu: list[float] = attrs.Factory(list)
    longest: list[tuple[float, float, float, str]] = attrs.Factory(list)
    """(CPU seconds, wall-clock seconds, of which in the garbage collector, task name)."""
    slow: dict[str, list[float]] = attrs.Factory(lambda: defaultdict(list))
    cpu: dict[str, float] = attrs.Factory(lambda: defaultdict(float))
    """CPU seconds of all steps, per task name."""
    collections: list[tuple[int, float]] = attrs.Factory(list)
    """(generation, seconds) of every garbage collection."""
    _step_started: float = 0.0
    _step_cpu: float = 0.0
    _batch_started: float | None = None
    _batch_cpu: float = 0.0
    _gc_started: float = 0.0
    _gc_in_step: float = 0.0

    def reset(self) -> None:
        self.steps, self.batches, self.batches_cpu = [], [], []
        self.longest, self.collections = [], []
        self.slow = defaultdict(list)
        self.cpu = defaultdict(float)

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        """A ``gc.callbacks`` entry: the collector's pauses land inside task steps."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            took = time.perf_counter() - self._gc_started
            self._gc_in_step += took
            self.collections.append((info["generation"], took))

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._gc_in_step = 0.0
        self._step_started = time.perf_counter()
        self._step_cpu = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        cpu = time.thread_time() - self._step_cpu
        took = time.perf_counter() - self._step_started
        self.steps.append(took)
        self.cpu[task.name] += cpu
        if cpu >= SLOW_STEP:
            self.slow[task.name].append(cpu)
        if len(self.longest) < KEEP or cpu > self.longest[-1][0]:
            self.longest.append((cpu, took, self._gc_in_step, task.name))
            self.longest.sort(reverse=True)
            del self.longest[KEEP:]

    def after_io_wait(self, timeout: float) -> None:
        self._batch_started = time.perf_counter()
        self._batch_cpu = time.thread_time()

    def before_io_wait(self, timeout: float) -> None:
        if self._batch_started is not None:
            self.batches.append(time.perf_counter() - self._batch_started)
            self.batches_cpu.append(time.thread_time() - self._batch_cpu)
            self._batch_started = None

    def report(self, pattern: str) -> str:
        ms = 1000
        cpu_total = sum(self.cpu.values())
        lines = [
            f"{pattern}: {len(self.steps)} steps ({cpu_total * ms:.0f} ms CPU),"
            f" wall p99 {percentile(self.steps, 0.99) * ms:.3f} ms; {len(self.batches)} batches,"
            f" CPU p99 {percentile(self.batches_cpu, 0.99) * ms:.2f} ms,"
            f" p99.9 {percentile(self.batches_cpu, 0.999) * ms:.2f} ms,"
            f" max {max(self.batches_cpu, default=math.nan) * ms:.2f} ms;"
            f" wall p99 {percentile(self.batches, 0.99) * ms:.2f} ms,"
            f" max {max(self.batches, default=math.nan) * ms:.2f} ms"
        ]
        for cpu, took, collecting, name in self.longest:
            lines.append(
                f"    step {cpu * ms:6.2f} ms CPU ({took * ms:6.2f} wall, gc {collecting * ms:5.2f})"
                f"  {name}"
            )
        for generation in range(3):
            pauses = [took for gen, took in self.collections if gen == generation]
            if pauses:
                lines.append(
                    f"    gc gen {generation}: {len(pauses)} collections, max"
                    f" {max(pauses) * ms:.2f} ms, {sum(pauses) * ms:.1f} ms in all"
                )
        ranked = sorted(self.slow.items(), key=lambda item: -sum(item[1]))
        for name, took in ranked[:KEEP]:
            lines.append(
                f"    >= {SLOW_STEP * ms:g} ms CPU: {len(took):5d} steps, {sum(took) * ms:8.1f} ms in all,"
                f" max {max(took) * ms:.2f} ms  {name}"
            )
        busiest = sorted(self.cpu.items(), key=lambda item: -item[1])[:KEEP]
        lines.append(
            "    CPU by task: "
            + ", ".join(
                f"{'.'.join(name.rsplit('.', 2)[-2:])} {took * ms:.0f} ms" for name, took in busiest
            )
        )
        return "\n".join(lines)


async def run_pattern(port: int, pattern: str, seconds: float) -> None:
    process = await trio.run_process(
        [
            sys.executable,
            "-m",
            "tests.soak.hostile",
            "--hub-port",
            str(port),
            "--web-port",
            str(port),
            "--seconds",
            str(seconds),
            "--patterns",
            pattern,
        ],
        cwd=REPO_ROOT,
        capture_stdout=True,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    outcomes = process.stdout.decode().strip().splitlines()[-1:] or ["(no outcomes)"]
    print(f"  outcomes: {outcomes[0][:300]}", flush=True)


async def main(server: str, patterns: list[str], seconds: float, timer: StepTimer) -> None:
    from demo.app import build_app

    app = build_app()
    if server == "native":
        serve = partial(serve_native, app.server, fallback=app.fallback)
    else:
        serve = partial(serve_hypercorn, app)
    async with trio.open_nursery() as nursery:
        # As the demo runs (demo/__main__.py): this runs the hub server too.
        [(host, port)] = await nursery.start(partial(run_until_signalled, app.server, serve))
        print(f"{server} on {host}:{port}, {seconds:g} s per pattern", flush=True)
        for pattern in patterns:
            await trio.sleep(2.0)  # what the last pattern left is closed
            timer.reset()
            await run_pattern(port, pattern, seconds)
            print(timer.report(pattern), flush=True)
        nursery.cancel_scope.cancel()


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.steps")
    parser.add_argument("--server", choices=("hypercorn", "native"), default="hypercorn")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--patterns", default=",".join(PATTERNS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=open(os.devnull, "w"))  # noqa: SIM115
    timer = StepTimer()
    gc.callbacks.append(timer.on_gc)
    patterns = [name for name in args.patterns.split(",") if name]
    trio.run(main, args.server, patterns, args.seconds, timer, instruments=[timer])


if __name__ == "__main__":
    cli()
