"""A small actor kit: bounded mailboxes, typed commands, one-shot replies.

Rules (after tractor and pykka):

* An actor owns its state; other tasks reach it only through its mailbox.
* Mailboxes are bounded: ``tell`` waits for room (back-pressure on the sender);
  ``tell_nowait`` raises ``trio.WouldBlock`` instead.
* ``ask`` sends a command carrying a ``Reply`` and waits for the answer.
* When an actor stops, every pending ask fails with ``ActorStopped``: the
  commands still queued are drained and their replies failed, and so is the
  reply of the command that was being handled when the actor died.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import trio

__all__ = ["ActorStopped", "Mailbox", "Reply"]

T = TypeVar("T")
C = TypeVar("C")


class ActorStopped(Exception):
    """The actor is not running (any more); the command was not handled."""


class Reply(Generic[T]):
    """A one-shot answer slot: set or failed exactly once, awaited by the asker."""

    __slots__ = ("_error", "_event", "_value")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def set(self, value: T) -> None:
        if not self._event.is_set():
            self._value = value
            self._event.set()

    def fail(self, error: BaseException) -> None:
        if not self._event.is_set():
            self._error = error
            self._event.set()

    async def wait(self) -> T:
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class Mailbox(Generic[C]):
    """The bounded inbox of one actor.

    Args:
        name: for error messages (``ActorStopped: router is not running``).
        capacity: how many commands may wait before senders block.
        reply_of: extracts the ``Reply`` of a command, if it has one, so that
            pending asks can be failed when the actor stops.
    """

    def __init__(
        self,
        name: str,
        capacity: int,
        reply_of: Callable[[C], Reply[object] | None] = lambda _: None,
    ) -> None:
        self.name = name
        self._send, self._receive = trio.open_memory_channel[C](capacity)
        self._reply_of = reply_of
        self._stopped = False
        self.queued = 0
        """Commands queued so far: a command queued last stays last while this
        has not moved (``Router`` grows such a command in place)."""

    def _stopped_error(self) -> ActorStopped:
        return ActorStopped(f"{self.name} is not running")

    async def tell(self, command: C) -> None:
        """Queue a command, waiting for room in the mailbox."""
        if self._stopped:
            raise self._stopped_error()
        try:
            await self._send.send(command)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise self._stopped_error() from None
        self.queued += 1

    def tell_nowait(self, command: C) -> None:
        """Queue a command now.

        Raises:
            trio.WouldBlock: the mailbox is full.
            ActorStopped: the actor has stopped.
        """
        if self._stopped:
            raise self._stopped_error()
        try:
            self._send.send_nowait(command)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise self._stopped_error() from None
        self.queued += 1

    async def ask(self, make: Callable[[Reply[T]], C]) -> T:
        """Send ``make(reply)`` and wait for the actor's answer."""
        reply: Reply[T] = Reply()
        await self.tell(make(reply))
        return await reply.wait()

    async def serve(self, handle: Callable[[C], object]) -> None:
        """Run ``handle`` on each command until cancelled; then stop the mailbox.

        ``handle`` is synchronous on purpose: an actor that awaits inside its
        loop stalls every sender. Work that must await is started in a nursery
        the actor owns, with the state change done here.
        """
        current: C | None = None
        try:
            async for command in self._receive:
                current = command
                handle(command)
                current = None
        finally:
            self._stop(current)

    def _stop(self, current: C | None) -> None:
        self._stopped = True
        error = self._stopped_error()
        if current is not None:
            self._fail(current, error)
        self._send.close()
        while True:
            try:
                queued = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            self._fail(queued, error)
        self._receive.close()

    def _fail(self, command: C, error: ActorStopped) -> None:
        reply = self._reply_of(command)
        if reply is not None:
            reply.fail(error)
