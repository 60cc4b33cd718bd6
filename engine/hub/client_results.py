"""Client results of one connection: the server invokes a client method and
waits for the client's Completion (``clients.client(id).invoke``), for this
node's hub code or for another node's (forwarded through the backplane)."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio

from ..actors.kit import Reply
from ..protocol import Completion, HubMessage, Invocation, Texts
from .hub import HubError, LimitExceeded

__all__ = ["ClientResults", "in_on_connected"]

log = logging.getLogger("triohub.connection")

_in_on_connected: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "triohub_in_on_connected", default=False
)


@contextmanager
def in_on_connected() -> Iterator[None]:
    """Marks the task running ``on_connected``, where client results are refused
    (``Texts.CLIENT_RESULTS_IN_ON_CONNECTED``, as ASP.NET Core does)."""
    token = _in_on_connected.set(True)
    try:
        yield
    finally:
        _in_on_connected.reset(token)


class ClientResults:
    """The client results one connection is waiting for (owned by its session)."""

    def __init__(self, connection_id: str, max_pending: int) -> None:
        self._connection_id = connection_id
        self._max_pending = max_pending
        self._pending: dict[str, Reply[Any]] = {}
        self._remote_pending: dict[str, Reply[Completion | None]] = {}
        self._next_id = 0

    async def invoke(
        self,
        send: Callable[[HubMessage], Awaitable[None]],
        method: str,
        args: tuple[Any, ...],
        *,
        limit: float,
    ) -> Any:
        """Send the Invocation with ``send`` and return the client's result.

        Raises:
            HubError: called in ``on_connected``, the client answered with an
                error, did not answer within ``limit`` seconds, or the
                connection closed first.
            LimitExceeded: ``max_pending_client_results`` are already waiting.
        """
        if _in_on_connected.get():
            raise HubError(Texts.CLIENT_RESULTS_IN_ON_CONNECTED)
        if len(self._pending) >= self._max_pending:
            raise LimitExceeded(
                Texts.too_many_client_results(self._connection_id, self._max_pending)
            )
        self._next_id += 1
        invocation_id = f"s{self._next_id}"
        reply: Reply[Any] = Reply()
        self._pending[invocation_id] = reply
        try:
            await send(Invocation(method, args, invocation_id))
            with trio.move_on_after(limit):
                return await reply.wait()
            raise HubError(
                f"Client '{self._connection_id}' did not answer '{method}' within {limit:g} s."
            )
        finally:
            self._pending.pop(invocation_id, None)

    async def forward(
        self, send: Callable[[bytes], Awaitable[None]], invocation_id: str, data: bytes
    ) -> Completion | None:
        """Send another node's request (already encoded) and return the client's
        Completion; ``None`` if the connection ends first."""
        reply: Reply[Completion | None] = Reply()
        self._remote_pending[invocation_id] = reply
        try:
            await send(data)
            return await reply.wait()
        finally:
            self._remote_pending.pop(invocation_id, None)

    def received(self, message: Completion) -> None:
        """A Completion from the client that no upload stream claimed."""
        remote = self._remote_pending.pop(message.invocation_id, None)
        if remote is not None:
            remote.set(message)
            return
        reply = self._pending.pop(message.invocation_id, None)
        if reply is None:
            log.debug("completion for unknown invocation %r ignored", message.invocation_id)
        elif message.error is not None:
            reply.fail(HubError(message.error))
        else:
            reply.set(message.result)

    def closed(self, reason: str) -> None:
        """The connection ended (``reason``): every waiting call fails."""
        for reply in self._pending.values():
            reply.fail(HubError(f"Connection '{self._connection_id}' closed ({reason})."))
        self._pending.clear()
        for remote in self._remote_pending.values():
            remote.set(None)
        self._remote_pending.clear()
