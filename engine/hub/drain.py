"""The invocations in flight on a server's connections, for a graceful stop."""

from __future__ import annotations

import trio

__all__ = ["Drain"]


class Drain:
    """Counts the invocations and streams running on one ``HubServer``'s
    connections, and says whether it is draining (stopping: new invocations are
    refused, running ones get the shutdown grace to finish).

    Not an actor: every dispatcher of the server updates it from its own tasks,
    one integer at a time, without awaiting (Trio switches tasks only at
    checkpoints).
    """

    def __init__(self) -> None:
        self._draining = False
        self.busy = 0
        """Invocations and streams started and not yet finished (their
        Completion sent, or cancelled)."""
        self._waiter: trio.Event | None = None

    def start(self) -> None:
        """The server is stopping: refuse new invocations from now on."""
        self._draining = True

    def draining(self) -> bool:
        """Whether new invocations are refused (a method, not an attribute: it
        changes while a dispatcher awaits, which type checkers cannot see)."""
        return self._draining

    def begin(self) -> None:
        self.busy += 1

    def end(self) -> None:
        self.busy -= 1
        if not self.busy and self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    async def wait_idle(self) -> None:
        """Returns once nothing is in flight (at once when nothing is)."""
        await trio.lowlevel.checkpoint()
        while self.busy:
            if self._waiter is None:
                self._waiter = trio.Event()
            await self._waiter.wait()
