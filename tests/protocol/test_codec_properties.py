"""Properties both hub codecs must have, whatever the messages and however bytes arrive.

* encode then decode gives the message back, for every message type;
* a stream of records cut into arbitrary chunks decodes to the same messages;
* no input, however broken, raises anything but a ProtocolError.
"""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triohub.protocol.base import HubProtocol
from triohub.protocol.errors import ProtocolError
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
from triohub.protocol.msgpack_protocol import MessagePackHubProtocol

JSON = JsonHubProtocol()
MSGPACK = MessagePackHubProtocol()

INT64 = st.integers(-(2**63), 2**63 - 1)
PAYLOAD_INTS = st.integers(-(2**63), 2**64 - 1)  # what both formats carry losslessly


def _values(
    scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    # Lists, not tuples: both formats decode arrays as lists.
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=12,
    )


JSON_VALUES = _values(
    st.none()
    | st.booleans()
    | PAYLOAD_INTS
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    st.text(),
)
MSGPACK_VALUES = _values(
    st.none() | st.booleans() | PAYLOAD_INTS | st.floats(allow_nan=False) | st.text() | st.binary(),
    st.text() | INT64 | st.binary(),
)

IDS = st.text(min_size=1, max_size=8)
TARGETS = st.text(min_size=1, max_size=12)
HEADERS = st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3)


def messages(values: st.SearchStrategy[Any]) -> st.SearchStrategy[HubMessage]:
    arguments = st.lists(values, max_size=4)
    stream_ids = st.lists(IDS, max_size=3)
    return st.one_of(
        st.builds(
            Invocation,
            target=TARGETS,
            arguments=arguments,
            invocation_id=st.none() | IDS,
            stream_ids=stream_ids,
            headers=HEADERS,
        ),
        st.builds(
            StreamInvocation,
            invocation_id=IDS,
            target=TARGETS,
            arguments=arguments,
            stream_ids=stream_ids,
            headers=HEADERS,
        ),
        st.builds(StreamItem, invocation_id=IDS, item=values, headers=HEADERS),
        st.builds(
            Completion, invocation_id=IDS, result=values, has_result=st.just(True), headers=HEADERS
        ),
        st.builds(Completion, invocation_id=IDS, error=st.text(), headers=HEADERS),
        st.builds(Completion, invocation_id=IDS, headers=HEADERS),
        st.builds(CancelInvocation, invocation_id=IDS, headers=HEADERS),
        st.just(Ping()),
        st.builds(Close, error=st.none() | st.text(), allow_reconnect=st.booleans()),
        st.builds(Ack, INT64),
        st.builds(Sequence, INT64),
    )


CODECS = [
    pytest.param(JSON, messages(JSON_VALUES), id="json"),
    pytest.param(MSGPACK, messages(MSGPACK_VALUES), id="messagepack"),
]
PROTOCOLS = [pytest.param(JSON, id="json"), pytest.param(MSGPACK, id="messagepack")]


def drain(protocol: HubProtocol, chunks: list[bytes], limit: int | None = None) -> list[HubMessage]:
    decoder = protocol.decoder(limit)
    out: list[HubMessage] = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        while (message := decoder.next_message()) is not None:
            out.append(message)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@pytest.mark.parametrize(("protocol", "strategy"), CODECS)
@settings(deadline=None)
@given(data=st.data())
def test_encode_decode_identity(
    protocol: HubProtocol, strategy: st.SearchStrategy[HubMessage], data: st.DataObject
) -> None:
    message = data.draw(strategy)
    assert drain(protocol, [protocol.encode(message)]) == [message]


@pytest.mark.parametrize(("protocol", "strategy"), CODECS)
@settings(deadline=None)
@given(data=st.data())
def test_any_split_of_a_stream(
    protocol: HubProtocol, strategy: st.SearchStrategy[HubMessage], data: st.DataObject
) -> None:
    sent = data.draw(st.lists(strategy, min_size=1, max_size=6))
    stream = b"".join(protocol.encode(message) for message in sent)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    assert drain(protocol, split(stream, cuts)) == sent
    assert drain(protocol, [bytes((byte,)) for byte in stream]) == sent


@pytest.mark.parametrize(("protocol", "strategy"), CODECS)
@settings(deadline=None)
@given(data=st.data())
def test_size_limit_only_refuses_records_over_it(
    protocol: HubProtocol, strategy: st.SearchStrategy[HubMessage], data: st.DataObject
) -> None:
    sent = data.draw(st.lists(strategy, min_size=1, max_size=4))
    records = [protocol.encode(message) for message in sent]
    limit = data.draw(st.integers(1, max(len(record) for record in records) + 2))
    stream = b"".join(records)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6))
    fitting = [m for m, r in zip(sent, records, strict=True) if len(r) <= limit]
    if len(fitting) == len(sent):
        assert drain(protocol, split(stream, cuts), limit) == sent
    else:
        with pytest.raises(ProtocolError, match="maximum message size"):
            drain(protocol, split(stream, cuts), limit)


