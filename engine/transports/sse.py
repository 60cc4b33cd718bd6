"""Server-Sent Events: the receive half is one long GET, the send half POSTs.

The connection lives exactly as long as its GET: the supervisor runs in the
GET's own task, and a client that closes its EventSource ends the connection.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ..protocol import SSE_PREAMBLE, TransportType, format_sse_event
from .http import Receive, Send

__all__ = ["SSE_HEADERS", "Inbound", "SseTransport"]

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache,no-store"),
    (b"pragma", b"no-cache"),
    (b"content-encoding", b"identity"),
    # Ask proxies (nginx) not to buffer the stream.
    (b"x-accel-buffering", b"no"),
]


class Inbound:
    """Client-to-server bytes that arrive by POST, handed to the connection's reader.

    Bounded: a POST waits while the reader is behind, so a fast sender is slowed
    down rather than buffered without limit.
    """

    def __init__(self, capacity: int = 16) -> None:
        self._send, self._receive = trio.open_memory_channel[bytes](capacity)

    async def put(self, body: bytes) -> bool:
        """Queue one POST body; ``False`` if the connection is gone."""
        try:
            await self._send.send(body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def get(self) -> bytes | None:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    def end(self) -> None:
        """No more bytes: the reader sees the end of the transport."""
        self._send.close()

    def close(self) -> None:
        self._send.close()
        self._receive.close()


class SseTransport:
    """The hub transport of one SSE connection."""

    name = TransportType.SERVER_SENT_EVENTS.value
    """The transport's name in log lines."""

    def __init__(self, send: Send, inbound: Inbound) -> None:
        self._send = send
        self.inbound = inbound
        self._closed = False

    async def start(self) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await self._send({"type": "http.response.body", "body": SSE_PREAMBLE, "more_body": True})

    async def watch_disconnect(self, receive: Receive) -> None:
        """End the connection when the client closes its EventSource."""
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                self._closed = True
                self.inbound.end()
                return

    async def receive(self) -> bytes | None:
        return await self.inbound.get()

    async def send(self, chunks: Sequence[bytes]) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the event stream is closed")
        body = format_sse_event(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        try:
            await self._send({"type": "http.response.body", "body": body, "more_body": True})
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except Exception as error:
            self._closed = True
            raise trio.BrokenResourceError(f"event stream write failed: {error}") from error

    async def aclose(self) -> None:
        self.inbound.close()
        if self._closed:
            return
        self._closed = True
        try:
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception:
            pass  # the client is already gone
