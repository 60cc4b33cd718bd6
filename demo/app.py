"""The demo application: hubs, HTTP endpoints and the ASGI app."""

from __future__ import annotations

from engine import HubServer
from engine.transports.asgi import SignalRApp

from .echo import EchoHub


def build_app() -> SignalRApp:
    server = HubServer()
    server.map_hub("/hubs/echo", EchoHub)
    return SignalRApp(server)
