"""The per-connection state machine, driven with exact bytes (protocol doc 4, 7, 13)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triohub.protocol.base import HubProtocol, TransferFormat
from triohub.protocol.connection import (
    NEED_DATA,
    ConnectionState,
    Event,
    HandshakeCompleted,
    HandshakeFailed,
    HubConnection,
)
from triohub.protocol.errors import (
    CLOSE_ON_ERROR,
    LocalProtocolError,
    RemoteProtocolError,
    Texts,
)
from triohub.protocol.json_protocol import JsonHubProtocol
from triohub.protocol.messages import Close, Completion, Invocation, Ping
from triohub.protocol.msgpack_protocol import MessagePackHubProtocol

JSON = JsonHubProtocol()
MSGPACK = MessagePackHubProtocol()
PROTOCOLS: dict[str, HubProtocol] = {"json": JSON, "messagepack": MSGPACK}
TEXT_AND_BINARY = (TransferFormat.TEXT, TransferFormat.BINARY)
TEXT_ONLY = (TransferFormat.TEXT,)

JSON_HANDSHAKE = b'{"protocol":"json","version":1}\x1e'
MSGPACK_HANDSHAKE = b'{"protocol":"messagepack","version":1}\x1e'
JSON_RECORDS = (
    b'{"type":6}\x1e'
    b'{"target":"Add","arguments":[1,2],"invocationId":"0","type":1}\x1e'
    b'{"target":"Send","arguments":["hi"],"type":1}\x1e'
)
JSON_MESSAGES = [
    Ping(),
    Invocation("Add", [1, 2], invocation_id="0"),
    Invocation("Send", ["hi"]),
]
MSGPACK_RECORDS = bytes.fromhex("02 91 06  0D 96 01 80 A1 30 A3 41 64 64 92 01 02 90")
MSGPACK_MESSAGES = [Ping(), Invocation("Add", [1, 2], invocation_id="0")]


def connection(
    transfer_formats: tuple[TransferFormat, ...] = TEXT_AND_BINARY,
    max_message_size: int | None = 32768,
) -> HubConnection:
    return HubConnection(PROTOCOLS, transfer_formats, max_message_size)


def drain(conn: HubConnection) -> list[Event]:
    """Every event up to NEED_DATA or the end of the connection."""
    events: list[Event] = []
    while conn.state is not ConnectionState.CLOSED:
        event = conn.next_event()
        if event is NEED_DATA:
            break
        events.append(event)
    return events


def open_connection(handshake: bytes = JSON_HANDSHAKE) -> HubConnection:
    conn = connection()
    conn.receive_data(handshake)
    assert isinstance(conn.next_event(), HandshakeCompleted)
    return conn


# -- the handshake -------------------------------------------------------------------


def test_json_handshake() -> None:
    conn = connection()
    assert conn.state.name == "AWAITING_HANDSHAKE"
    assert conn.next_event() is NEED_DATA
    conn.receive_data(JSON_HANDSHAKE[:10])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(JSON_HANDSHAKE[10:])
    event = conn.next_event()
    assert event == HandshakeCompleted(protocol=JSON, version=1, reply=b"{}\x1e")
    assert conn.state is ConnectionState.OPEN
    assert conn.protocol is JSON
    assert conn.next_event() is NEED_DATA


def test_messagepack_handshake_then_binary_records() -> None:
    conn = connection()
    conn.receive_data(MSGPACK_HANDSHAKE + MSGPACK_RECORDS)
    events = drain(conn)
    assert events == [HandshakeCompleted(protocol=MSGPACK, version=1), *MSGPACK_MESSAGES]
    assert conn.protocol is MSGPACK
    assert conn.send(Ping()) == bytes.fromhex("02 91 06")


def test_version_2_is_reported_for_stateful_reconnect() -> None:
    conn = connection()
    conn.receive_data(b'{"protocol":"json","version":2}\x1e')
    assert conn.next_event() == HandshakeCompleted(protocol=JSON, version=2)


def test_records_batched_behind_the_handshake_need_no_more_data() -> None:
    conn = connection()
    conn.receive_data(JSON_HANDSHAKE + JSON_RECORDS)
    assert drain(conn) == [HandshakeCompleted(protocol=JSON, version=1), *JSON_MESSAGES]


def test_protocol_is_unknown_before_the_handshake() -> None:
    with pytest.raises(LocalProtocolError, match="no hub protocol"):
        _ = connection().protocol


@pytest.mark.parametrize(
    ("request_bytes", "transfer_formats", "reply"),
    [
        pytest.param(
            b'{"version":1}\x1e',
            TEXT_AND_BINARY,
            b'{"error":"An unexpected error occurred during connection handshake."}\x1e',
            id="missing-protocol",
        ),
        pytest.param(
            b"not json\x1e",
            TEXT_AND_BINARY,
            b'{"error":"An unexpected error occurred during connection handshake."}\x1e',
            id="invalid-json",
        ),
        pytest.param(
            b'{"protocol":"foo","version":1}\x1e',
            TEXT_AND_BINARY,
            b'{"error":"The protocol \'foo\' is not supported."}\x1e',
            id="unknown-protocol",
        ),
        pytest.param(
            b'{"protocol":"json","version":3}\x1e',
            TEXT_AND_BINARY,
            b'{"error":"The server does not support version 3 of the \'json\' protocol."}\x1e',
            id="version-3",
        ),
        pytest.param(
            MSGPACK_HANDSHAKE,
            TEXT_ONLY,
            b'{"error":"Cannot use the \'messagepack\' protocol on the current transport. '
            b"The transport does not support 'Binary' transfer format.\"}\x1e",
            id="messagepack-over-text",
        ),
    ],
)
def test_handshake_failures(
    request_bytes: bytes, transfer_formats: tuple[TransferFormat, ...], reply: bytes
) -> None:
    conn = connection(transfer_formats)
    conn.receive_data(request_bytes + JSON_RECORDS)
    event = conn.next_event()
    assert isinstance(event, HandshakeFailed)
    assert event.reply == reply
    assert conn.state is ConnectionState.CLOSED
    # The reply was the server's last word: nothing else to send or read.
    assert conn.close() == b""
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(Ping())
    with pytest.raises(LocalProtocolError):
        _ = conn.protocol


def test_oversize_handshake_is_canceled() -> None:
    conn = connection(max_message_size=64)
    conn.receive_data(b'{"protocol":"json","version":1,"padding":"' + b"x" * 64)
    event = conn.next_event()
    assert event == HandshakeFailed(
        error=Texts.HANDSHAKE_CANCELED, reply=b'{"error":"Handshake was canceled."}\x1e'
    )
    assert conn.state is ConnectionState.CLOSED


def test_handshake_failure_keeps_the_reason_for_logs() -> None:
    conn = connection()
    conn.receive_data(b'{"protocol":"json"}\x1e')
    event = conn.next_event()
    assert isinstance(event, HandshakeFailed)
    assert event.error == Texts.HANDSHAKE_UNEXPECTED
    assert event.detail == "Missing required property 'version'."


def test_close_before_the_handshake_cancels_it() -> None:
    # How the server answers the 15 s handshake timeout.
    conn = connection()
    conn.receive_data(JSON_HANDSHAKE[:5])
    assert conn.close() == b'{"error":"Handshake was canceled."}\x1e'
    assert conn.state is ConnectionState.CLOSED
    assert conn.close() == b""


# -- sending ---------------------------------------------------------------------------


def test_send_encodes_with_the_agreed_protocol() -> None:
    conn = open_connection()
    assert conn.send(Ping()) == b'{"type":6}\x1e'
    assert conn.send(Completion.with_result("0", None)) == (
        b'{"type":3,"invocationId":"0","result":null}\x1e'
    )


def test_send_before_the_handshake_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="AWAITING_HANDSHAKE"):
        connection().send(Ping())


def test_send_after_close_is_a_local_error() -> None:
    conn = open_connection()
    conn.close()
    with pytest.raises(LocalProtocolError, match="CLOSED"):
        conn.send(Ping())


def test_close_records_go_through_close() -> None:
    with pytest.raises(LocalProtocolError, match=r"close\(\)"):
        open_connection().send(Close())


# -- closing (section 13 vector 11) ------------------------------------------------


def test_vector_11_plain_close() -> None:
    conn = open_connection()
    assert conn.close() == b'{"type":7}\x1e'
    assert conn.state is ConnectionState.CLOSED
    assert conn.close() == b""


def test_vector_11_close_with_error() -> None:
    conn = open_connection()
    assert conn.close(CLOSE_ON_ERROR) == (
        b'{"type":7,"error":"Connection closed with an error.","allowReconnect":true}\x1e'
    )


def test_vector_11_close_on_authentication_expiry() -> None:
    conn = open_connection()
    assert conn.close(Close(allow_reconnect=True)) == bytes.fromhex(
        "7B 22 74 79 70 65 22 3A 37 2C 22 61 6C 6C 6F 77 52 65 63 6F 6E 6E 65 63 74 22 3A 74 72 75 65 7D 1E"
    )


def test_messagepack_close_records() -> None:
    conn = open_connection(MSGPACK_HANDSHAKE)
    assert conn.close() == bytes.fromhex("04 93 07 C0 C2")
    conn = open_connection(MSGPACK_HANDSHAKE)
    assert conn.close(Close(allow_reconnect=True)) == bytes.fromhex("04 93 07 C0 C3")


def test_close_from_the_client_is_an_event_and_ends_reading() -> None:
    conn = open_connection()
    conn.receive_data(b'{"type":6}\x1e{"type":7}\x1e{"type":6}\x1e')
    assert conn.next_event() == Ping()
    assert conn.next_event() == Close()
    assert conn.state is ConnectionState.CLOSED
    with pytest.raises(LocalProtocolError, match="closed"):
        conn.next_event()
    conn.receive_data(b'{"type":6}\x1e')  # late bytes are dropped
    # The server still answers with its own Close, best-effort, once.
    assert conn.close() == b'{"type":7}\x1e'
    assert conn.close() == b""


# -- remote protocol errors ----------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(b'{"type":1,"arguments":[]}\x1e', id="missing-target"),
        pytest.param(b'{"type":3,"invocationId":"1","result":1,"error":"x"}\x1e', id="both"),
        pytest.param(b"{oops}\x1e", id="invalid-json"),
    ],
)
def test_bad_record_closes_with_the_error_close(record: bytes) -> None:
    conn = open_connection()
    conn.receive_data(b'{"type":6}\x1e' + record)
    assert conn.next_event() == Ping()
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.close == CLOSE_ON_ERROR
    assert conn.state is ConnectionState.CLOSED
    assert conn.close(info.value.close) == (
        b'{"type":7,"error":"Connection closed with an error.","allowReconnect":true}\x1e'
    )
    with pytest.raises(LocalProtocolError):
        conn.next_event()


def test_oversize_record_is_a_remote_error() -> None:
    conn = connection(max_message_size=64)
    conn.receive_data(JSON_HANDSHAKE)
    assert isinstance(conn.next_event(), HandshakeCompleted)
    conn.receive_data(b'{"type":1,"target":"Send","arguments":["' + b"x" * 64 + b'"]}\x1e')
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.close == CLOSE_ON_ERROR
    assert conn.state is ConnectionState.CLOSED


def test_bad_binary_record_is_a_remote_error() -> None:
    conn = open_connection(MSGPACK_HANDSHAKE)
    conn.receive_data(bytes.fromhex("02 C1 C1"))  # 0xC1 is never valid MessagePack
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is ConnectionState.CLOSED


# -- any split of the stream ----------------------------------------------------------


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@given(
    data=st.data(),
    case=st.sampled_from(
        [
            (JSON_HANDSHAKE, JSON_RECORDS, JSON, JSON_MESSAGES),
            (MSGPACK_HANDSHAKE, MSGPACK_RECORDS, MSGPACK, MSGPACK_MESSAGES),
        ]
    ),
)
def test_any_split_yields_the_same_handshake_and_messages(
    data: st.DataObject, case: tuple[bytes, bytes, HubProtocol, list[Invocation | Ping]]
) -> None:
    handshake, records, protocol, messages = case
    stream = handshake + records
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=12))
    conn = connection()
    events: list[Event] = []
    for chunk in split(stream, cuts):
        conn.receive_data(chunk)
        events.extend(drain(conn))
    assert events == [HandshakeCompleted(protocol=protocol, version=1), *messages]
    assert conn.state is ConnectionState.OPEN
