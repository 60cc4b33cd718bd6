"""The tasks that run one connection's plain invocations.

Starting a Trio task per invocation (``nursery.start_soon``: the coroutine
check, the ``Task`` object, the context copy, the nursery's bookkeeping at
start and at exit) was the largest single cost on the native server's echo
path, about 15 % of its CPU (py-spy, ``benchmarks/README.md``). Plain
invocations are limited to ``max_parallel_invocations`` at once anyway (the
dispatcher's slots), so that many long-lived tasks can run them, each one
invocation after another: handing one over wakes an idle runner instead of
creating a task.

The runners are started on demand (the first invocation starts the first) in
the connection's nursery, so they end with the connection like every task of
it. Each is started by the connection's reader, so it runs in a copy of the
reader's context, as a task per invocation did; a context variable a hub
method sets and does not reset stays set for the next invocations that runner
runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

__all__ = ["Runners"]

Job = tuple[Any, ...]
"""The arguments of one ``run`` call."""


class Runners:
    """Up to ``limit`` tasks in ``nursery`` that ``await run(*job)`` for every
    job handed to ``start``, in order.

    Args:
        nursery: the connection's nursery.
        limit: the most jobs the caller lets run at once (a job never waits
            behind a busy runner while fewer than ``limit`` runners exist).
        run: runs one job; must not raise for anything but a bug or a
            cancellation (an exception ends the connection, as it would from a
            task of its own).
        abandon: settles a job no runner took before the connection ended
            (what ``run`` would have done had the job been cancelled at once).
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        limit: int,
        run: Callable[..., Awaitable[None]],
        abandon: Callable[..., None],
    ) -> None:
        self._nursery = nursery
        self._limit = limit
        self._run = run
        self._abandon = abandon
        self._jobs: deque[Job] = deque()
        self._idle: list[trio.lowlevel.Task] = []
        """The runners waiting for a job (woken last in, first out)."""
        self._runners = 0
        self._busy = 0
        """Jobs handed over and not yet finished (waiting or running)."""

    def start(self, *job: Any) -> None:
        """Hand ``job`` to a runner; never blocks."""
        self._jobs.append(job)
        self._busy += 1
        if self._busy > self._runners and self._runners < self._limit:
            # Every runner has a job: one more (it takes this job).
            self._runners += 1
            self._nursery.start_soon(self._runner)
        elif self._idle:
            trio.lowlevel.reschedule(self._idle.pop())

    async def _runner(self) -> None:
        jobs = self._jobs
        idle = self._idle
        me = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            idle.remove(me)
            return trio.lowlevel.Abort.SUCCEEDED

        try:
            while True:
                while not jobs:
                    # A trio.lowlevel.ParkingLot with one waiter per runner and
                    # without its generality: one handover per invocation.
                    idle.append(me)
                    await trio.lowlevel.wait_task_rescheduled(abort)
                try:
                    # No name keeps the job (its arguments) alive while parked.
                    await self._run(*jobs.popleft())
                finally:
                    self._busy -= 1
        finally:
            # The connection is ending (its nursery is cancelled): the jobs no
            # runner took are settled here, not run.
            while jobs:
                self._busy -= 1
                self._abandon(*jobs.popleft())
