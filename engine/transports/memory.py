"""An in-memory transport: a connection whose client is in the same process.

Used by ``triohub.testing`` and by anyone embedding a hub without a network.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

__all__ = ["MemoryTransport", "memory_transport_pair"]


class MemoryTransport:
    """One side of an in-memory byte pipe that keeps record boundaries.

    Each ``send`` of a batch arrives as one chunk on the other side, like one
    WebSocket message.
    """

    name = "memory"
    """The transport's name in log lines (``TransportType`` spelling)."""

    def __init__(
        self,
        outgoing: trio.MemorySendChannel[bytes],
        incoming: trio.MemoryReceiveChannel[bytes],
    ) -> None:
        self._outgoing = outgoing
        self._incoming = incoming
        self.closed = False

    async def receive(self) -> bytes | None:
        try:
            return await self._incoming.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    async def send(self, chunks: Sequence[bytes]) -> None:
        if self.closed:
            raise trio.ClosedResourceError("transport is closed")
        try:
            await self._outgoing.send(b"".join(chunks))
        except trio.BrokenResourceError:
            raise trio.BrokenResourceError("the other side is gone") from None

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self._outgoing.aclose()
            await self._incoming.aclose()


def memory_transport_pair(buffer: int = 64) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected transports: (server side, client side).

    Args:
        buffer: chunks in flight per direction before the sender waits; a small
            value makes a client that stops reading look like a slow consumer.
    """
    to_client_send, to_client_receive = trio.open_memory_channel[bytes](buffer)
    to_server_send, to_server_receive = trio.open_memory_channel[bytes](buffer)
    server = MemoryTransport(to_client_send, to_server_receive)
    client = MemoryTransport(to_server_send, to_client_receive)
    return server, client
