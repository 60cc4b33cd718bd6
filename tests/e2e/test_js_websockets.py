"""The official JavaScript client (``@microsoft/signalr``) over WebSockets.

Against the demo (hypercorn + ASGI, negotiate first) every scenario runs with the JSON and
the MessagePack hub protocol; against the standalone trio-websocket server (no HTTP, so the
client skips negotiation) the scenarios that need no second connection run likewise.
"""

from __future__ import annotations

import outcome
import pytest
import trio

from demo.echo import EchoHub
from engine import HubServer
from engine.transports.trio_websocket import serve_trio_websocket

from .checks import CHECKS
from .conftest import DemoServer, NodeClient

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


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_trio_websocket_server(node_client: NodeClient, protocol: str) -> None:
    server = HubServer()
    server.map_hub("/hubs/echo", EchoHub)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        host, port = await nursery.start(serve_trio_websocket, server)
        # The Node client accepts only http(s) URLs ("Cannot resolve 'ws://...'"); its
        # WebSocket transport turns http:// into ws:// itself.
        ran = await outcome.acapture(
            node_client.arun,
            TRIO_WEBSOCKET_SCENARIOS,
            f"http://{host}:{port}/hubs/echo",
            TRANSPORT,
            protocol,
            skip_negotiation=True,
        )
        server.stop()
        with trio.fail_after(10):
            await server.wait_stopped()
        nursery.cancel_scope.cancel()  # the listener
    results = ran.unwrap()
    for scenario in TRIO_WEBSOCKET_SCENARIOS:
        CHECKS[scenario](results[scenario], protocol)
