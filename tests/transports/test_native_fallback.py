"""The fallback ASGI app behind triohub's own server (``serve_native(..., fallback=app)``,
``native_asgi``): the paths that are not hubs go to it as ASGI ``http`` scopes, with
their body; its answers go out through h11 (its Content-Length, or chunked); HEAD
answers carry no body; a WebSocket request on such a path is 404; the hubs are still
the endpoint's. The demo on this server is tested end to end in tests/e2e and
tests/browser.

Real sockets; the waits are short.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import orjson
import pytest
import trio

from triohub import HubServer
from triohub.transports.native import serve_native

from .native_support import HUB, Journal, NativeHub
from .native_wire import RFC_KEY, Wire
from .support import stop_gracefully

pytestmark = pytest.mark.usefixtures("hang_guard")


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Echoes what it was given; ``/stream`` answers in two parts without a length."""
    assert scope["type"] == "http"
    event = await receive()
    seen = {
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode(),
        "query": scope["query_string"].decode(),
        "body": event["body"].decode(),
        "host": dict(scope["headers"]).get(b"host", b"").decode(),
    }
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})
        return
    body = orjson.dumps(seen)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def port(nursery: trio.Nursery) -> AsyncIterator[int]:
    server = HubServer()
    journal = Journal()
    server.map_hub(HUB, NativeHub, factory=partial(NativeHub, journal))
    await nursery.start(server.run)
    _, bound = await nursery.start(partial(serve_native, server, fallback=app))
    yield bound
    await stop_gracefully(server)


async def test_other_paths_reach_the_fallback_with_their_body(port: int) -> None:
    wire = await Wire.connect(port)
    response = await wire.request("POST", "/api/th%69ng?x=1", body=b"hello")
    assert (response.status, response.reason) == (201, "Created")
    assert orjson.loads(response.body) == {
        "method": "POST",
        "path": "/api/thing",
        "raw_path": "/api/th%69ng",
        "query": "x=1",
        "body": "hello",
        "host": "127.0.0.1",
    }
    # Kept alive: the hubs on the same connection are the endpoint's.
    negotiate = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1")
    assert orjson.loads(negotiate.body)["negotiateVersion"] == 1


async def test_an_answer_without_a_length_is_chunked_and_head_has_no_body(port: int) -> None:
    wire = await Wire.connect(port)
    await wire.send(Wire.format("GET", "/stream"))
    head = (await wire._until(b"\r\n\r\n")).decode("latin-1").lower()
    assert "transfer-encoding: chunked" in head
    assert await wire._until(b"0\r\n\r\n") == b"4\r\none,\r\n3\r\ntwo\r\n"
    await wire.send(Wire.format("HEAD", "/page"))
    head = (await wire._until(b"\r\n\r\n")).decode("latin-1").lower()
    assert head.startswith("http/1.1 201 created\r\n"), head
    assert "content-length:" in head
    # No body followed the head: the next answer starts right after it.
    assert (await wire.request("GET", "/again")).status == 201


async def test_a_websocket_request_on_a_fallback_path_is_404(port: int) -> None:
    wire = await Wire.connect(port)
    response = await wire.upgrade("/somewhere", key=RFC_KEY)
    assert (response.status, response.body) == (404, b"Not Found")
