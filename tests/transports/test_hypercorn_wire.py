"""The same answers through a real hypercorn server and raw HTTP (sync httpx in
worker threads, trio-websocket for the upgrade): the headers and bytes the app
sends must survive the server unchanged. Real time, so kept short."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any

import attrs
import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from demo.echo import EchoHub
from triohub import HubServer
from triohub.transports.asgi import SignalRApp
from triohub.transports.hypercorn import serve_hypercorn

from .support import (
    HANDSHAKE_OK,
    HUB,
    JSON_HANDSHAKE,
    NO_CACHE,
    completion,
    invocation,
    stop_gracefully,
)

V1 = re.compile(
    rb'\{"negotiateVersion":1,"connectionId":"[A-Za-z0-9_-]{22}",'
    rb'"connectionToken":"[A-Za-z0-9_-]{22}","availableTransports":\[.*\]\}'
)


@attrs.frozen
class Served:
    app: SignalRApp
    base: str
    http: httpx.Client

    def url(self, path: str = HUB) -> str:
        return self.base + path

    async def call(self, method: str, path: str = HUB, **kwargs: Any) -> httpx.Response:
        return await trio.to_thread.run_sync(
            partial(self.http.request, method, self.url(path), **kwargs)
        )

    async def negotiate(self) -> dict[str, Any]:
        response = await self.call("POST", HUB + "/negotiate", params={"negotiateVersion": "1"})
        body: dict[str, Any] = orjson.loads(response.content)
        return body


@pytest.fixture
async def served(nursery: trio.Nursery) -> AsyncIterator[Served]:
    server = HubServer()
    server.map_hub(HUB, EchoHub)
    app = SignalRApp(server)  # hypercorn's lifespan starts the server
    host, port = await nursery.start(serve_hypercorn, app, "127.0.0.1", 0)
    http = httpx.Client(timeout=10)
    try:
        yield Served(app, f"http://{host}:{port}", http)
    finally:
        await stop_gracefully(server)
        await trio.to_thread.run_sync(http.close)


class EventStream:
    """A streaming GET read from a worker thread, raw bytes as they arrive."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self._client = httpx.Client(timeout=10)
        self._context = self._client.stream("GET", url, headers=headers)
        self.response = self._context.__enter__()
        self._chunks: Iterator[bytes] = self.response.iter_raw()
        self.buffer = b""

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += next(self._chunks)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def close(self) -> None:
        self._context.__exit__(None, None, None)
        self._client.close()


async def _until(predicate: Any, limit: float = 5.0) -> None:
    """Poll a condition on the server's state (it changes in another task)."""
    for _ in range(int(limit / 0.01)):
        if await predicate():
            return
        await trio.sleep(0.01)
    raise TimeoutError(f"{predicate} still false after {limit} s")


async def test_negotiate_and_refusals_through_hypercorn(served: Served) -> None:
    negotiate = await served.call("POST", HUB + "/negotiate", params={"negotiateVersion": "1"})
    assert negotiate.status_code == 200
    assert negotiate.headers["content-type"] == "application/json"
    assert negotiate.headers["content-length"] == str(len(negotiate.content))
    assert V1.fullmatch(negotiate.content), negotiate.content
    error = await served.call("POST", HUB + "/negotiate", params={"negotiateVersion": "abc"})
    assert (error.status_code, error.content) == (
        200,
        b'{"error":"The client requested a non-integer protocol version."}',
    )
    cases = [
        ("GET", HUB, {}, 400, b"Connection ID required"),
        ("GET", HUB, {"id": "bogus"}, 404, b"No Connection with that ID"),
        ("POST", HUB, {"id": "bogus"}, 404, b"No Connection with that ID"),
        ("GET", HUB + "/negotiate", {}, 405, b""),
        ("PUT", HUB, {"id": "bogus"}, 405, b""),
    ]
    for method, path, params, status, body in cases:
        response = await served.call(method, path, params=params)
        assert (response.status_code, response.content) == (status, body), (method, path)
        assert response.headers["content-type"] == "text/plain"
        assert response.headers["content-length"] == str(len(body))


