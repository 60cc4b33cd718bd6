"""An in-process ASGI client: hand-made scopes in, the app's exact events out.

The transports' timers (a 90 s poll, 15 s reaping, 15 s idle drop) are tested
on Trio's ``autojump_clock``, which only works when nothing waits on the outside
world; so these tests call ``SignalRApp`` directly instead of through a server.

* ``HttpExchange``: one HTTP request. The body is fed as ``http.request``
  events; everything the app sends is kept (``status``, ``headers``, ``body``
  and the raw ``events``) and a streaming response (SSE) can be read as it
  grows. ``disconnect()`` injects ``http.disconnect`` as a server does when the
  client goes away; once the response is complete, ``receive`` answers
  ``http.disconnect`` by itself, as the ASGI spec says. ``stall()`` makes the
  client stop reading: body writes block, as on a full TCP window.
* ``WebSocketExchange``: one WebSocket (``websocket.connect`` first, then the
  client's frames); the app's accept, frames, close or HTTP rejection are kept.
* ``AsgiClient``: starts exchanges in a nursery; ``request`` is the one-shot form.

Every exchange checks the ASGI rules the app must follow (one
``http.response.start`` before any body, nothing after the last body...) and
records breaches in ``violations`` instead of raising into the app, which might
swallow the error; the fixtures assert there are none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import trio

Headers = list[tuple[bytes, bytes]]
ASGIApp = Callable[..., Any]

_BASE_SCOPE: dict[str, Any] = {
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "scheme": "http",
    "root_path": "",
    "client": ("127.0.0.1", 50000),
    "server": ("testserver", 80),
}


def http_scope(
    method: str, path: str, query: str = "", headers: Iterable[tuple[bytes, bytes]] = ()
) -> dict[str, Any]:
    return {
        **_BASE_SCOPE,
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver"), *headers],
        "state": {},
    }


def websocket_scope(
    path: str,
    query: str = "",
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    http_response: bool = True,
) -> dict[str, Any]:
    return {
        **_BASE_SCOPE,
        "type": "websocket",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [
            (b"host", b"testserver"),
            (b"connection", b"Upgrade"),
            (b"upgrade", b"websocket"),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            *headers,
        ],
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}} if http_response else {},
        "state": {},
    }


@attrs.frozen
class Response:
    """A complete HTTP response as the app sent it."""

    status: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of ``name`` (``None`` if absent); fails if it appears twice."""
        values = [v for k, v in self.headers if k.lower() == name.lower().encode()]
        assert len(values) <= 1, f"header {name} sent {len(values)} times: {self.headers}"
        return values[0].decode("latin-1") if values else None

    @property
    def header_names(self) -> list[str]:
        return sorted(k.decode("latin-1").lower() for k, _ in self.headers)


