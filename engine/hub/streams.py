"""Client-to-server streams as async iterators a hub method consumes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import trio

__all__ = ["ClientStream", "ClientStreamError"]

T = TypeVar("T")


class ClientStreamError(Exception):
    """The client ended the stream with an error (its Completion's ``error``), or
    sent an item of the wrong type (``Failed to bind Stream message.``).

    Not a ``HubError``: a method that lets it escape fails like the reference's
    (``An unexpected error occurred invoking 'M' on the server.``), without an
    error traceback in the log, since the client caused it.
    """


class ClientStream(Generic[T]):
    """Items the client sends for one stream id, in order.

    Annotate a hub method parameter with ``ClientStream[int]`` (or
    ``AsyncIterator[int]``) and iterate it with ``async for``. The buffer is
    bounded (``stream_buffer_capacity``): a client that sends faster than the
    method consumes is slowed down, not buffered without limit.
    """

    def __init__(
        self, stream_id: str, capacity: int, coerce: Callable[[Any], Any] | None = None
    ) -> None:
        self.stream_id = stream_id
        self.coerce = coerce
        """Checks (and converts) each item against the parameter's ``T``."""
        self._send, self._receive = trio.open_memory_channel[Any](capacity)
        self._error: str | None = None

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        try:
            item: T = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._error is not None:
                raise ClientStreamError(self._error) from None
            raise StopAsyncIteration from None
        return item

    # -- fed by the dispatcher ----------------------------------------------

    async def _put(self, item: Any) -> None:
        try:
            await self._send.send(item)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the method stopped reading; drop like the reference

    def _complete(self, error: str | None = None) -> None:
        self._error = error or None
        self._send.close()
