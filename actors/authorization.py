"""The authorization actor: the single writer of a server's authorization state.

What it owns is one immutable value (the engine's ``AuthorizationState``: the
banned users now, revocations and policy changes later). Readers never wait
and never ask it anything: ``current`` is the latest snapshot, an immutable
value read from any task. Writers send a change, a pure function from the old
state to the new one, through the mailbox: ``await actor.change(fn)``. The
actor applies the changes one at a time in arrival order, replaces the snapshot
and answers each writer with the state its change produced.

With Trio's one thread a single assignment could not tear anyway; what the
mailbox buys is one order for every change (a ban and an unban of one user,
sent from two tasks, end in the state of the later one, whatever the tasks do
between sending and resuming) and one place where a change will also leave
the process (a backplane, a store) once changes do.

Policy evaluation does not go through here: it runs in the task that asks
(``triohub.hub.authorizer``), which reads ``current``.

This module never imports the rest of ``triohub``: the state's type is a
parameter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs
import trio

from .kit import ActorStopped, Mailbox, Reply

__all__ = ["ActorStopped", "AuthorizationActor"]

log = logging.getLogger("triohub.authorization")

S = TypeVar("S")


@attrs.define(eq=False)
class _Change:
    update: Callable[[Any], Any]
    reply: Reply[Any]


def _reply_of(command: _Change) -> Reply[Any]:
    return command.reply


class AuthorizationActor(Generic[S]):
    """Owns one immutable state value. Start it with ``await nursery.start(actor.run)``.

    Args:
        initial: the state before any change.
        mailbox_size: changes that may queue before writers wait.
    """

    def __init__(self, initial: S, *, mailbox_size: int = 256) -> None:
        self._state = initial
        self._version = 0
        self._mailbox: Mailbox[_Change] = Mailbox("authorization", mailbox_size, _reply_of)
        self._ran = False

    @property
    def current(self) -> S:
        """The latest state: an immutable snapshot, read without waiting (any task,
        running or not)."""
        return self._state

    @property
    def version(self) -> int:
        """How many changes have been applied."""
        return self._version

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply changes until cancelled; then fail every change still queued."""
        if self._ran:
            raise RuntimeError("this AuthorizationActor is already running or has run")
        self._ran = True
        task_status.started()
        await self._mailbox.serve(self._apply)

    def _apply(self, command: _Change) -> None:
        try:
            state = command.update(self._state)
        except Exception as exc:
            # The state stays as it was; the writer learns why.
            command.reply.fail(exc)
            return
        self._state = state
        self._version += 1
        command.reply.set(state)

    async def change(self, update: Callable[[S], S]) -> S:
        """Apply ``update`` to the state, after every change sent before it.

        ``update`` gets the current state and returns the next one; it runs in
        the actor's task and must neither block nor mutate what it was given.

        A writer cancelled while it waits for the answer does not withdraw the
        change: once sent, it is applied.

        Returns:
            The state ``update`` produced (a later change may already have
            replaced it).

        Raises:
            ActorStopped: the actor is not running; nothing changed.
            Exception: whatever ``update`` raised; nothing changed.
        """
        reply: Reply[S] = Reply()
        await self._mailbox.tell(_Change(update, reply))
        return await reply.wait()