async def test_long_polling_through_hypercorn(served: Served) -> None:
    token = (await served.negotiate())["connectionToken"]
    first = await served.call("GET", params={"id": token, "_": "1"})
    assert (first.status_code, first.content) == (200, b"")
    assert first.headers["content-type"] == "application/octet-stream"
    assert first.headers["content-length"] == "0"
    for name, value in NO_CACHE.items():
        assert first.headers[name] == value
    post = await served.call(
        "POST",
        params={"id": token},
        content=JSON_HANDSHAKE,
        headers={"content-type": "text/plain;charset=UTF-8"},
    )
    assert (post.status_code, post.content, post.headers["content-type"]) == (
        200,
        b"",
        "text/plain",
    )
    reply = await served.call("GET", params={"id": token, "_": "2"})
    assert (reply.status_code, reply.content) == (200, HANDSHAKE_OK)
    assert reply.headers["content-length"] == "3"
    await served.call(
        "POST", params={"id": token}, content=invocation("Add", 2, 2, invocation_id="0")
    )
    answer = await served.call("GET", params={"id": token, "_": "3"})
    assert answer.content == completion("0", 4)

    # Two polls at once: the older is answered 204 when the newer arrives.
    async with trio.open_nursery() as nursery:
        results: dict[str, httpx.Response] = {}

        async def poll(name: str) -> None:
            results[name] = await served.call("GET", params={"id": token, "_": name})

        nursery.start_soon(poll, "older")
        await trio.sleep(0.3)
        nursery.start_soon(poll, "newer")
        await _until(lambda: _done(results, "older"))
        assert results["older"].status_code == 204
        assert results["older"].content == b""
        delete = await served.call("DELETE", params={"id": token})
        assert (delete.status_code, delete.content) == (202, b"")
    assert results["newer"].status_code == 204

    async def removed() -> bool:
        return served.app.connections.get(token) is None

    await _until(removed)
    late = await served.call("GET", params={"id": token, "_": "9"})
    assert (late.status_code, late.content) == (404, b"No Connection with that ID")


async def _done(results: dict[str, httpx.Response], name: str) -> bool:
    return name in results


async def test_sse_through_hypercorn(served: Served) -> None:
    token = (await served.negotiate())["connectionToken"]
    stream = await trio.to_thread.run_sync(
        EventStream, served.url() + f"?id={token}", {"accept": "text/event-stream"}
    )
    try:
        headers = stream.response.headers
        assert stream.response.status_code == 200
        assert headers["content-type"] == "text/event-stream"
        assert headers["cache-control"] == "no-cache,no-store"
        assert headers["pragma"] == "no-cache"
        assert headers["content-encoding"] == "identity"
        assert headers["x-accel-buffering"] == "no"
        assert "content-length" not in headers
        assert await trio.to_thread.run_sync(stream.read, 3) == b":\r\n"
        post = await served.call("POST", params={"id": token}, content=JSON_HANDSHAKE)
        assert (post.status_code, post.content) == (200, b"")
        assert await trio.to_thread.run_sync(stream.read, 13) == b"data: {}\x1e\r\n\r\n"
        await served.call(
            "POST", params={"id": token}, content=invocation("Echo", "sse", invocation_id="1")
        )
        event = b"data: " + completion("1", "sse") + b"\r\n\r\n"
        assert await trio.to_thread.run_sync(stream.read, len(event)) == event

        second = await served.call(
            "GET", params={"id": token}, headers={"accept": "text/event-stream"}
        )
        assert (second.status_code, second.content) == (409, b"")
        poll = await served.call("GET", params={"id": token, "_": "1"})
        assert (poll.status_code, poll.content) == (400, b"Cannot change transports mid-connection")
        delete = await served.call("DELETE", params={"id": token})
        assert (delete.status_code, delete.content) == (
            400,
            b"Cannot terminate this connection using the DELETE endpoint.",
        )
    finally:
        await trio.to_thread.run_sync(stream.close)

    # Closing the EventSource ends the connection.
    async def gone() -> bool:
        return served.app.server.live_connections == 0 and len(served.app.connections) == 0

    await _until(gone)


async def test_websocket_through_hypercorn(served: Served) -> None:
    token = (await served.negotiate())["connectionToken"]
    ws_base = served.base.replace("http://", "ws://")
    async with open_websocket_url(f"{ws_base}{HUB}?id={token}") as socket:
        assert socket.subprotocol is None
        await socket.send_message(JSON_HANDSHAKE.decode())
        assert await socket.get_message() == HANDSHAKE_OK.decode()
        post = await served.call("POST", params={"id": token}, content=b"{}\x1e")
        assert (post.status_code, post.headers["content-type"], post.content) == (
            405,
            "text/plain",
            b"POST requests are not allowed for WebSocket connections.",
        )
        await socket.send_message(invocation("Echo", "ws", invocation_id="1").decode())
        assert await socket.get_message() == completion("1", "ws").decode()
    with pytest.raises(ConnectionRejected) as refused:
        async with open_websocket_url(f"{ws_base}{HUB}?id=bogus"):
            pass  # pragma: no cover - refused
    assert refused.value.status_code == 404
    assert refused.value.body == b"No Connection with that ID"
