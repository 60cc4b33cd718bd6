"""Stateful reconnect on the wire: Ack and Sequence bytes as the official client
writes and reads them, and the version 2 handshake that turns the feature on.

The byte vectors below were produced by the installed ``@microsoft/signalr``
10.0.x (``JsonHubProtocol``) and ``@microsoft/signalr-protocol-msgpack``
(``MessagePackHubProtocol``) with ``tests/protocol/js/stateful_vectors.mjs``;
``test_the_installed_client_agrees`` runs that script again, so the vectors
cannot drift from the client.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triohub.protocol import (
    HandshakeCompleted,
    HubConnection,
    HubProtocol,
    Invocation,
    JsonHubProtocol,
    MessagePackHubProtocol,
    NeedData,
    TransferFormat,
)
from triohub.protocol.messages import Ack, HubMessage, Sequence

JSON = JsonHubProtocol()
MSGPACK = MessagePackHubProtocol()
PROTOCOLS: dict[str, HubProtocol] = {"json": JSON, "messagepack": MSGPACK}
ANY_FORMAT = (TransferFormat.TEXT, TransferFormat.BINARY)
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "protocol" / "js" / "stateful_vectors.mjs"

# (sequence id, JS client's MessagePack Ack, its Sequence); every integer width.
MSGPACK_VECTORS = [
    (1, "03920801", "03920901"),
    (36, "03920824", "03920924"),
    (127, "0392087f", "0392097f"),
    (128, "049208cc80", "049209cc80"),
    (255, "049208ccff", "049209ccff"),
    (256, "059208cd0100", "059209cd0100"),
    (65535, "059208cdffff", "059209cdffff"),
    (65536, "079208ce00010000", "079209ce00010000"),
    (2**32, "0b9208cf0000000100000000", "0b9209cf0000000100000000"),
    (2**40, "0b9208cf0000010000000000", "0b9209cf0000010000000000"),
]
IDS = [sequence_id for sequence_id, _, _ in MSGPACK_VECTORS]


def json_vector(kind: int, sequence_id: int) -> bytes:
    # What JSON.stringify({type, sequenceId}) + 0x1E gives (checked by the live test).
    return b'{"type":%d,"sequenceId":%d}\x1e' % (kind, sequence_id)


def decode(protocol: HubProtocol, wire: bytes) -> list[HubMessage]:
    decoder = protocol.decoder()
    decoder.receive_data(wire)
    messages = []
    while (message := decoder.next_message()) is not None:
        messages.append(message)
    return messages


# -- byte vectors ------------------------------------------------------------------------


@pytest.mark.parametrize(("sequence_id", "ack", "sequence"), MSGPACK_VECTORS)
def test_messagepack_matches_the_clients_bytes(sequence_id: int, ack: str, sequence: str) -> None:
    assert MSGPACK.encode(Ack(sequence_id)) == bytes.fromhex(ack)
    assert MSGPACK.encode(Sequence(sequence_id)) == bytes.fromhex(sequence)
    wire = bytes.fromhex(ack + sequence)
    assert decode(MSGPACK, wire) == [Ack(sequence_id), Sequence(sequence_id)]


@pytest.mark.parametrize("sequence_id", IDS)
def test_json_matches_the_clients_bytes(sequence_id: int) -> None:
    ack, sequence = json_vector(8, sequence_id), json_vector(9, sequence_id)
    assert JSON.encode(Ack(sequence_id)) == ack
    assert JSON.encode(Sequence(sequence_id)) == sequence
    assert decode(JSON, ack + sequence) == [Ack(sequence_id), Sequence(sequence_id)]


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.sampled_from([JSON, MSGPACK]))
def test_ack_and_sequence_round_trip(sequence_id: int, protocol: HubProtocol) -> None:
    for message in (Ack(sequence_id), Sequence(sequence_id)):
        assert decode(protocol, protocol.encode(message) * 2) == [message, message]


def test_the_installed_client_agrees() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js 20) is not on PATH; `make test` installs it", pytrace=False)
    ours = {
        name: b"".join(p.encode(m(i)) for i in IDS for m in (Ack, Sequence)).hex()
        for name, p in PROTOCOLS.items()
    }
    request = json.dumps({"ids": IDS, **ours}).encode()
    done = subprocess.run(
        [node, str(SCRIPT)], input=request, cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    answer = json.loads(done.stdout)
    # What the client writes is byte for byte what these tests pin down...
    assert answer["write"]["messagepack"] == [[ack, seq] for _, ack, seq in MSGPACK_VECTORS]
    assert answer["write"]["json"] == [
        [json_vector(8, i).hex(), json_vector(9, i).hex()] for i in IDS
    ]
    # ...and it reads what we write as the same messages.
    expected = [{"type": t, "sequenceId": i} for i in IDS for t in (8, 9)]
    assert answer["read"] == {"json": expected, "messagepack": expected}
    assert answer["versions"] == {"json": 2, "messagepack": 2}


# -- the version 2 handshake ---------------------------------------------------------------


def handshake(*, granted: bool, protocol: str, version: int) -> HandshakeCompleted:
    conn = HubConnection(PROTOCOLS, ANY_FORMAT, stateful_reconnect=granted)
    conn.receive_data(b'{"protocol":"%s","version":%d}\x1e' % (protocol.encode(), version))
    event = conn.next_event()
    assert isinstance(event, HandshakeCompleted)
    return event


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
def test_version_2_on_a_granted_connection_turns_stateful_reconnect_on(protocol: str) -> None:
    event = handshake(granted=True, protocol=protocol, version=2)
    assert (event.version, event.stateful_reconnect) == (2, True)
    assert event.reply == b"{}\x1e"


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
def test_version_1_on_a_granted_connection_runs_without_it(protocol: str) -> None:
    # What the JS client sends when its transport is not WebSockets (it enables
    # the feature for WebSockets only) even though negotiate granted it.
    event = handshake(granted=True, protocol=protocol, version=1)
    assert (event.version, event.stateful_reconnect) == (1, False)


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
def test_version_2_without_the_grant_runs_as_version_1(protocol: str) -> None:
    # ASP.NET Core accepts it too (HubConnectionContext keeps the feature off
    # when the connection has none): a client that did not ask never gets it.
    event = handshake(granted=False, protocol=protocol, version=2)
    assert (event.version, event.stateful_reconnect) == (2, False)


def test_version_3_is_refused_either_way() -> None:
    conn = HubConnection(PROTOCOLS, ANY_FORMAT, stateful_reconnect=True)
    conn.receive_data(b'{"protocol":"json","version":3}\x1e')
    assert conn.next_event().reply == (  # type: ignore[union-attr]
        b'{"error":"The server does not support version 3 of the \'json\' protocol."}\x1e'
    )


# -- a record cut short by the dropped transport --------------------------------------------


def test_transport_lost_discards_a_record_cut_short() -> None:
    conn = HubConnection(PROTOCOLS, ANY_FORMAT, stateful_reconnect=True)
    conn.receive_data(b'{"protocol":"json","version":2}\x1e')
    conn.next_event()
    conn.receive_data(b'{"type":1,"target":"A","arguments":[1]}\x1e{"type":1,"targ')
    assert conn.next_event() == Invocation("A", [1])
    conn.transport_lost()
    # The new transport starts with the client's Sequence, not the old tail.
    conn.receive_data(b'{"type":9,"sequenceId":2}\x1e{"type":1,"target":"B","arguments":[]}\x1e')
    assert conn.next_event() == Sequence(2)
    assert conn.next_event() == Invocation("B", [])
    assert isinstance(conn.next_event(), NeedData)


def test_transport_lost_keeps_the_messagepack_stream_usable() -> None:
    conn = HubConnection(PROTOCOLS, ANY_FORMAT, stateful_reconnect=True)
    conn.receive_data(b'{"protocol":"messagepack","version":2}\x1e')
    conn.next_event()
    conn.receive_data(bytes.fromhex("0d 96 01 80"))  # the first bytes of an Invocation
    conn.transport_lost()
    conn.receive_data(bytes.fromhex("03 92 09 01") + bytes.fromhex("02 91 06"))
    assert conn.next_event() == Sequence(1)
