"""The ``start_native`` and ``native`` fixtures: ``HubServer`` + ``serve_native`` on
127.0.0.1 (a free port), stopped gracefully after the test.

``tests/transports/conftest.py`` serves every transport test, so these live here and
each ``test_native_*`` module imports them: ``start_native_fixture`` and
``native_fixture``, which pytest knows as ``start_native`` and ``native``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio

from triohub import HubOptions, HubServer, JwtBearerAuthenticator
from triohub.transports.native import serve_native

from .native_support import HUB, OTHER, PRIVATE, Journal, Native, NativeHub, PrivateHub, StartNative
from .support import stop_gracefully


async def _listen(
    server: HubServer, *, task_status: trio.TaskStatus[tuple[trio.CancelScope, int]]
) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(serve_native, server)
            task_status.started((scope, port))


@pytest.fixture(name="start_native")
async def start_native_fixture(
    nursery: trio.Nursery, hang_guard: None
) -> AsyncIterator[StartNative]:
    """``native = await start_native(options=..., authenticator=...)``: ``NativeHub`` at
    ``HUB`` and ``OTHER``, ``PrivateHub`` at ``PRIVATE``. Stopped gracefully after the
    test."""
    started: list[Native] = []

    async def start(
        *, options: HubOptions | None = None, authenticator: JwtBearerAuthenticator | None = None
    ) -> Native:
        server = HubServer(options=options, authenticator=authenticator)
        journal = Journal()
        server.map_hub(HUB, NativeHub, factory=partial(NativeHub, journal))
        server.map_hub(PRIVATE, PrivateHub)
        server.map_hub(OTHER, NativeHub, factory=partial(NativeHub, journal))
        await nursery.start(server.run)
        scope, port = await nursery.start(_listen, server)
        native = Native(server, port, scope, journal)
        started.append(native)
        return native

    yield start
    for native in started:
        await stop_gracefully(native.server)
        native.listener.cancel()


@pytest.fixture(name="native")
async def native_fixture(start_native: StartNative) -> Native:
    return await start_native()
