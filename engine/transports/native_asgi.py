"""An ASGI app behind triohub's own server, for the paths that are not hubs
(``serve_native(..., fallback=app)``): a site's pages, sign-in, token endpoints
on the same port as its hubs.

One HTTP request at a time, as ASGI 3 ``http`` scopes (spec 2.3); the app's
answer goes out through h11 (its Content-Length, or chunked). WebSocket requests
on such paths are answered 404 by the server: the fallback serves HTTP only.
There is no lifespan: the fallback shares the hub server's life.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import h11
import trio

from .native_http import REQUEST_TIMEOUT, HttpWire

__all__ = ["ASGIApp", "serve_asgi_request"]

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]

_BODY_LIMIT = 1024 * 1024
"""Largest request body handed to the fallback app (beyond it the connection ends)."""


async def serve_asgi_request(
    app: ASGIApp, wire: HttpWire, http_version: str, server: tuple[str, int] | None
) -> bool:
    """Run ``app`` for the request ``wire`` just read; ``True`` when it answered
    completely (the connection may serve another request)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": http_version,
        "method": wire.method,
        "scheme": "http",
        "path": unquote(wire.raw_path.decode("latin-1")),
        "raw_path": wire.raw_path,
        "query_string": wire.raw_query,
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in wire.raw_headers],
        "client": wire.client,
        "server": server,
        "extensions": {},
    }
    body_read = False
    started: list[tuple[int, list[tuple[bytes, bytes]]]] = []
    finished = False
    head_only = wire.method == "HEAD"

    async def receive() -> MutableMapping[str, Any]:
        nonlocal body_read
        if not body_read:
            body_read = True
            body = await wire.read_body(_BODY_LIMIT)
            if body is None:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}
        await wire.wait_disconnect()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal finished
        kind = message["type"]
        if kind == "http.response.start":
            headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
            started.append((int(message["status"]), headers))
            await wire.start(*started[0])
        elif kind == "http.response.body" and started and not finished:
            body = bytes(message.get("body", b""))
            if body and not head_only:
                with trio.fail_after(REQUEST_TIMEOUT):  # a client that does not read
                    await wire.write(body)
            if not message.get("more_body", False):
                finished = True
                await wire.finish()

    try:
        await app(scope, receive, send)
    except h11.LocalProtocolError:
        return False  # the app's answer broke HTTP (a wrong Content-Length)
    return finished
