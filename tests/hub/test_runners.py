"""The long-lived tasks that run a connection's plain invocations (``Runners``)."""

from __future__ import annotations

import weakref

import trio
import trio.testing

from triohub.hub.runners import Runners


class Jobs:
    """Jobs that log their start and end and wait for their own gate."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.gates: dict[str, trio.Event] = {}
        self.abandoned: list[str] = []

    async def run(self, name: str) -> None:
        self.log.append(f"start {name}")
        try:
            await self.gates.setdefault(name, trio.Event()).wait()
        finally:
            self.log.append(f"end {name}")

    def abandon(self, name: str) -> None:
        self.abandoned.append(name)

    def open(self, name: str) -> None:
        self.gates.setdefault(name, trio.Event()).set()


async def start_all(runners: Runners, names: str) -> None:
    for name in names:
        runners.start(name)
    await trio.testing.wait_all_tasks_blocked()


def runner_tasks(nursery: trio.Nursery) -> int:
    return sum(task.name.endswith("Runners._runner") for task in nursery.child_tasks)


async def test_one_runner_runs_jobs_one_after_another_in_order() -> None:
    jobs = Jobs()
    async with trio.open_nursery() as nursery:
        runners = Runners(nursery, 1, jobs.run, jobs.abandon)
        await start_all(runners, "abc")
        assert jobs.log == ["start a"]
        for name in "abc":
            jobs.open(name)
            await trio.testing.wait_all_tasks_blocked()
        assert jobs.log == ["start a", "end a", "start b", "end b", "start c", "end c"]
        assert runner_tasks(nursery) == 1
        runners.start("d")  # the idle runner takes it
        jobs.open("d")
        await trio.testing.wait_all_tasks_blocked()
        assert jobs.log[-2:] == ["start d", "end d"]
        assert runner_tasks(nursery) == 1
        nursery.cancel_scope.cancel()
    assert jobs.abandoned == []


async def test_a_job_never_waits_behind_a_busy_runner_below_the_limit() -> None:
    jobs = Jobs()
    async with trio.open_nursery() as nursery:
        runners = Runners(nursery, 2, jobs.run, jobs.abandon)
        runners.start("a")
        await trio.testing.wait_all_tasks_blocked()
        runners.start("b")  # "a" is busy: a second runner starts
        await trio.testing.wait_all_tasks_blocked()
        assert jobs.log == ["start a", "start b"]
        jobs.open("a")
        jobs.open("b")
        await trio.testing.wait_all_tasks_blocked()
        runners.start("c")  # both runners idle now: both are reused
        runners.start("d")
        await trio.testing.wait_all_tasks_blocked()
        assert jobs.log[4:] == ["start c", "start d"]
        assert runner_tasks(nursery) == 2
        nursery.cancel_scope.cancel()


async def test_jobs_no_runner_took_are_abandoned_when_the_connection_ends() -> None:
    jobs = Jobs()
    async with trio.open_nursery() as nursery:
        runners = Runners(nursery, 1, jobs.run, jobs.abandon)
        await start_all(runners, "abc")
        nursery.cancel_scope.cancel()
    assert jobs.log == ["start a", "end a"]
    assert jobs.abandoned == ["b", "c"]


async def test_an_idle_runner_keeps_nothing_of_its_last_job_alive() -> None:
    class Payload:
        pass

    async def run(payload: Payload) -> None:
        await trio.lowlevel.checkpoint()

    payload = Payload()
    alive = weakref.ref(payload)
    async with trio.open_nursery() as nursery:
        runners = Runners(nursery, 1, run, Jobs().abandon)
        runners.start(payload)
        del payload
        await trio.testing.wait_all_tasks_blocked()
        assert alive() is None  # a large argument is not held per idle connection
        nursery.cancel_scope.cancel()