def assert_well_typed(message: HubMessage) -> None:
    """What the hub layer relies on without checking again (attrs checks no types)."""
    for key, value in getattr(message, "headers", {}).items():
        assert type(key) is str
        assert type(value) is str
    if isinstance(message, Invocation | StreamInvocation):
        assert type(message.target) is str
        assert type(message.arguments) is tuple
        assert all(type(stream_id) is str for stream_id in message.stream_ids)
    if isinstance(message, Invocation):
        assert message.invocation_id is None or type(message.invocation_id) is str
        assert message.invocation_id != ""
    elif isinstance(message, StreamInvocation | StreamItem | Completion | CancelInvocation):
        assert type(message.invocation_id) is str
    if isinstance(message, Completion | Close):
        assert message.error is None or type(message.error) is str
    if isinstance(message, Close):
        assert type(message.allow_reconnect) is bool
    if isinstance(message, Ack | Sequence):
        assert type(message.sequence_id) is int


def only_protocol_errors(protocol: HubProtocol, chunks: list[bytes], limit: int | None) -> None:
    """Decode to the end or to a ProtocolError; whatever came out must be well typed."""
    decoder = protocol.decoder(limit)
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            while (message := decoder.next_message()) is not None:
                assert_well_typed(message)
    except ProtocolError:
        pass


@pytest.mark.parametrize("protocol", PROTOCOLS)
@settings(deadline=None, max_examples=300)
@given(
    chunks=st.lists(st.binary(max_size=40), max_size=6),
    limit=st.none() | st.integers(1, 64),
)
def test_arbitrary_bytes_raise_only_protocol_errors(
    protocol: HubProtocol, chunks: list[bytes], limit: int | None
) -> None:
    only_protocol_errors(protocol, chunks, limit)


@pytest.mark.parametrize(("protocol", "strategy"), CODECS)
@settings(deadline=None, max_examples=300)
@given(data=st.data())
def test_corrupted_streams_raise_only_protocol_errors(
    protocol: HubProtocol, strategy: st.SearchStrategy[HubMessage], data: st.DataObject
) -> None:
    stream = bytearray(
        b"".join(protocol.encode(m) for m in data.draw(st.lists(strategy, min_size=1, max_size=3)))
    )
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(stream) - 1))
        edit = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if edit == "flip":
            stream[at] = data.draw(st.integers(0, 255))
        elif edit == "insert":
            stream[at:at] = data.draw(st.binary(min_size=1, max_size=3))
        elif len(stream) > 1:
            del stream[at]
    only_protocol_errors(protocol, [bytes(stream)], data.draw(st.none() | st.integers(1, 200)))


# Valid records with one or two fields deleted, replaced or added. Random bytes
# rarely get past the parser; these reach the field-by-field validation, where a
# forgotten check shows up as a TypeError or as a badly typed message.
JSON_FIELDS = [
    "type", "invocationId", "target", "arguments", "streamIds", "headers",
    "item", "result", "error", "allowReconnect", "sequenceId",
]  # fmt: skip
BAD_JSON = JSON_VALUES | st.integers(-1, 10) | st.just("") | st.lists(INT64, max_size=2)


@settings(deadline=None, max_examples=500)
@given(message=messages(JSON_VALUES), data=st.data())
def test_json_records_with_bad_fields(message: HubMessage, data: st.DataObject) -> None:
    record = orjson.loads(JSON.encode(message)[:-1])
    for _ in range(data.draw(st.integers(1, 2))):
        key = data.draw(st.sampled_from(JSON_FIELDS))
        if data.draw(st.booleans()):
            record.pop(key, None)
        else:
            record[key] = data.draw(BAD_JSON)
    only_protocol_errors(JSON, [orjson.dumps(record) + b"\x1e"], None)


HASHABLE = st.none() | st.booleans() | INT64 | st.text(max_size=3) | st.binary(max_size=3)
BAD_MSGPACK = (
    MSGPACK_VALUES
    | st.integers(-1, 10)
    | st.just("")
    | st.dictionaries(HASHABLE, MSGPACK_VALUES, max_size=3)
    | st.lists(INT64, max_size=2)
)


def frame(body: bytes) -> bytes:
    """A varint length prefix written independently of the codec under test."""
    prefix = bytearray()
    length = len(body)
    while length >= 0x80:
        prefix.append((length & 0x7F) | 0x80)
        length >>= 7
    prefix.append(length)
    return bytes(prefix) + body


def unframe(record: bytes) -> bytes:
    start = 0
    while record[start] & 0x80:
        start += 1
    return record[start + 1 :]


@settings(deadline=None, max_examples=500)
@given(message=messages(MSGPACK_VALUES), data=st.data())
def test_msgpack_bodies_with_bad_items(message: HubMessage, data: st.DataObject) -> None:
    items = msgpack.unpackb(unframe(MSGPACK.encode(message)), raw=False, strict_map_key=False)
    for _ in range(data.draw(st.integers(1, 2))):
        at = data.draw(st.integers(0, len(items)))
        edit = data.draw(st.sampled_from(["replace", "truncate", "append"]))
        if edit == "replace" and at < len(items):
            items[at] = data.draw(BAD_MSGPACK)
        elif edit == "truncate":
            del items[at:]
        else:
            items.append(data.draw(BAD_MSGPACK))
    only_protocol_errors(MSGPACK, [frame(msgpack.packb(items, use_bin_type=True))], None)
