"""Fixtures of the transport tests: a running ``HubServer`` + ``SignalRApp`` driven
in process (``harness`` / ``make_harness``), with a hang guard."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from triohub import HubOptions, HubServer
from triohub.transports.asgi import SignalRApp

from .asgi_client import AsgiClient
from .support import HUB, Harness, Journal, JournalHub, stop_gracefully

MakeHarness = Callable[..., Awaitable[Harness]]


def _virtual() -> bool:
    return isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)


@pytest.fixture
def hang_guard(nursery: trio.Nursery) -> None:
    """Fail a test that hangs instead of letting it block the suite (under
    ``autojump_clock`` a stuck test spins through virtual time instead)."""

    async def guard() -> None:
        limit = 3600.0 if _virtual() else 30.0
        await trio.sleep(limit)
        raise TimeoutError(f"the test was still running after {limit:g} s")

    nursery.start_soon(guard)


@pytest.fixture
async def make_harness(nursery: trio.Nursery, hang_guard: None) -> AsyncIterator[MakeHarness]:
    """``harness = await make_harness(**hub_options)``: a running server, the app's
    reaper, and a client. Servers are stopped gracefully after the test, and no
    exchange may have broken the ASGI rules."""
    made: list[Harness] = []

    async def make(**options: Any) -> Harness:
        server = HubServer(options=HubOptions(**options))
        journal = Journal()
        server.map_hub(HUB, JournalHub, factory=partial(JournalHub, journal))
        app = SignalRApp(server)
        await nursery.start(server.run)
        nursery.start_soon(app.connections.reap)
        harness = Harness(server, app, AsgiClient(app, nursery), journal)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await stop_gracefully(harness.server, within=15)
        assert not harness.server.running, "the server did not stop"
    for harness in made:
        assert harness.client.violations == []


@pytest.fixture
async def harness(make_harness: MakeHarness) -> Harness:
    """The echo hub with every default option."""
    return await make_harness()
