"""WebSockets over ASGI (hypercorn): the transport object for one socket."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import trio

from ..protocol import HubProtocol, TransferFormat, TransportType
from .http import Receive, Send

__all__ = [
    "DIRECT_EXTENSION",
    "AsgiWebSocketTransport",
    "DirectAsgiWebSocketTransport",
    "DirectWriter",
]

DIRECT_EXTENSION = "triohub.websocket.direct"
"""The ASGI scope extension of a server that lets the app write WebSocket
messages to the socket itself (``serve_hypercorn`` gives it): a ``DirectWriter``."""


class DirectWriter(Protocol):
    """What ``DIRECT_EXTENSION`` holds (``hypercorn.DirectWebSocket``)."""

    send_nowait: Callable[[bytes, bool], bool]
    """``(payload, binary)``: write one whole message now (``True``), or take
    nothing (``False``: send an ASGI event)."""
    attach: Callable[[Callable[[], None]], None]
    """Give the waker called when a write left bytes that ``flush`` writes."""
    flush: Callable[[], Awaitable[None]]
    """Write what a ``send_nowait`` left."""


class AsgiWebSocketTransport:
    """Text frames for JSON, Binary frames for MessagePack (chosen at handshake).

    Each ``send`` batch becomes one frame: it holds complete records only, which
    every client splits.
    """

    name = TransportType.WEBSOCKETS.value
    """The transport's name in log lines."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._binary = False
        self._closed = False

    def use_protocol(self, protocol: HubProtocol) -> None:
        self._binary = protocol.transfer_format is TransferFormat.BINARY

    async def receive(self) -> bytes | None:
        if self._closed:
            return None
        event = await self._receive()
        kind = event["type"]
        if kind == "websocket.receive":
            data = event.get("bytes")
            if data is None:
                text = event.get("text") or ""
                return text.encode()
            return bytes(data)
        if kind == "websocket.disconnect":
            self._closed = True
        return None

    async def send(self, chunks: Sequence[bytes]) -> None:
        if self._closed:
            raise trio.ClosedResourceError("websocket is closed")
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        event = (
            {"type": "websocket.send", "bytes": data}
            if self._binary
            else {"type": "websocket.send", "text": data.decode()}
        )
        try:
            await self._send(event)
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except Exception as error:
            self._closed = True
            raise trio.BrokenResourceError(f"websocket send failed: {error}") from error

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._send({"type": "websocket.close", "code": 1000})
        except Exception:
            pass  # already gone


class DirectAsgiWebSocketTransport(AsgiWebSocketTransport):
    """An ASGI WebSocket whose server offers ``DIRECT_EXTENSION``: a
    ``DirectTransport`` (``actors.supervisor``), so a record for an idle
    connection (a call's Completion, each recipient of a broadcast) is written
    by whoever sends it, with no writer wake-up, no ASGI event and no framing
    by the server's WebSocket library; queued records still go as ASGI events.
    """

    def __init__(self, receive: Receive, send: Send, direct: DirectWriter) -> None:
        super().__init__(receive, send)
        self._direct = direct

    def send_nowait(self, data: bytes) -> bool:
        return not self._closed and self._direct.send_nowait(data, self._binary)

    def attach(self, waker: Callable[[], None]) -> None:
        self._direct.attach(waker)

    async def send(self, chunks: Sequence[bytes]) -> None:
        if any(chunks):
            await super().send(chunks)
        else:  # the waker's empty record: write what a direct write left
            await self._direct.flush()