class HttpExchange:
    """One HTTP request in flight through the app."""

    def __init__(self, scope: dict[str, Any], body: bytes | Sequence[bytes], *, more: bool) -> None:
        self.scope = scope
        self._inbox, self._requests = trio.open_memory_channel[dict[str, Any]](math.inf)
        chunks = [body] if isinstance(body, bytes) else list(body) or [b""]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            self._inbox.send_nowait(
                {"type": "http.request", "body": chunk, "more_body": more or not last}
            )
        self.status: int | None = None
        self.headers: Headers = []
        self.body = bytearray()
        self.events: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.started = trio.Event()
        self.complete = trio.Event()
        """The last body event was sent."""
        self.finished = trio.Event()
        """The app's call returned (or raised)."""
        self.disconnected = False
        self._grew = trio.Event()
        self._read = 0
        self._reading = trio.Event()
        self._reading.set()

    # -- the server's side, given to the app --------------------------------

    async def receive(self) -> dict[str, Any]:
        return await self._requests.receive()

    async def send(self, event: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        kind = event["type"]
        if self.disconnected:
            # Like hypercorn: writes to a stream the client closed go nowhere.
            self.events.append(event)
            return
        if kind == "http.response.body":
            await self._reading.wait()
        self.events.append(event)
        if kind == "http.response.start":
            if self.started.is_set():
                self.violations.append(f"second http.response.start: {event}")
                return
            self.status = event["status"]
            self.headers = [(bytes(k), bytes(v)) for k, v in event.get("headers", [])]
            self.started.set()
        elif kind == "http.response.body":
            if not self.started.is_set():
                self.violations.append(f"body before http.response.start: {event}")
                return
            if self.complete.is_set():
                self.violations.append(f"body after the response was complete: {event}")
                return
            self.body += event.get("body", b"")
            if not event.get("more_body", False):
                self.complete.set()
                self._inbox.send_nowait({"type": "http.disconnect"})
            self._grew.set()
            self._grew = trio.Event()
        else:
            self.violations.append(f"unexpected event {event}")

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        finally:
            self.finished.set()
            self._grew.set()

    # -- the client's side ----------------------------------------------------

    def disconnect(self) -> None:
        """The client went away (closed the socket / aborted the request)."""
        if not self.disconnected:
            self.disconnected = True
            self._reading.set()
            self._inbox.send_nowait({"type": "http.disconnect"})

    def stall(self) -> None:
        """The client stops reading: the app's body writes block."""
        if self._reading.is_set():
            self._reading = trio.Event()

    def resume(self) -> None:
        self._reading.set()

    async def response(self) -> Response:
        """The complete response."""
        await self.complete.wait()
        assert self.status is not None
        return Response(self.status, list(self.headers), bytes(self.body))

    async def read(self, size: int) -> bytes:
        """The next ``size`` body bytes of a streaming response (fewer only if it ended)."""
        while len(self.body) - self._read < size and not (
            self.complete.is_set() or self.finished.is_set()
        ):
            await self._grew.wait()
        data = bytes(self.body[self._read : self._read + size])
        self._read += len(data)
        return data

    @property
    def unread(self) -> bytes:
        return bytes(self.body[self._read :])


class WebSocketExchange:
    """One WebSocket through the app."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self._inbox, self._client_events = trio.open_memory_channel[dict[str, Any]](math.inf)
        self._inbox.send_nowait({"type": "websocket.connect"})
        self._frames_in, self._frames = trio.open_memory_channel[str | bytes](math.inf)
        self.events: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.accepted = trio.Event()
        self.closed = trio.Event()
        """The app closed the socket or refused it."""
        self.close_code: int | None = None
        self.rejection_status: int | None = None
        self.rejection_headers: Headers = []
        self.rejection_body = bytearray()
        self.finished = trio.Event()
        self._reading = trio.Event()
        self._reading.set()

    async def receive(self) -> dict[str, Any]:
        return await self._client_events.receive()

    async def send(self, event: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        if event["type"] == "websocket.send":
            await self._reading.wait()
        self.events.append(event)
        kind = event["type"]
        if self.closed.is_set():
            self.violations.append(f"event after the socket was closed: {event}")
            return
        if kind == "websocket.accept":
            if self.accepted.is_set():
                self.violations.append("accepted twice")
            self.accepted.set()
        elif kind == "websocket.send":
            if not self.accepted.is_set():
                self.violations.append(f"send before accept: {event}")
            text, data = event.get("text"), event.get("bytes")
            if (text is None) == (data is None):
                self.violations.append(f"a frame needs exactly one of text/bytes: {event}")
            self._frames_in.send_nowait(text if text is not None else data)
        elif kind == "websocket.close":
            self.close_code = event.get("code", 1000)
            self.closed.set()
            self._inbox.send_nowait({"type": "websocket.disconnect", "code": self.close_code})
        elif kind == "websocket.http.response.start":
            if self.accepted.is_set():
                self.violations.append("HTTP rejection after accept")
            self.rejection_status = event["status"]
            self.rejection_headers = [(bytes(k), bytes(v)) for k, v in event.get("headers", [])]
        elif kind == "websocket.http.response.body":
            self.rejection_body += event.get("body", b"")
            if not event.get("more_body", False):
                self.closed.set()
        else:
            self.violations.append(f"unexpected event {event}")

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        finally:
            self.finished.set()

    def send_text(self, text: str) -> None:
        self._inbox.send_nowait({"type": "websocket.receive", "text": text})

    def send_bytes(self, data: bytes) -> None:
        self._inbox.send_nowait({"type": "websocket.receive", "bytes": data})

    def disconnect(self, code: int = 1000) -> None:
        self._reading.set()
        self._inbox.send_nowait({"type": "websocket.disconnect", "code": code})

    def stall(self) -> None:
        """The client stops reading: the app's frame writes block."""
        if self._reading.is_set():
            self._reading = trio.Event()

    async def frame(self) -> str | bytes:
        """The next frame the app sent."""
        return await self._frames.receive()

    @property
    def rejection(self) -> Response:
        assert self.rejection_status is not None, f"not refused with HTTP: {self.events}"
        return Response(
            self.rejection_status, list(self.rejection_headers), bytes(self.rejection_body)
        )


class AsgiClient:
    """Starts exchanges against ``app`` in ``nursery``."""

    def __init__(self, app: ASGIApp, nursery: trio.Nursery) -> None:
        self.app = app
        self._nursery = nursery
        self.exchanges: list[HttpExchange | WebSocketExchange] = []

    def open(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: bytes | Sequence[bytes] = b"",
        more: bool = False,
    ) -> HttpExchange:
        """Start a request; ``more=True`` leaves the body unfinished (more to come)."""
        exchange = HttpExchange(http_scope(method, path, query, headers), body, more=more)
        self.exchanges.append(exchange)
        self._nursery.start_soon(exchange.run, self.app)
        return exchange

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: bytes | Sequence[bytes] = b"",
    ) -> Response:
        exchange = self.open(method, path, query=query, headers=headers, body=body)
        response = await exchange.response()
        await exchange.finished.wait()
        return response

    def websocket(
        self,
        path: str,
        *,
        query: str = "",
        headers: Iterable[tuple[bytes, bytes]] = (),
        http_response: bool = True,
    ) -> WebSocketExchange:
        exchange = WebSocketExchange(
            websocket_scope(path, query, headers, http_response=http_response)
        )
        self.exchanges.append(exchange)
        self._nursery.start_soon(exchange.run, self.app)
        return exchange

    @property
    def violations(self) -> list[str]:
        return [v for exchange in self.exchanges for v in exchange.violations]

    def forget_finished(self) -> None:
        """Drop finished exchanges (long runs), keeping their violations."""
        kept = []
        for exchange in self.exchanges:
            if exchange.finished.is_set() and not exchange.violations:
                continue
            kept.append(exchange)
        self.exchanges = kept
