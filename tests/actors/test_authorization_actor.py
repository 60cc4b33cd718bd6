"""The authorization actor: concurrent evaluations that fail closed."""

from __future__ import annotations

import ast
import logging
import math
import pathlib
from collections.abc import Awaitable, Callable

import attrs
import pytest
import trio
import trio.testing

import triohub.actors.authorization
from triohub.actors.authorization import AuthorizationActor, Decision
from triohub.actors.kit import ActorStopped
from triohub.auth.principal import ANONYMOUS, Principal
from triohub.authorization import (
    AuthorizationContext,
    AuthorizationPolicy,
    AuthorizationResult,
    PolicyRegistry,
    Requirement,
    evaluate,
)

LOGGER = "triohub.authorization"


@attrs.frozen
class Verdict:
    succeeded: bool


ALLOW, DENY = Verdict(True), Verdict(False)


def after(seconds: float, verdict: Verdict = ALLOW) -> Callable[[], Awaitable[Verdict]]:
    async def job() -> Verdict:
        await trio.sleep(seconds)
        return verdict

    return job


async def start(nursery: trio.Nursery, job_timeout: float = 5.0) -> AuthorizationActor:
    actor = AuthorizationActor(job_timeout)
    await nursery.start(actor.run)
    return actor


def assert_timed_out(
    decision: Decision[Verdict], caplog: pytest.LogCaptureFixture, label: str, began: float
) -> None:
    """A deny for a timeout at the 2 s deadline, logged once at WARNING naming the job."""
    assert decision.allowed is False
    assert decision.error == "timeout"
    assert decision.result is None
    assert trio.current_time() - began == pytest.approx(2.0)
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.WARNING
    assert label in record.getMessage()


# -- verdicts ---------------------------------------------------------------------


