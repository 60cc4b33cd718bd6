"""The ``pysignalr`` client (asyncio, WebSockets, negotiate v0) against triohub's own
server (``serve_native``): the scenarios of test_pysignalr.py, which runs them against
the demo. The server runs in the trio test; the client in ``asyncio.run`` in a worker
thread.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import trio

from .conftest import NativeDemo
from .test_pysignalr import PROTOCOLS, SCENARIOS, run

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.__name__)
async def test_native_server(
    native_demo: NativeDemo,
    scenario: Callable[[str, str], Coroutine[Any, Any, None]],
    protocol: str,
) -> None:
    url = native_demo.url("/hubs/echo")
    await trio.to_thread.run_sync(lambda: run(scenario(url, protocol)))
