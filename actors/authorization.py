"""The authorization actor: runs policy evaluations concurrently, failing closed.

It knows nothing of policies. A caller hands it a *job* (a zero-argument async
callable whose result has a ``succeeded`` attribute; the engine passes
``lambda: evaluate(policy, principal, resource, registry)``) and a *label* for
the logs, and gets back a ``Decision``.

Every job runs in its own task in the actor's nursery, so a handler awaiting
a slow lookup for one caller never delays another. A job that raises, that
returns something without ``succeeded is True``, or that runs longer than the
timeout is a deny, logged (logger ``triohub.authorization``) with the label.
A caller that gives up (is cancelled) cancels its job. When the actor stops,
every pending ask fails with ``ActorStopped``: the ones still in the mailbox,
and the ones whose job was running.

In-flight jobs are bounded by their askers: each one has a task waiting for
it, and the engine bounds those with its per-connection invocation limits.

``evaluate_here`` applies the same rules (timeout, fail closed, logs) in the
calling task, for callers that already are a task of their own per request:
the hop into the actor (a mailbox send, a new task, a reply) then costs more
than most policies do.

A *cooperative* job (``cooperative=True``; the engine's are) is called with
``timed`` and awaits through it whatever may suspend; the timeout is enforced
there. Work that never suspends cannot be interrupted by a Trio timeout anyway,
and a cancel scope around it would cost more than a typical policy. For the
same reason ``decide_now`` runs the synchronous first step of an evaluation
under the same rules with no timeout at all; the engine finishes only what
really awaits with ``evaluate_here``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

import attrs
import trio

from .kit import ActorStopped, Mailbox, Reply

__all__ = ["AuthorizationActor", "Decision", "Outcome", "Timed"]

log = logging.getLogger("triohub.authorization")


class Outcome(Protocol):
    """What a job returns: anything with a ``succeeded`` flag (``AuthorizationResult``)."""

    @property
    def succeeded(self) -> bool: ...


R = TypeVar("R", bound=Outcome)
T = TypeVar("T")
L = TypeVar("L")

Timed = Callable[[Awaitable[T]], Awaitable[T]]
"""What a cooperative job awaits through: ``await timed(awaitable)``."""


class _TimedOut(Exception):
    """A cooperative job's ``timed`` await reached the deadline."""


@attrs.frozen
class Decision(Generic[R]):
    """The answer to one ``evaluate``."""

    allowed: bool
    """True only if the job returned a result whose ``succeeded`` is ``True``."""
    result: R | None
    """What the job returned, or ``None`` if it raised or timed out."""
    error: str | None = None
    """Why the job did not produce a verdict: ``"timeout"``, the exception's type
    name, or ``"invalid result"``; ``None`` when the job returned normally."""
    elapsed: float = 0.0
    """Seconds the job ran (trio clock), not counting time queued in the mailbox;
    for a cooperative job, from its first ``timed`` await (0 if it never
    suspended)."""


@attrs.define(eq=False)
class _Evaluate:
    job: Callable[..., Awaitable[Outcome]]
    label: str
    reply: Reply[Decision[Outcome]]
    cooperative: bool = False
    abandon: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    """Cancelled by the asker when it stops waiting; the job then stops too."""


def _reply_of(command: _Evaluate) -> Reply[object]:
    return command.reply  # type: ignore[return-value]


