"""Server-Sent Events framing, byte-exact with the reference (protocol doc 3.2, 13.13)."""

from __future__ import annotations

import pytest

from triohub.protocol.connection import HandshakeCompleted, HubConnection
from triohub.protocol.json_protocol import JsonHubProtocol
from triohub.protocol.messages import Ping
from triohub.protocol.negotiate import TransportType
from triohub.protocol.sse import SSE_PREAMBLE, format_sse_event


def test_vector_13_handshake_reply_then_a_ping() -> None:
    conn = HubConnection(
        {"json": JsonHubProtocol()}, TransportType.SERVER_SENT_EVENTS.transfer_formats
    )
    conn.receive_data(b'{"protocol":"json","version":1}\x1e')
    completed = conn.next_event()
    assert isinstance(completed, HandshakeCompleted)
    body = SSE_PREAMBLE + format_sse_event(completed.reply) + format_sse_event(conn.send(Ping()))
    assert body == b':\r\ndata: {}\x1e\r\n\r\ndata: {"type":6}\x1e\r\n\r\n'
    assert body == bytes.fromhex(
        "3A 0D 0A 64 61 74 61 3A 20 7B 7D 1E 0D 0A 0D 0A 64 61 74 61 3A 20 7B 22 74 79 70 65 22 3A"
        " 36 7D 1E 0D 0A 0D 0A"
    )


@pytest.mark.parametrize(
    ("chunk", "event"),
    [
        pytest.param(
            b'{"type":6}\x1e{"type":6}\x1e',
            b'data: {"type":6}\x1e{"type":6}\x1e\r\n\r\n',
            id="records",
        ),
        pytest.param(b"", b"\r\n", id="empty"),
        pytest.param(b"a\nb", b"data: a\r\ndata: b\r\n\r\n", id="lines"),
        pytest.param(b"a\r\nb", b"data: a\r\ndata: b\r\n\r\n", id="crlf"),
        pytest.param(b"a\n", b"data: a\r\ndata: \r\n\r\n", id="trailing-lf"),
        pytest.param(b"\r\nb", b"data: \r\r\ndata: b\r\n\r\n", id="lone-cr-line-kept"),
        pytest.param(b"a\r", b"data: a\r\r\n\r\n", id="cr-without-lf-kept"),
        pytest.param(b"\n\n", b"data: \r\ndata: \r\ndata: \r\n\r\n", id="blank-lines"),
    ],
)
def test_framing_matches_the_reference_formatter(chunk: bytes, event: bytes) -> None:
    assert format_sse_event(chunk) == event
