"""Server-Sent Events: the receive half is one long GET, the send half POSTs.

The connection lives exactly as long as its GET: the supervisor runs in the
GET's own task, and a client that closes its EventSource ends the connection.
Every server writes the stream through a ``ResponseStream`` of its own (ASGI
events, or triohub's own server's socket); the rest is here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import trio

from ..protocol import SSE_PREAMBLE, TransportType, format_sse_event

if TYPE_CHECKING:
    from ..auth.principal import Principal
    from ..hub.server import HubServer
    from .connections import HttpConnection

__all__ = ["SSE_HEADERS", "Inbound", "ResponseStream", "SseTransport", "serve_event_stream"]

SSE_HEADERS = (
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache,no-store"),
    (b"pragma", b"no-cache"),
    (b"content-encoding", b"identity"),
    # Ask proxies (nginx) not to buffer the stream.
    (b"x-accel-buffering", b"no"),
)


class ResponseStream(Protocol):
    """A streamed HTTP response, as a server writes it."""

    async def start(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """Send the status line and headers."""

    async def write(self, body: bytes) -> None:
        """Send part of the body. Raises when the client is gone."""

    async def finish(self) -> None:
        """End the body."""

    async def wait_disconnect(self) -> None:
        """Returns when the client has gone away."""


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
    """The hub transport of one SSE connection (its stream attached by
    ``serve_event_stream``)."""

    name = TransportType.SERVER_SENT_EVENTS.value
    """The transport's name in log lines."""

    def __init__(self, inbound: Inbound) -> None:
        self.inbound = inbound
        self._stream: ResponseStream | None = None
        self._closed = False

    async def start(self, stream: ResponseStream) -> None:
        self._stream = stream
        await stream.start(200, SSE_HEADERS)
        await stream.write(SSE_PREAMBLE)

    async def watch_disconnect(self) -> None:
        """End the connection when the client closes its EventSource."""
        assert self._stream is not None
        await self._stream.wait_disconnect()
        self._closed = True
        self.inbound.end()

    async def receive(self) -> bytes | None:
        return await self.inbound.get()

    async def send(self, chunks: Sequence[bytes]) -> None:
        if self._closed or self._stream is None:
            raise trio.ClosedResourceError("the event stream is closed")
        body = format_sse_event(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        try:
            await self._stream.write(body)
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except Exception as error:
            self._closed = True
            raise trio.BrokenResourceError(f"event stream write failed: {error}") from error

    async def aclose(self) -> None:
        self.inbound.close()
        if self._closed or self._stream is None:
            return
        self._closed = True
        try:
            await self._stream.finish()
        except Exception:
            pass  # the client is already gone


async def serve_event_stream(
    server: HubServer,
    connection: HttpConnection,
    transport: SseTransport,
    principal: Principal,
    stream: ResponseStream,
    release: Callable[[HttpConnection], None],
) -> None:
    """Run an SSE connection in its GET request to its end (the endpoint's
    ``OpenEventStream``); ``release`` drops its id afterwards."""
    try:
        await transport.start(stream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.watch_disconnect)
            await server.connect(
                connection.registration,
                transport,
                connection_id=connection.connection_id,
                principal=principal,
                transfer_formats=TransportType.SERVER_SENT_EVENTS.transfer_formats,
            )
            nursery.cancel_scope.cancel()
    finally:
        connection.active = False
        release(connection)
