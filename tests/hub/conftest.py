"""Fixtures for driving a real ``HubServer`` (helpers live in ``hub_support``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from hub_support import PATH, StartServer

from triohub import Hub, HubOptions, HubServer


@pytest.fixture
def hang_guard(nursery: trio.Nursery) -> None:
    """Fail a test that hangs instead of letting it block the suite.

    Under ``autojump_clock`` a stuck test does not block: it spins through
    keep-alive pings in virtual time. An hour of that is far beyond any test here.
    """

    async def guard() -> None:
        virtual = isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
        limit = 3600.0 if virtual else 30.0
        await trio.sleep(limit)
        raise TimeoutError(f"the test was still running after {limit:g} {'virtual ' * virtual}s")

    nursery.start_soon(guard)


@pytest.fixture
def start_server(nursery: trio.Nursery, hang_guard: None) -> StartServer:
    """``server = await start_server(SomeHub, options=...)``: the hub is at ``/hub``.

    The servers run in this fixture's nursery, cancelled after the test.
    """

    async def start(
        hub_class: type[Hub],
        *,
        options: HubOptions | None = None,
        factory: Callable[[], Hub] | None = None,
        path: str = PATH,
        **server_kwargs: Any,
    ) -> HubServer:
        server = HubServer(options=options, **server_kwargs)
        server.map_hub(path, hub_class, factory=factory)
        await nursery.start(server.run)
        return server

    return start
