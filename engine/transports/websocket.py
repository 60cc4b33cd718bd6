"""WebSockets over ASGI (hypercorn): the transport object for one socket."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ..protocol import HubProtocol, TransferFormat, TransportType
from .http import Receive, Send

__all__ = ["AsgiWebSocketTransport"]


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