class AuthorizationActor:
    """Runs authorization jobs concurrently. Start it with ``await nursery.start(actor.run)``.

    Args:
        timeout: seconds a job may run before it counts as a deny (``math.inf``
            for none). Time spent waiting in the mailbox does not count.
        mailbox_size: asks that may queue before askers wait.

    Raises:
        ValueError: ``timeout`` is not positive.
    """

    def __init__(self, timeout: float = 5.0, *, mailbox_size: int = 1024) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive (seconds, or math.inf), got {timeout!r}")
        self.timeout = timeout
        self._mailbox: Mailbox[_Evaluate] = Mailbox("authorization", mailbox_size, _reply_of)
        self._nursery: trio.Nursery | None = None
        self._running = False
        self._allowed_now: Decision[Outcome] | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the mailbox until cancelled; then fail every pending ask."""
        if self._nursery is not None:
            raise RuntimeError("this AuthorizationActor is already running or has run")
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._running = True
            task_status.started()
            try:
                await self._mailbox.serve(self._handle)
            finally:
                self._running = False
                nursery.cancel_scope.cancel()

    def _handle(self, command: _Evaluate) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._run_job, command, name=f"authorize {command.label}")

    async def _run_job(self, command: _Evaluate) -> None:
        try:
            decision = await self._decide(command)
        except BaseException:
            # Only the actor's own cancellation gets here (the job's errors are
            # caught in _decide): the ask fails as the kit promises.
            command.reply.fail(ActorStopped("authorization is not running"))
            raise
        command.reply.set(decision)

    async def _decide(self, command: _Evaluate) -> Decision[Outcome]:
        started = trio.current_time()
        result: Outcome | None = None
        error: str | None = None
        with command.abandon:
            result, error = await self._judge(
                command.job, command.label, started, command.cooperative
            )
        elapsed = trio.current_time() - started
        if command.abandon.cancelled_caught:
            return Decision(allowed=False, result=None, error="abandoned", elapsed=elapsed)
        return self._verdict(command.label, result, error, elapsed)

    async def _judge(
        self, job: Callable[..., Awaitable[Outcome]], label: str, started: float, cooperative: bool
    ) -> tuple[Outcome | None, str | None]:
        """Run ``job`` under the timeout: its result, or why there is none.

        A cancel scope acts only where its task passes a checkpoint, so a
        deadline armed around work that never suspends could never fire, and
        arming one costs more than the rest of a typical evaluation
        (benchmarks/). So the timeout is armed only around what can suspend:

        * a *cooperative* job is given ``timed``, and awaits through it whatever
          may suspend (the evaluator passes each handler's awaitable unless it
          provably cannot suspend); each such await runs under a scope ending
          at ``started + timeout``;
        * any other job runs whole under a deadline scope.
        """
        if cooperative:
            outcome, why, _ = await self._cooperative(job, label)
            return outcome, why
        result: Outcome | None = None
        error: str | None = None
        with trio.move_on_at(started + self.timeout) as scope:
            try:
                result = await job()
            except Exception as exc:
                error = type(exc).__name__
                log.error("authorization of %s raised %s; denied", label, error, exc_info=exc)
        if scope.cancel_called:  # even if the job swallowed Cancelled
            result, error = None, "timeout"
            log.warning("authorization of %s took longer than %s s; denied", label, self.timeout)
        return result, error

    async def _cooperative(
        self, job: Callable[..., Awaitable[Outcome]], label: str
    ) -> tuple[Outcome | None, str | None, float]:
        """Run a cooperative job: its result or why there is none, and how long
        it was suspended. The deadline is set at its first ``timed`` await
        (what ran before it cannot have suspended: microseconds)."""
        started: float | None = None
        timeout = self.timeout

        async def timed(awaitable: Awaitable[T]) -> T:
            nonlocal started
            if started is None:
                started = trio.current_time()
            with trio.move_on_at(started + timeout) as scope:
                value = await awaitable
            if scope.cancel_called:  # even if the awaitable swallowed Cancelled
                raise _TimedOut
            return value

        result: Outcome | None = None
        error: str | None = None
        try:
            result = await job(timed)
        except _TimedOut:
            error = "timeout"
            log.warning("authorization of %s took longer than %s s; denied", label, timeout)
        except Exception as exc:
            error = type(exc).__name__
            log.error("authorization of %s raised %s; denied", label, error, exc_info=exc)
        return result, error, 0.0 if started is None else trio.current_time() - started

    @staticmethod
    def _verdict(
        label: str, result: Outcome | None, error: str | None, elapsed: float
    ) -> Decision[Outcome]:
        if error is not None:
            return Decision(allowed=False, result=None, error=error, elapsed=elapsed)
        succeeded = getattr(result, "succeeded", None)
        if not isinstance(succeeded, bool):
            log.error(
                "authorization of %s returned %r, which has no boolean 'succeeded'; denied",
                label,
                type(result).__name__,
            )
            return Decision(allowed=False, result=None, error="invalid result", elapsed=elapsed)
        return Decision(allowed=succeeded, result=result, error=None, elapsed=elapsed)

    # -- the public face (any task) -----------------------------------------

    async def evaluate(
        self, job: Callable[..., Awaitable[R]], *, label: str, cooperative: bool = False
    ) -> Decision[R]:
        """Run ``job`` in the actor and wait for the decision.

        Args:
            job: an async callable returning an object with a ``succeeded``
                attribute; no arguments, or with ``cooperative`` one: ``timed``.
            cooperative: ``job(timed)`` awaits everything that may suspend as
                ``await timed(awaitable)``, which enforces the timeout there
                (and only there: the job promises the rest never suspends).
            label: what is being authorized, for logs (e.g. ``"ChatHub.BanUser
                policy=Administrators"``); never put credentials in it.

        Returns:
            The decision; ``allowed`` is False if the job raised, timed out or
            returned something without ``succeeded is True``.

        Raises:
            ActorStopped: the actor is not running, or stopped before deciding.
        """
        reply: Reply[Decision[Outcome]] = Reply()
        command = _Evaluate(job, label, reply, cooperative)
        await self._mailbox.tell(command)
        try:
            decision = await reply.wait()
        except BaseException:
            command.abandon.cancel()
            raise
        return decision  # type: ignore[return-value]

    def decide_now(
        self, step: Callable[..., object], *arguments: Any, label: str, later: type[L]
    ) -> Decision[Outcome] | L:
        """The synchronous first step of an evaluation, under the actor's rules.

        ``step(*arguments)`` returns either the outcome (the evaluation needed no await) or
        an instance of ``later``: the rest of the job, to finish with
        ``evaluate_here``, which is returned as is. There is no timeout to keep
        here: Trio cancels only at checkpoints, and a synchronous step has none.

        Returns:
            The decision (a step that raised, or returned something that is
            neither an outcome nor ``later``, is a logged deny), or the ``later``.

        Raises:
            ActorStopped: the actor is not running (a stopped server denies).
        """
        if not self._running:
            raise ActorStopped("authorization is not running")
        try:
            result = step(*arguments)
        except Exception as exc:
            error = type(exc).__name__
            log.error("authorization of %s raised %s; denied", label, error, exc_info=exc)
            return Decision(allowed=False, result=None, error=error)
        if isinstance(result, later):
            return result
        if getattr(result, "succeeded", None) is True:
            cached = self._allowed_now
            if cached is None or cached.result is not result:
                cached = self._allowed_now = Decision(True, result, None, 0.0)  # type: ignore[arg-type]
            return cached
        return self._verdict(label, result, None, 0.0)  # type: ignore[arg-type]

    async def evaluate_here(
        self, job: Callable[..., Awaitable[R]], *, label: str, cooperative: bool = False
    ) -> Decision[R]:
        """``evaluate``, run in the calling task instead of one of the actor's.

        The same decision and logs (timeout, fail closed, ``"invalid result"``);
        a caller that gives up cancels its job by being its job. Only for a
        caller that already runs in a task of its own per request, so that a
        slow handler still delays nobody else.

        Raises:
            ActorStopped: the actor is not running (a stopped server denies).
        """
        if not self._running:
            raise ActorStopped("authorization is not running")
        if cooperative:
            # The path of every guarded call: nothing here it can do without.
            result, error, elapsed = await self._cooperative(job, label)
            if error is None and not elapsed and getattr(result, "succeeded", None) is True:
                # Allowed without suspending: one Decision per result object
                # (an evaluator returns a shared value for "allowed").
                cached = self._allowed_now
                if cached is None or cached.result is not result:
                    cached = self._allowed_now = Decision(True, result, None, 0.0)
                return cached  # type: ignore[return-value]
            return self._verdict(label, result, error, elapsed)  # type: ignore[return-value]
        started = trio.current_time()
        result, error = await self._judge(job, label, started, cooperative)
        decision = self._verdict(label, result, error, trio.current_time() - started)
        return decision  # type: ignore[return-value]