async def test_allowed_and_denied_results(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    actor = await start(nursery)
    allowed = await actor.evaluate(after(0), label="ChatHub.SendMessage")
    denied = await actor.evaluate(after(0, DENY), label="ChatHub.BanUser")
    assert allowed == Decision(allowed=True, result=ALLOW, error=None, elapsed=0.0)
    assert denied == Decision(allowed=False, result=DENY, error=None, elapsed=0.0)


@pytest.mark.parametrize("result", [None, object(), "yes", Verdict(1)])  # type: ignore[arg-type]
async def test_a_result_without_a_boolean_succeeded_is_a_deny(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, result: object
) -> None:
    async def job() -> object:
        return result

    actor = await start(nursery)
    decision = await actor.evaluate(job, label="EchoHub.Echo")  # type: ignore[type-var]
    assert not decision.allowed
    assert decision.error == "invalid result"
    assert decision.result is None
    assert "EchoHub.Echo" in caplog.text


async def test_a_raising_job_denies_and_is_logged(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def job() -> Verdict:
        raise ConnectionError("user directory unreachable")

    actor = await start(nursery)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        decision = await actor.evaluate(job, label="ChatHub.BanUser policy=Administrators")
    assert decision == Decision(allowed=False, result=None, error="ConnectionError", elapsed=0.0)
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.ERROR
    assert "ChatHub.BanUser policy=Administrators" in record.getMessage()
    assert "ConnectionError" in record.getMessage()
    assert record.exc_info is not None  # the traceback is kept for debugging


async def test_a_job_over_the_timeout_denies_and_is_logged(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    actor = await start(nursery, job_timeout=2.0)
    begin = trio.current_time()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        decision = await actor.evaluate(after(10), label="ChatHub.ViewUserHistory")
    assert decision.elapsed == pytest.approx(2.0)
    assert_timed_out(decision, caplog, "ChatHub.ViewUserHistory", begin)


async def test_a_job_within_the_timeout_is_decided(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    actor = await start(nursery, job_timeout=2.0)
    decision = await actor.evaluate(after(1.5), label="slow but in time")
    assert decision.allowed
    assert decision.elapsed == pytest.approx(1.5)


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan])
def test_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        AuthorizationActor(timeout=timeout)


async def test_no_timeout(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    actor = await start(nursery, job_timeout=math.inf)
    decision = await actor.evaluate(after(3600), label="patient")
    assert decision.allowed
    assert decision.elapsed == pytest.approx(3600)


# -- concurrency --------------------------------------------------------------------


async def test_a_slow_evaluation_does_not_delay_another(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    actor = await start(nursery, job_timeout=60.0)
    begin = trio.current_time()
    finished: dict[str, float] = {}
    decisions: dict[str, Decision[Verdict]] = {}

    async def ask(name: str, seconds: float) -> None:
        decisions[name] = await actor.evaluate(after(seconds), label=name)
        finished[name] = trio.current_time() - begin

    async with trio.open_nursery() as callers:
        callers.start_soon(ask, "slow", 10.0)
        await trio.testing.wait_all_tasks_blocked()  # the slow job is running first
        callers.start_soon(ask, "fast", 0.0)

    assert finished["fast"] == pytest.approx(0.0)
    assert finished["slow"] == pytest.approx(10.0)
    assert decisions["slow"].allowed
    assert decisions["fast"].allowed


async def test_many_evaluations_finish_in_their_own_time(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    actor = await start(nursery, job_timeout=60.0)
    begin = trio.current_time()
    finished: dict[int, float] = {}

    async def ask(seconds: int) -> None:
        await actor.evaluate(after(seconds), label=f"job {seconds}")
        finished[seconds] = trio.current_time() - begin

    async with trio.open_nursery() as callers:
        for seconds in (5, 1, 4, 2, 3):
            callers.start_soon(ask, seconds)
    assert finished == {s: pytest.approx(float(s)) for s in (1, 2, 3, 4, 5)}


async def test_a_caller_that_gives_up_cancels_its_job(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    cancelled_at: list[float] = []

    async def job() -> Verdict:
        try:
            await trio.sleep(30)
        except trio.Cancelled:
            cancelled_at.append(trio.current_time())
            raise
        return ALLOW

    actor = await start(nursery, job_timeout=60.0)
    begin = trio.current_time()
    with trio.move_on_after(1):
        await actor.evaluate(job, label="abandoned")
    await trio.testing.wait_all_tasks_blocked()
    assert [t - begin for t in cancelled_at] == [pytest.approx(1.0)]
    # The actor is still serving.
    assert (await actor.evaluate(after(0), label="next")).allowed


# -- stopping -----------------------------------------------------------------------


async def test_stopping_fails_running_and_later_asks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    actor = AuthorizationActor(timeout=60.0)
    outcomes: list[BaseException] = []

    async def ask() -> None:
        try:
            await actor.evaluate(after(30), label="pending")
        except ActorStopped as error:
            outcomes.append(error)

    actor_scope = trio.CancelScope()

    async def run_actor(task_status: trio.TaskStatus[None]) -> None:
        with actor_scope:
            await actor.run(task_status=task_status)

    with trio.fail_after(5):  # a broken promise would leave the askers waiting forever
        async with trio.open_nursery() as nursery:
            await nursery.start(run_actor)
            nursery.start_soon(ask)
            nursery.start_soon(ask)
            await trio.sleep(1)  # both jobs are running now
            actor_scope.cancel()

    assert len(outcomes) == 2
    assert all(isinstance(e, ActorStopped) for e in outcomes)
    assert trio.current_time() == pytest.approx(1.0)  # nobody waited for the 30 s jobs
    with pytest.raises(ActorStopped):
        await actor.evaluate(after(0), label="too late")


async def test_asks_queued_in_the_mailbox_fail_when_the_actor_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    actor = AuthorizationActor(mailbox_size=4)
    errors: list[BaseException] = []

    async def ask() -> None:
        try:
            await actor.evaluate(after(0), label="queued")
        except ActorStopped as error:
            errors.append(error)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()  # queued; the actor never started
            with trio.CancelScope() as scope:
                scope.cancel()
                await actor.run()
    assert len(errors) == 3


async def test_an_actor_runs_once(nursery: trio.Nursery) -> None:
    actor = await start(nursery)
    with pytest.raises(RuntimeError, match="already running"):
        await actor.run()


# -- with the real evaluator ------------------------------------------------------


@attrs.frozen
class DirectoryLookup(Requirement):
    """A self-handling requirement that awaits a slow lookup."""

    delay: float

    async def handle(self, context: AuthorizationContext) -> None:
        await trio.sleep(self.delay)
        if context.principal.is_in_role("Administrators"):
            context.succeed(self)


async def test_evaluations_of_real_policies(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    registry = PolicyRegistry()
    admin = Principal(claims={"sub": "alice", "role": ["Administrators"]}, scheme="Bearer")
    actor = await start(nursery, job_timeout=5.0)

    fast = AuthorizationPolicy.build(authenticated=True, requirements=[DirectoryLookup(0.5)])
    decision = await actor.evaluate(
        lambda: evaluate(fast, admin, None, registry), label="fast policy"
    )
    assert decision.allowed
    assert isinstance(decision.result, AuthorizationResult)
    assert decision.elapsed == pytest.approx(0.5)

    denied = await actor.evaluate(lambda: evaluate(fast, ANONYMOUS, None, registry), label="anon")
    assert not denied.allowed
    assert denied.result is not None
    assert denied.result.failed_requirement_name == "AuthenticatedUserRequirement"

    too_slow = AuthorizationPolicy([DirectoryLookup(30)])
    decision = await actor.evaluate(
        lambda: evaluate(too_slow, admin, None, registry), label="slow policy"
    )
    assert (decision.allowed, decision.error) == (False, "timeout")


# -- boundaries --------------------------------------------------------------------


# Installed, the engine is the package `triohub` and the actors live inside it as
# `triohub.actors`; they still never import the rest of it (nor `engine`, its folder).
def engine_imports(source: str) -> list[str]:
    """The imports of a module of ``triohub.actors`` that reach outside ``triohub.actors``
    into the engine: ``from ..x`` (two dots climb to ``triohub``), ``triohub[.x]`` other
    than ``triohub.actors[.x]``, or the folder name ``engine``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level >= 2:
                found.append("." * node.level + (node.module or ""))
                continue
            names = [] if node.level == 1 else [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")
            if top[0] == "engine" or (top[0] == "triohub" and top[1:2] != ["actors"]):
                found.append(name)
    return found


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from .kit import Mailbox\nimport trio\nimport triohub.actors.kit", []),
        ("from triohub.actors.router import Router", []),
        ("from ..hub.server import HubServer", ["..hub.server"]),
        ("from .. import Hub", [".."]),
        ("from triohub import Hub", ["triohub"]),
        ("import triohub.hub.server", ["triohub.hub.server"]),
        ("from engine.hub import Hub", ["engine.hub"]),
        ("import engine", ["engine"]),
    ],
)
def test_the_boundary_check_sees_an_engine_import(source: str, found: list[str]) -> None:
    assert engine_imports(source) == found


@pytest.mark.parametrize(
    "path",
    sorted(pathlib.Path(triohub.actors.authorization.__file__).parent.glob("*.py")),
    ids=lambda p: p.name,
)
def test_the_actors_import_nothing_from_engine(path: pathlib.Path) -> None:
    assert engine_imports(path.read_text()) == [], f"{path.name} imports the engine"


# -- evaluate_here: the same rules in the calling task --------------------------------


async def test_here_a_job_that_never_suspends_is_decided_without_a_checkpoint(
    nursery: trio.Nursery,
) -> None:
    actor = await start(nursery)
    steps: list[str] = []

    async def job() -> Verdict:
        steps.append("ran")
        return ALLOW

    decision = await actor.evaluate_here(job, label="sync")
    assert decision.allowed
    assert steps == ["ran"]


@pytest.mark.parametrize(("seconds", "allowed"), [(4.9, True), (5.1, False)])
async def test_here_the_timeout_counts_from_the_start_once_the_job_suspends(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, seconds: float, allowed: bool
) -> None:
    actor = await start(nursery, job_timeout=5.0)
    began = trio.current_time()
    decision = await actor.evaluate_here(after(seconds), label="slow")
    assert decision.allowed is allowed
    assert decision.error == (None if allowed else "timeout")
    assert trio.current_time() - began == pytest.approx(min(seconds, 5.0))


async def test_here_a_job_whose_first_step_enters_its_own_scopes_nests_properly(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The job's first step runs inside the timeout scope: scopes it opens before
    suspending (trio.sleep opens one; so does this move_on_after) close in order."""
    actor = await start(nursery, job_timeout=5.0)

    async def job() -> Verdict:
        with trio.move_on_after(1):
            await trio.sleep(2)  # cut at 1 s by the job's own scope
        with trio.CancelScope():
            await trio.sleep(1)
        return ALLOW

    began = trio.current_time()
    decision = await actor.evaluate_here(job, label="scopes")
    assert decision.allowed
    assert trio.current_time() - began == pytest.approx(2.0)
    decision = await actor.evaluate_here(after(10), label="after scopes")
    assert decision.error == "timeout"


async def test_here_an_exception_after_suspending_denies(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    actor = await start(nursery)

    async def job() -> Verdict:
        await trio.sleep(1)
        raise LookupError("the user store is down")

    decision = await actor.evaluate_here(job, label="raises late")
    assert not decision.allowed
    assert decision.error == "LookupError"


async def test_here_a_caller_cancelled_while_its_job_waits_stops_the_job(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    actor = await start(nursery)
    finished: list[str] = []

    async def job() -> Verdict:
        try:
            await trio.sleep(3)
        finally:
            finished.append("cleaned up")
        return ALLOW

    with trio.move_on_after(1) as outer:
        await actor.evaluate_here(job, label="abandoned")
    assert outer.cancelled_caught
    assert finished == ["cleaned up"]


# -- cooperative jobs: the timeout applies where the job awaits through ``timed`` ----


@pytest.mark.parametrize("here", [True, False], ids=["here", "in-actor"])
@pytest.mark.parametrize(("seconds", "allowed"), [(4.9, True), (5.1, False)])
async def test_a_cooperative_job_is_timed_where_it_awaits_through_timed(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    here: bool,
    seconds: float,
    allowed: bool,
) -> None:
    actor = await start(nursery, job_timeout=5.0)

    async def job(timed: Callable[[Awaitable[None]], Awaitable[None]]) -> Verdict:
        await timed(trio.sleep(seconds / 2))  # noqa: ASYNC105 (timed awaits it)
        await timed(trio.sleep(seconds / 2))  # noqa: ASYNC105 (the deadline counts from the start)
        return ALLOW

    evaluate = actor.evaluate_here if here else actor.evaluate
    began = trio.current_time()
    decision = await evaluate(job, label="cooperative", cooperative=True)
    assert decision.allowed is allowed
    assert decision.error == (None if allowed else "timeout")
    assert trio.current_time() - began == pytest.approx(min(seconds, 5.0))


async def test_a_cooperative_job_that_raises_denies(nursery: trio.Nursery) -> None:
    actor = await start(nursery)

    async def job(timed: Callable[[Awaitable[None]], Awaitable[None]]) -> Verdict:
        await timed(trio.lowlevel.checkpoint())  # noqa: ASYNC105 (timed awaits it)
        raise KeyError("no such user")

    decision = await actor.evaluate_here(job, label="raises", cooperative=True)
    assert not decision.allowed
    assert decision.error == "KeyError"


# -- a job that swallows the timeout's Cancelled is still timed out -------------------


async def _swallow_cancelled(seconds: float) -> None:
    """A badly written handler: catches its Cancelled and returns normally."""
    try:
        await trio.sleep(seconds)
    except trio.Cancelled:
        pass  # swallowed: the scope's cancelled_caught stays False


@pytest.mark.parametrize("cooperative", [True, False], ids=["cooperative", "plain"])
@pytest.mark.parametrize("here", [True, False], ids=["here", "in-actor"])
async def test_a_job_that_swallows_cancelled_still_times_out(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    here: bool,
    cooperative: bool,
) -> None:
    """Both paths: the cooperative one (the timeout armed around what the job
    hands to ``timed``) and the plain one (the first step, then the deadline)."""
    actor = await start(nursery, job_timeout=2.0)

    async def cooperative_job(timed: Callable[[Awaitable[None]], Awaitable[None]]) -> Verdict:
        await timed(_swallow_cancelled(10))
        return ALLOW

    async def plain_job() -> Verdict:
        await _swallow_cancelled(10)
        return ALLOW

    job: Callable[..., Awaitable[Verdict]] = cooperative_job if cooperative else plain_job
    evaluate = actor.evaluate_here if here else actor.evaluate
    began = trio.current_time()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        decision = await evaluate(job, label="swallows", cooperative=cooperative)
    assert_timed_out(decision, caplog, "swallows", began)


async def test_a_cooperative_job_that_swallows_cancelled_in_time_is_decided(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Within the deadline nothing is cancelled, so nothing is swallowed."""
    actor = await start(nursery, job_timeout=2.0)

    async def job(timed: Callable[[Awaitable[None]], Awaitable[None]]) -> Verdict:
        await timed(_swallow_cancelled(1))
        return ALLOW

    decision = await actor.evaluate_here(job, label="in time", cooperative=True)
    assert decision.allowed


# -- decide_now: the synchronous first step under the actor's rules ---------------------


class Later:
    """Stands for the rest of a job (the engine's ``Continuation``)."""


async def test_decide_now_turns_an_outcome_into_a_decision(nursery: trio.Nursery) -> None:
    actor = await start(nursery)
    assert actor.decide_now(lambda: ALLOW, label="now", later=Later).allowed  # type: ignore[union-attr]
    denied = actor.decide_now(lambda: DENY, label="now", later=Later)
    assert isinstance(denied, Decision)
    assert not denied.allowed


async def test_decide_now_hands_back_the_rest_of_the_job(nursery: trio.Nursery) -> None:
    actor = await start(nursery)
    rest = Later()
    assert actor.decide_now(lambda: rest, label="later", later=Later) is rest


async def test_decide_now_denies_a_raising_step_and_a_wrong_result(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    actor = await start(nursery)

    def raises() -> Verdict:
        raise LookupError("the role store is down")

    raised = actor.decide_now(raises, label="raises", later=Later)
    assert isinstance(raised, Decision)
    assert (raised.allowed, raised.error) == (False, "LookupError")
    wrong = actor.decide_now(lambda: "yes", label="wrong", later=Later)
    assert isinstance(wrong, Decision)
    assert (wrong.allowed, wrong.error) == (False, "invalid result")
    assert any("raises raised LookupError" in r.getMessage() for r in caplog.records)


async def test_decide_now_refuses_when_the_actor_is_not_running() -> None:
    actor = AuthorizationActor(5.0)
    with pytest.raises(ActorStopped):
        actor.decide_now(lambda: ALLOW, label="stopped", later=Later)
