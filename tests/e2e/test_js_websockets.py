"""The official JavaScript client (``@microsoft/signalr``) over WebSockets.

Against the demo on each server (``demo_server``: hypercorn + ASGI and triohub's own
server, negotiate first) and against triohub's own server without negotiation, every
scenario runs with the JSON and the MessagePack hub protocol; against the standalone
trio-websocket server (no HTTP, so the client skips negotiation) the scenarios that need
no second connection run likewise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import outcome
import pytest
import trio

from demo.echo import EchoHub
from tests.demo_process import DemoServer
from triohub import HubServer
from triohub.transports.native import serve_native
from triohub.transports.trio_websocket import serve_trio_websocket

from .checks import CHECKS
from .conftest import NodeClient

pytestmark = pytest.mark.e2e

TRANSPORT = "WebSockets"
PROTOCOLS = ["json", "messagepack"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("scenario", list(CHECKS))
def test_demo(
    demo_server: DemoServer, node_client: NodeClient, scenario: str, protocol: str
) -> None:
    results = node_client.run(scenario, demo_server.url("/hubs/echo"), TRANSPORT, protocol)
    CHECKS[scenario](results[scenario], protocol)


TRIO_WEBSOCKET_SCENARIOS = ["invoke", "stream", "upload", "errors"]


async def check_standalone(
    node_client: NodeClient,
    serve: Callable[..., Awaitable[None]],
    scenarios: list[str],
    protocol: str,
    skip_negotiation: bool,
) -> None:
    """Run ``scenarios`` against the echo hub on a standalone server (``serve``)."""
    server = HubServer()
    server.map_hub("/hubs/echo", EchoHub)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        host, port = await nursery.start(serve, server)
        # The Node client accepts only http(s) URLs ("Cannot resolve 'ws://...'"); its
        # WebSocket transport turns http:// into ws:// itself.
        ran = await outcome.acapture(
            node_client.arun,
            scenarios,
            f"http://{host}:{port}/hubs/echo",
            TRANSPORT,
            protocol,
            skip_negotiation=skip_negotiation,
        )
        server.stop()
        with trio.fail_after(10):
            await server.wait_stopped()
        nursery.cancel_scope.cancel()  # the listener
    results = ran.unwrap()
    for scenario in scenarios:
        CHECKS[scenario](results[scenario], protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_trio_websocket_server(node_client: NodeClient, protocol: str) -> None:
    await check_standalone(
        node_client, serve_trio_websocket, TRIO_WEBSOCKET_SCENARIOS, protocol, True
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_native_server_without_negotiation(node_client: NodeClient, protocol: str) -> None:
    # Without negotiation the client never learns its connection id (WhoAmI checks it).
    scenarios = [s for s in CHECKS if s != "whoami"]
    await check_standalone(node_client, serve_native, scenarios, protocol, True)
