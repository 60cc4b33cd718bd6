"""The official JavaScript client over Server-Sent Events and long polling: the
same scenarios as over WebSockets (SSE carries JSON only; long polling both
protocols), against the demo on each server, and transport fallback when the server
disables WebSockets, on each server."""

from __future__ import annotations

import outcome
import pytest
import trio

from demo.echo import EchoHub
from tests.demo_process import SERVERS, DemoServer
from triohub import HubOptions, HubServer, TransportType
from triohub.transports.asgi import SignalRApp
from triohub.transports.hypercorn import serve_hypercorn
from triohub.transports.native import serve_native

from .checks import CHECKS
from .conftest import NodeClient

pytestmark = pytest.mark.e2e

COMBINATIONS = [
    ("ServerSentEvents", "json"),
    ("LongPolling", "json"),
    ("LongPolling", "messagepack"),
]
# The 32 KiB record scenario drives a WebSocket-only close path (the JS client
# reports an HTTP transport's close differently); it has its own HTTP test below.
SCENARIOS = [name for name in CHECKS if name != "limits"]


@pytest.mark.parametrize(("transport", "protocol"), COMBINATIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_demo(
    demo_server: DemoServer,
    node_client: NodeClient,
    scenario: str,
    transport: str,
    protocol: str,
) -> None:
    results = node_client.run(scenario, demo_server.url("/hubs/echo"), transport, protocol)
    CHECKS[scenario](results[scenario], protocol)


@pytest.mark.parametrize(
    ("enabled", "expected"),
    [
        (
            {TransportType.SERVER_SENT_EVENTS, TransportType.LONG_POLLING},
            "ServerSentEventsTransport",
        ),
        ({TransportType.LONG_POLLING}, "LongPollingTransport"),
        (set(TransportType), "WebSocketTransport"),
    ],
)
@pytest.mark.parametrize("kind", SERVERS)
async def test_fallback_follows_the_server_list(
    node_client: NodeClient, enabled: set[TransportType], expected: str, kind: str
) -> None:
    server = HubServer()
    server.map_hub("/hubs/echo", EchoHub, options=HubOptions(transports=frozenset(enabled)))
    async with trio.open_nursery() as nursery:
        if kind == "native":
            await nursery.start(server.run)
            host, port = await nursery.start(serve_native, server, "127.0.0.1", 0)
        else:
            host, port = await nursery.start(serve_hypercorn, SignalRApp(server), "127.0.0.1", 0)
        ran = await outcome.acapture(
            node_client.arun,
            ["transportUsed"],
            f"http://{host}:{port}/hubs/echo",
            "All",
            "json",
        )
        nursery.cancel_scope.cancel()
    result = ran.unwrap()["transportUsed"]
    assert result["transport"] == expected, result
    assert result["echo"] == {"value": "still works"}, result
