"""The JSON hub codec against exact bytes (protocol doc 4.2, 13.5-12) and bad input."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from triohub.protocol.base import TransferFormat
from triohub.protocol.errors import (
    CLOSE_ON_ERROR,
    LocalProtocolError,
    RemoteProtocolError,
    Texts,
)
from triohub.protocol.json_protocol import JsonHubProtocol
from triohub.protocol.messages import (
    Ack,
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    Ping,
    Sequence,
    StreamInvocation,
    StreamItem,
)

JSON = JsonHubProtocol()


def decode_all(data: bytes, max_message_size: int | None = None) -> list[HubMessage]:
    decoder = JSON.decoder(max_message_size)
    decoder.receive_data(data)
    messages = []
    while (message := decoder.next_message()) is not None:
        messages.append(message)
    return messages


def decode_error(data: bytes, max_message_size: int | None = None) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(data, max_message_size)
    return info.value


def test_identity() -> None:
    assert (JSON.name, JSON.version, JSON.transfer_format) == ("json", 2, TransferFormat.TEXT)


# -- section 13: written by the server, so exact both ways --------------------------

SERVER_VECTORS: list[tuple[bytes, HubMessage]] = [
    # 5. Ping
    (bytes.fromhex("7B 22 74 79 70 65 22 3A 36 7D 1E"), Ping()),
    # 7. Completions
    (b'{"type":3,"invocationId":"0","result":3}\x1e', Completion.with_result("0", 3)),
    (
        bytes.fromhex(
            "7B 22 74 79 70 65 22 3A 33 2C 22 69 6E 76 6F 63 61 74 69 6F 6E 49 64 22 3A 22 30 22"
            " 2C 22 72 65 73 75 6C 74 22 3A 6E 75 6C 6C 7D 1E"
        ),
        Completion.with_result("0", None),
    ),
    (b'{"type":3,"invocationId":"1"}\x1e', Completion.empty("1")),
    # 8. Error completions
    (
        b'{"type":3,"invocationId":"2","error":"Failed to invoke \'Nope\' due to an error on'
        b' the server. HubException: Method does not exist."}\x1e',
        Completion.with_error("2", Texts.method_does_not_exist("Nope")),
    ),
    (
        b'{"type":3,"invocationId":"3","error":"Failed to invoke \'AdminOnly\' because user'
        b' is unauthorized"}\x1e',
        Completion.with_error("3", Texts.unauthorized("AdminOnly")),
    ),
    # 9. Broadcast: no invocationId, no streamIds
    (
        b'{"type":1,"target":"ReceiveMessage","arguments":["alice","hello"]}\x1e',
        Invocation("ReceiveMessage", ["alice", "hello"]),
    ),
    # 10. Server side of a stream
    (b'{"type":2,"invocationId":"1","item":0}\x1e', StreamItem("1", 0)),
    (b'{"type":2,"invocationId":"1","item":1}\x1e', StreamItem("1", 1)),
    # 11. Close records
    (b'{"type":7}\x1e', Close()),
    (
        b'{"type":7,"error":"Connection closed with an error.","allowReconnect":true}\x1e',
        CLOSE_ON_ERROR,
    ),
    (
        bytes.fromhex(
            "7B 22 74 79 70 65 22 3A 37 2C 22 61 6C 6C 6F 77 52 65 63 6F 6E 6E 65 63 74 22 3A"
            " 74 72 75 65 7D 1E"
        ),
        Close(allow_reconnect=True),
    ),
    # 12. Stateful reconnect
    (b'{"type":8,"sequenceId":5}\x1e', Ack(5)),
    (b'{"type":9,"sequenceId":1}\x1e', Sequence(1)),
]


@pytest.mark.parametrize(("wire", "message"), SERVER_VECTORS)
def test_server_vector_encodes_exactly(wire: bytes, message: HubMessage) -> None:
    assert JSON.encode(message) == wire


@pytest.mark.parametrize(("wire", "message"), SERVER_VECTORS)
def test_server_vector_decodes(wire: bytes, message: HubMessage) -> None:
    assert decode_all(wire) == [message]


def test_vector_10_stream_records_in_one_chunk() -> None:
    wire = (
        b'{"type":2,"invocationId":"1","item":0}\x1e{"type":2,"invocationId":"1","item":1}\x1e'
        b'{"type":3,"invocationId":"1"}\x1e'
    )
    messages = [StreamItem("1", 0), StreamItem("1", 1), Completion.empty("1")]
    assert b"".join(JSON.encode(m) for m in messages) == wire
    assert decode_all(wire) == messages


# -- section 13: written by the JS client (type last), re-encoded in server order ----

CLIENT_VECTORS: list[tuple[bytes, HubMessage, bytes]] = [
    # 6. Blocking and non-blocking invocations
    (
        b'{"target":"Add","arguments":[1,2],"invocationId":"0","type":1}\x1e',
        Invocation("Add", [1, 2], invocation_id="0"),
        b'{"type":1,"invocationId":"0","target":"Add","arguments":[1,2]}\x1e',
    ),
    (
        b'{"target":"Send","arguments":["hi"],"type":1}\x1e',
        Invocation("Send", ["hi"]),
        b'{"type":1,"target":"Send","arguments":["hi"]}\x1e',
    ),
    # 10. Stream invocation and cancel
    (
        b'{"target":"Counter","arguments":[2],"invocationId":"1","type":4}\x1e',
        StreamInvocation("1", "Counter", [2]),
        b'{"type":4,"invocationId":"1","target":"Counter","arguments":[2]}\x1e',
    ),
    (
        b'{"invocationId":"1","type":5}\x1e',
        CancelInvocation("1"),
        b'{"type":5,"invocationId":"1"}\x1e',
    ),
]


@pytest.mark.parametrize(("client_wire", "message", "server_wire"), CLIENT_VECTORS)
def test_client_vector(client_wire: bytes, message: HubMessage, server_wire: bytes) -> None:
    assert decode_all(client_wire) == [message]
    assert JSON.encode(message) == server_wire
    assert decode_all(server_wire) == [message]


# -- write order and omissions (4.2) --------------------------------------------------


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (
            Invocation("M", [], "7", stream_ids=["s1", "s2"], headers={"a": "b"}),
            b'{"type":1,"headers":{"a":"b"},"invocationId":"7","target":"M","arguments":[],'
            b'"streamIds":["s1","s2"]}\x1e',
        ),
        (
            StreamInvocation("7", "M", [None], stream_ids=["s"], headers={"k": "v"}),
            b'{"type":4,"headers":{"k":"v"},"invocationId":"7","target":"M","arguments":[null],'
            b'"streamIds":["s"]}\x1e',
        ),
        (StreamItem("3", None), b'{"type":2,"invocationId":"3","item":null}\x1e'),
        (
            StreamItem("3", {"b": 1, "a": [True]}, headers={"h": ""}),
            b'{"type":2,"headers":{"h":""},"invocationId":"3","item":{"b":1,"a":[true]}}\x1e',
        ),
        (Completion.with_error("3", ""), b'{"type":3,"invocationId":"3","error":""}\x1e'),
        (
            CancelInvocation("3", headers={"x": "y"}),
            b'{"type":5,"headers":{"x":"y"},"invocationId":"3"}\x1e',
        ),
        (Close("bye"), b'{"type":7,"error":"bye"}\x1e'),
        (Close(""), b'{"type":7,"error":""}\x1e'),
    ],
)
def test_write_order(message: HubMessage, wire: bytes) -> None:
    assert JSON.encode(message) == wire
    assert decode_all(wire) == [message]


def test_empty_invocation_id_is_written_as_absent() -> None:
    wire = JSON.encode(Invocation("M", invocation_id=""))
    assert wire == b'{"type":1,"target":"M","arguments":[]}\x1e'
    assert decode_all(wire) == [Invocation("M")]


def test_binary_payload_is_base64() -> None:
    wire = JSON.encode(Completion.with_result("1", b"\x00\xff"))
    expected = base64.b64encode(b"\x00\xff").decode()
    assert wire == b'{"type":3,"invocationId":"1","result":"' + expected.encode() + b'"}\x1e'


@pytest.mark.parametrize("bad", [object(), 2**64, "\ud800", {1: "non-string key"}])
def test_unencodable_payload_is_a_local_error(bad: Any) -> None:
    with pytest.raises(LocalProtocolError, match="Cannot encode Invocation as JSON"):
        JSON.encode(Invocation("M", [bad]))


def test_encoding_a_non_message_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="not a hub message"):
        JSON.encode("hello")  # type: ignore[arg-type]


# -- reading: lenient where the reference is ------------------------------------------


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b'{"type":6,"headers":{"a":1},"invocationId":5,"x":[]}\x1e', Ping()),
        (b'{"type":1,"target":"M","arguments":[],"invocationId":""}\x1e', Invocation("M")),
        (b'{"type":1,"target":"M","arguments":[],"invocationId":null}\x1e', Invocation("M")),
        (
            b'{"arguments":[1],"nonsense":{"deep":[1]},"target":"M","headers":{},"type":1}\x1e',
            Invocation("M", [1]),
        ),
        (
            b'{"type":3,"invocationId":"1","error":null,"result":null}\x1e',
            Completion.with_result("1", None),
        ),
        (b'{"type":3,"invocationId":"1","error":null}\x1e', Completion.empty("1")),
        (b'{"type":7,"error":null,"allowReconnect":false}\x1e', Close()),
        (b' {"type" : 6}\n\x1e', Ping()),
        (b'{"type":2,"invocationId":"1","item":null,"headers":{"t":"1"}}\x1e',
         StreamItem("1", None, headers={"t": "1"})),
    ],
)  # fmt: skip
def test_lenient_reading(wire: bytes, message: HubMessage) -> None:
    assert decode_all(wire) == [message]


def test_unknown_message_types_are_skipped() -> None:
    wire = b'{"type":99,"target":5}\x1e{"type":0}\x1e{"type":-1}\x1e{"type":6}\x1e'
    assert decode_all(wire) == [Ping()]
    assert decode_all(b'{"type":42}\x1e') == []


def test_partial_records_wait_for_more_bytes() -> None:
    decoder = JSON.decoder()
    wire = b'{"type":6}\x1e{"type":8,"sequenceId":12}\x1e'
    decoder.receive_data(wire[:5])
    assert decoder.next_message() is None
    decoder.receive_data(wire[5:15])
    assert decoder.next_message() == Ping()
    assert decoder.next_message() is None
    decoder.receive_data(bytearray(wire[15:]))
    assert decoder.next_message() == Ack(12)
    assert decoder.next_message() is None


# -- reading: errors the reference raises ----------------------------------------------


@pytest.mark.parametrize(
    ("wire", "name"),
    [
        (b'{"target":"M","arguments":[]}', "type"),
        (b'{"type":1,"arguments":[]}', "target"),
        (b'{"type":1,"target":"","arguments":[]}', "target"),
        (b'{"type":1,"target":"M"}', "arguments"),
        (b'{"type":4,"target":"M","arguments":[]}', "invocationId"),
        (b'{"type":4,"invocationId":"","target":"M","arguments":[]}', "invocationId"),
        (b'{"type":2,"item":1}', "invocationId"),
        (b'{"type":2,"invocationId":"1"}', "item"),
        (b'{"type":3}', "invocationId"),
        (b'{"type":3,"invocationId":null,"result":1}', "invocationId"),
        (b'{"type":5}', "invocationId"),
        (b'{"type":8}', "sequenceId"),
        (b'{"type":9,"sequenceId":null}', "sequenceId"),
    ],
)
def test_missing_required_property(wire: bytes, name: str) -> None:
    error = decode_error(wire + b"\x1e")
    assert str(error) == Texts.missing_property(name)
    assert error.close == CLOSE_ON_ERROR


@pytest.mark.parametrize(
    "wire",
    [
        b'{"type":3,"invocationId":"1","error":"boom","result":null}',
        b'{"type":3,"invocationId":"1","result":1,"error":""}',
    ],
)
def test_error_and_result_are_mutually_exclusive(wire: bytes) -> None:
    assert str(decode_error(wire + b"\x1e")) == Texts.ERROR_AND_RESULT


@pytest.mark.parametrize(
    ("wire", "key"),
    [
        (b'{"type":1,"target":"M","arguments":[],"headers":{"a":"1","b":2}}', "b"),
        (b'{"type":2,"invocationId":"1","item":1,"headers":{"n":null}}', "n"),
        (b'{"type":5,"invocationId":"1","headers":{"o":{"x":"y"}}}', "o"),
    ],
)
def test_header_values_must_be_strings(wire: bytes, key: str) -> None:
    assert str(decode_error(wire + b"\x1e")) == Texts.header_not_string(key)


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"{",
        b"not json",
        b'{"type":1,}',
        b"NaN",
        b"[1,2]",
        b'"type"',
        b"null",
        b'{"type":"1"}',
        b'{"type":1.0}',
        b'{"type":true}',
        b'{"type":1,"target":1,"arguments":[]}',
        b'{"type":1,"target":"M","arguments":{}}',
        b'{"type":1,"target":"M","arguments":[],"invocationId":0}',
        b'{"type":1,"target":"M","arguments":[],"streamIds":"s"}',
        b'{"type":1,"target":"M","arguments":[],"streamIds":[1]}',
        b'{"type":1,"target":"M","arguments":[],"headers":[]}',
        b'{"type":3,"invocationId":1}',
        b'{"type":3,"invocationId":"1","error":1}',
        b'{"type":7,"error":false}',
        b'{"type":7,"allowReconnect":"true"}',
        b'{"type":8,"sequenceId":"5"}',
        b'{"type":8,"sequenceId":false}',
        b'{"type":9,"sequenceId":1.5}',
        b"\xff\xfe",
        b'{"type":2,"invocationId":"1","item":"\xc3\x28"}',
        b"[" * 2000 + b"]" * 2000,
    ],
)
def test_malformed_records(wire: bytes) -> None:
    assert isinstance(decode_error(wire + b"\x1e"), RemoteProtocolError)


def test_oversize_record_in_one_chunk() -> None:
    record = b'{"type":1,"target":"M","arguments":["' + b"x" * 100 + b'"]}\x1e'
    error = decode_error(record, max_message_size=len(record) - 1)
    assert str(error) == Texts.max_message_size_exceeded(len(record) - 1)
    assert error.close == CLOSE_ON_ERROR
    # The limit counts the separator, like the reference's sliding window.
    assert len(decode_all(record, max_message_size=len(record))) == 1


def test_oversize_partial_record_fails_before_it_completes() -> None:
    decoder = JSON.decoder(32)
    decoder.receive_data(b'{"type":1,"target":"M","argume')
    assert decoder.next_message() is None
    decoder.receive_data(b'nts":["xx')
    with pytest.raises(RemoteProtocolError, match="maximum message size of 32B"):
        decoder.next_message()


def test_limit_applies_per_record_not_per_chunk() -> None:
    wire = b'{"type":6}\x1e' * 100
    assert len(decode_all(wire, max_message_size=11)) == 100


def test_decoder_stays_failed() -> None:
    decoder = JSON.decoder()
    decoder.receive_data(b'{"type":8}\x1e{"type":6}\x1e')
    with pytest.raises(RemoteProtocolError):
        decoder.next_message()
    decoder.receive_data(b'{"type":6}\x1e')
    with pytest.raises(RemoteProtocolError):
        decoder.next_message()


def test_invalid_max_message_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        JSON.decoder(0)
