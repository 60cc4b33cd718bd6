"""Client-to-server streams as async iterators a hub method consumes, and the
upload streams of one connection by stream id."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Generic, TypeVar

import trio

from ..protocol import Completion, StreamItem, Texts
from .logs import ConnectionLog, clip

__all__ = ["ClientStream", "ClientStreamError", "Uploads"]

log = logging.getLogger("triohub.hub")

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


class Uploads:
    """The open upload streams of one connection, by stream id (owned by its
    dispatcher): the client's StreamItems and Completions feed them."""

    def __init__(self, capacity: int, connection_log: ConnectionLog) -> None:
        self._capacity = capacity
        self._log = connection_log
        self._open: dict[str, ClientStream[Any]] = {}

    def open(
        self, stream_ids: Sequence[str], coercers: Sequence[Callable[[Any], Any] | None]
    ) -> list[ClientStream[Any]]:
        """One stream per id of an invocation, each checking its items with its coercer."""
        uploads = []
        for stream_id, coerce in zip(stream_ids, coercers, strict=True):
            upload: ClientStream[Any] = ClientStream(stream_id, self._capacity, coerce)
            self._open[stream_id] = upload
            uploads.append(upload)
        return uploads

    def close(self, uploads: list[ClientStream[Any]]) -> None:
        """The invocation finished: the server completes its remaining streams."""
        for upload in uploads:
            if self._open.pop(upload.stream_id, None) is not None:
                upload._complete()

    async def item(self, message: StreamItem) -> None:
        upload = self._open.get(message.invocation_id)
        if upload is None:
            log.debug("stream item for unknown stream %r ignored", clip(message.invocation_id))
            return
        item = message.item
        if upload.coerce is not None:
            try:
                item = upload.coerce(item)
            except (TypeError, ValueError) as error:
                # As the reference does: the stream ends with this error, and
                # later items for it are ignored.
                self._log.info(
                    "upload stream %s ended: an item of the wrong type (%s)",
                    clip(upload.stream_id),
                    error,
                )
                del self._open[upload.stream_id]
                upload._complete(Texts.STREAM_BINDING_FAILED)
                return
        await upload._put(item)

    def end(self, message: Completion) -> bool:
        """Ends the upload stream this Completion names; ``False`` if it names none."""
        upload = self._open.pop(message.invocation_id, None)
        if upload is None:
            return False
        upload._complete(message.error)
        return True
