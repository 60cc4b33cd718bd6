"""Long polling: each GET takes what the server has buffered, POSTs send.

The connection outlives every single request, so its supervisor runs in the
server's nursery. Between polls the connection buffers what it sends, up to a
bound: when the buffer is full the connection's writer waits, its outbox
fills, and the router drops it as a slow consumer. A client that stops polling
for ``disconnect_timeout`` is dropped too. Nothing grows without limit.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from ..protocol import TransportType
from .sse import Inbound

if TYPE_CHECKING:
    from ..auth.principal import Principal
    from ..hub.server import HubServer
    from .connections import ConnectionTable, HttpConnection

__all__ = ["LongPollingTransport", "PollOutcome", "run_long_polling"]


class PollOutcome(enum.Enum):
    DATA = "data"
    """200 with what was buffered."""
    TIMEOUT = "timeout"
    """200 with an empty body: poll again."""
    SUPERSEDED = "superseded"
    """204: a newer poll took over."""
    ENDED = "ended"
    """204: the connection is over."""


class LongPollingTransport:
    """The hub transport of one long-polling connection.

    Args:
        max_buffer: bytes held between polls before the writer must wait.
    """

    name = TransportType.LONG_POLLING.value
    """The transport's name in log lines."""

    def __init__(self, max_buffer: int = 1024 * 1024) -> None:
        self.inbound = Inbound()
        self._max_buffer = max_buffer
        self._buffer: list[bytes] = []
        self._size = 0
        self._changed = trio.Event()
        self._closed = False
        self._generation = 0
        self.polling = False
        self.last_poll = trio.current_time()
        self.taken = 0
        """How many times a poll took the buffer (``put_back`` checks it)."""
        self.ended_by_client = False
        """DELETE or silence: nobody will poll to learn that it ended."""
        self._told = trio.Event()

    # -- the supervisor's side ------------------------------------------------

    async def receive(self) -> bytes | None:
        return await self.inbound.get()

    async def send(self, chunks: Sequence[bytes]) -> None:
        while self._size >= self._max_buffer and not self._closed:
            await self.wait_change()
        if self._closed:
            raise trio.ClosedResourceError("the long-polling connection is closed")
        for chunk in chunks:
            self._buffer.append(chunk)
            self._size += len(chunk)
        self._notify()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self.inbound.close()
            self._notify()

    # -- the poll requests' side -------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def end(self) -> None:
        """DELETE, or the client stopped polling: the reader sees the end."""
        self.ended_by_client = True
        self.inbound.end()
        self._closed = True
        self._notify()

    async def poll(self, hold: float) -> tuple[PollOutcome, bytes]:
        """Wait up to ``hold`` seconds for data; a newer poll supersedes this one."""
        self._generation += 1
        generation = self._generation
        self._notify()  # wake an older poll so it answers 204
        self.polling = True
        try:
            with trio.move_on_after(hold):
                while True:
                    if generation != self._generation:
                        return PollOutcome.SUPERSEDED, b""
                    if self._size:
                        return PollOutcome.DATA, self._take()
                    if self._closed:
                        self._told.set()
                        return PollOutcome.ENDED, b""
                    await self.wait_change()
            return PollOutcome.TIMEOUT, b""
        finally:
            if generation == self._generation:
                self.polling = False
                self.last_poll = trio.current_time()
                self._notify()  # the idle reaper restarts its count

    async def wait_told(self) -> None:
        """Returns once a poll was answered 204 (the client knows it ended)."""
        await self._told.wait()

    def put_back(self, data: bytes, taken: int) -> bool:
        """Records a poll took (its ``taken`` count) that never reached its
        client (a forwarded poll whose client left): first in the buffer again,
        as if that poll had stopped before taking them. ``False`` when a later
        poll took records since (putting these back would reorder them) or
        the connection is closed."""
        if self._closed or taken != self.taken:
            return False
        self._buffer.insert(0, data)
        self._size += len(data)
        self._notify()
        return True

    def _take(self) -> bytes:
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        self.taken += 1
        self._notify()  # room for a waiting writer
        return data

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_change(self) -> None:
        """Returns at the next change: data, a poll starting or ending, the end."""
        await self._changed.wait()


async def run_long_polling(
    server: HubServer,
    table: ConnectionTable,
    connection: HttpConnection,
    transport: LongPollingTransport,
    principal: Principal,
) -> None:
    """The supervisor of a long-polling connection, in the hub server's nursery
    (started by its first poll); drops the connection's id from ``table`` at its end."""
    registration = connection.registration
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                _reap_idle_poller, transport, registration.options.disconnect_timeout
            )
            await server.connect(
                registration,
                transport,
                connection_id=connection.connection_id,
                principal=principal,
                keep_alive=False,  # polling keeps itself alive
            )
            if not transport.ended_by_client:
                # Ended by the server: keep the id until a poll has collected
                # the close record and been told 204 (the reference's
                # "connection finished"), unless the client stopped polling.
                idle_limit = transport.last_poll + registration.options.disconnect_timeout
                with trio.move_on_at(idle_limit):
                    await transport.wait_told()
            nursery.cancel_scope.cancel()
    finally:
        table.remove(connection.token)


async def _reap_idle_poller(transport: LongPollingTransport, idle_limit: float) -> None:
    """End a long-polling connection whose client stopped polling."""
    while not transport.closed:
        if transport.polling:
            await transport.wait_change()
            continue
        due = transport.last_poll + idle_limit
        if trio.current_time() >= due:
            transport.end()
            return
        await trio.sleep_until(due)
