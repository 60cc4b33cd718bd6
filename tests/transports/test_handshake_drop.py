"""A client that sends its handshake and leaves before the answer reaches it.

Racy on a real listener (whether the answer's write fails depends on when the
peer's close lands), so here it is made certain: the client's end of a socket
pair writes the handshake frame and closes before the server even reads, so
the server's answer always meets a closed peer (``EPIPE``). That is the
client's doing, not a server error: one INFO line, no ERROR, no traceback.
"""

from __future__ import annotations

import logging
import socket

import pytest
import trio

from demo.echo import EchoHub
from triohub import HubServer
from triohub.actors.supervisor import CloseReason
from triohub.transports.native_ws import NativeWebSocketTransport

from .native_wire import TEXT, Wire
from .support import JSON_HANDSHAKE


async def test_a_client_gone_before_the_handshake_answer_is_not_an_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = HubServer()
    server.map_hub("/hubs/echo", EchoHub)
    await nursery.start(server.run)
    ours, theirs = socket.socketpair()
    theirs.sendall(Wire.encode(TEXT, JSON_HANDSHAKE))
    theirs.close()
    ours.setblocking(False)

    with caplog.at_level(logging.INFO, logger="triohub"):
        reason = await server.connect(
            server.hubs["/hubs/echo"], NativeWebSocketTransport(ours), connection_id="gone"
        )

    assert reason is CloseReason.HANDSHAKE_FAILED
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    [left] = [r for r in caplog.records if "left during the handshake" in r.getMessage()]
    assert left.levelno == logging.INFO
    assert left.exc_info is None
    assert "gone" in left.getMessage()
