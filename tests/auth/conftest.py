"""Fixtures of the authentication tests: the demo app served in-process by hypercorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from demo.app import build_app
from triohub.transports.asgi import SignalRApp
from triohub.transports.hypercorn import serve_hypercorn

from .support import SECRET, Http


@attrs.frozen
class Demo:
    app: SignalRApp
    host: str
    port: int
    http: Http

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"


@asynccontextmanager
async def serve_demo(nursery: trio.Nursery, **options: Any) -> AsyncIterator[Demo]:
    """``build_app(SECRET, **options)`` on 127.0.0.1, a free port, until the block ends."""
    app = build_app(SECRET, **options)
    host, port = await nursery.start(serve_hypercorn, app, "127.0.0.1", 0)
    http = Http(f"http://{host}:{port}")
    try:
        yield Demo(app, host, port, http)
    finally:
        # Graceful: every live connection gets its close record and ends before the
        # nursery fixture cancels hypercorn (a bare cancel races the router actor's end
        # against the connections' unregistering, which logs ActorStopped errors).
        app.server.stop()
        with trio.move_on_after(10):
            await app.server.wait_stopped()
        await trio.to_thread.run_sync(http.close)


@pytest.fixture
async def demo(nursery: trio.Nursery) -> AsyncIterator[Demo]:
    """``build_app(SECRET)`` on 127.0.0.1, a free port, for this test only (the chat's
    ban list is per app, so no test sees another's bans)."""
    async with serve_demo(nursery) as demo:
        yield demo
