"""The MessagePack hub codec against exact bytes (protocol doc 5, 13.14) and bad input."""

from __future__ import annotations

import datetime
from typing import Any

import msgpack
import pytest

from triohub.protocol.base import TransferFormat
from triohub.protocol.errors import CLOSE_ON_ERROR, LocalProtocolError, RemoteProtocolError, Texts
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

MSGPACK = MessagePackHubProtocol()


def decode_all(data: bytes, max_message_size: int | None = None) -> list[HubMessage]:
    decoder = MSGPACK.decoder(max_message_size)
    decoder.receive_data(data)
    messages = []
    while (message := decoder.next_message()) is not None:
        messages.append(message)
    return messages


def decode_error(data: bytes, max_message_size: int | None = None) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(data, max_message_size)
    return info.value


def framed(value: Any) -> bytes:
    """A record the way a client would frame ``value`` (small bodies only)."""
    body: bytes = msgpack.packb(value, use_bin_type=True)
    assert len(body) < 0x80
    return bytes((len(body),)) + body


def test_identity() -> None:
    assert (MSGPACK.name, MSGPACK.version) == ("messagepack", 2)
    assert MSGPACK.transfer_format is TransferFormat.BINARY


# -- section 13.14, exact both ways ----------------------------------------------------

VECTORS: list[tuple[str, HubMessage]] = [
    ("02 91 06", Ping()),
    ("04 93 07 C0 C2", Close()),
    ("04 93 07 C0 C3", Close(allow_reconnect=True)),
    ("07 95 03 80 A1 30 03 C0", Completion.with_result("0", None)),
    ("06 94 03 80 A1 30 02", Completion.empty("0")),
    ("07 95 03 80 A1 30 03 2A", Completion.with_result("0", 42)),
    ("0E 96 01 80 C0 A4 53 65 6E 64 91 A2 68 69 90", Invocation("Send", ["hi"])),
    ("0D 96 01 80 A1 30 A3 41 64 64 92 01 02 90", Invocation("Add", [1, 2], invocation_id="0")),
    ("03 92 08 24", Ack(36)),
]


@pytest.mark.parametrize(("wire", "message"), VECTORS)
def test_vector_encodes_exactly(wire: str, message: HubMessage) -> None:
    assert MSGPACK.encode(message) == bytes.fromhex(wire)


@pytest.mark.parametrize(("wire", "message"), VECTORS)
def test_vector_decodes(wire: str, message: HubMessage) -> None:
    assert decode_all(bytes.fromhex(wire)) == [message]


def test_spec_ack_example_with_a_wider_int() -> None:
    assert decode_all(bytes.fromhex("04 92 08 CC 24")) == [Ack(36)]


def test_all_vectors_in_one_chunk() -> None:
    wire = b"".join(bytes.fromhex(hex_) for hex_, _ in VECTORS)
    assert decode_all(wire) == [message for _, message in VECTORS]


# -- layouts of section 5 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "body"),
    [
        (
            Invocation("M", [b"\x00"], "7", stream_ids=["s"], headers={"a": "b"}),
            [1, {"a": "b"}, "7", "M", [b"\x00"], ["s"]],
        ),
        (Invocation("M", invocation_id=""), [1, {}, None, "M", [], []]),
        (StreamInvocation("7", "M", [None], ["s"]), [4, {}, "7", "M", [None], ["s"]]),
        (StreamItem("7", {"k": [1.5]}), [2, {}, "7", {"k": [1.5]}]),
        (Completion.with_error("7", "boom"), [3, {}, "7", 1, "boom"]),
        (CancelInvocation("7", headers={"x": "y"}), [5, {"x": "y"}, "7"]),
        (Close("bye", True), [7, "bye", True]),
        (Sequence(2**40), [9, 2**40]),
    ],
)
def test_layout(message: HubMessage, body: list[Any]) -> None:
    wire = MSGPACK.encode(message)
    assert wire == framed(body)
    assert msgpack.unpackb(wire[1:], raw=False) == body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # Old clients: five-item invocations, two-item closes.
        ([1, {}, "0", "Add", [1, 2]], Invocation("Add", [1, 2], invocation_id="0")),
        ([4, {}, "0", "Count", [3]], StreamInvocation("0", "Count", [3])),
        ([7, None], Close()),
        ([7, "err"], Close("err")),
        # Empty id means non-blocking, as nil does.
        ([1, {}, "", "Send", []], Invocation("Send")),
        # Trailing items are ignored, like the reference reader does.
        ([6, "extra"], Ping()),
        ([2, {}, "1", None, "extra"], StreamItem("1", None)),
        ([3, {}, "1", 2, "ignored"], Completion.empty("1")),
        ([8, 1, 2], Ack(1)),
        ([2, {"t": "1"}, "1", b"raw"], StreamItem("1", b"raw", headers={"t": "1"})),
        ([2, {}, "1", {1: "int keys"}], StreamItem("1", {1: "int keys"})),
    ],
)
def test_lenient_reading(body: list[Any], message: HubMessage) -> None:
    assert decode_all(framed(body)) == [message]


def test_timestamps_and_ext_types_decode() -> None:
    moment = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC)
    wire = MSGPACK.encode(StreamItem("1", [moment, msgpack.ExtType(5, b"xy")]))
    assert decode_all(wire) == [StreamItem("1", [moment, msgpack.ExtType(5, b"xy")])]


def test_unknown_message_types_are_skipped() -> None:
    wire = framed([99, "future", {}]) + framed([0]) + framed([-3]) + bytes.fromhex("02 91 06")
    assert decode_all(wire) == [Ping()]


# -- varint framing ---------------------------------------------------------------------


def test_two_byte_length_prefix() -> None:
    # 0x80 0x29 = 5248 (spec example): a body of exactly that size.
    item = "x" * (5248 - len(msgpack.packb([2, {}, "1", ""])) - 2)  # str16 header is 3 bytes
    wire = MSGPACK.encode(StreamItem("1", item))
    assert wire[:2] == bytes.fromhex("80 29")
    assert len(wire) == 2 + 5248
    assert decode_all(wire) == [StreamItem("1", item)]


def test_largest_prefix_waits_for_the_body() -> None:
    decoder = MSGPACK.decoder()
    decoder.receive_data(bytes.fromhex("FF FF FF FF 07") + b"\x91")
    assert decoder.next_message() is None


@pytest.mark.parametrize("prefix", ["FF FF FF FF 08", "FF FF FF FF 80", "80 80 80 80 FF 01"])
def test_prefix_over_2gb(prefix: str) -> None:
    error = decode_error(bytes.fromhex(prefix))
    assert str(error) == "Messages over 2GB in size are not supported."


def test_partial_prefix_and_body() -> None:
    wire = MSGPACK.encode(StreamItem("1", "y" * 300)) + bytes.fromhex("02 91 06")
    decoder = MSGPACK.decoder()
    for byte in wire[:-3]:
        assert decoder.next_message() is None
        decoder.receive_data(bytes((byte,)))
    assert decoder.next_message() == StreamItem("1", "y" * 300)
    assert decoder.next_message() is None
    decoder.receive_data(wire[-3:])
    assert decoder.next_message() == Ping()


# -- errors ------------------------------------------------------------------------------


def test_oversize_record_refused_from_its_prefix() -> None:
    wire = MSGPACK.encode(StreamItem("1", "z" * 200))
    decoder = MSGPACK.decoder(len(wire) - 1)
    decoder.receive_data(wire[:2])  # only the prefix so far
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message()
    assert str(info.value) == Texts.max_message_size_exceeded(len(wire) - 1)
    assert info.value.close == CLOSE_ON_ERROR
    # The limit counts the prefix, like the reference's sliding window.
    assert len(decode_all(wire, max_message_size=len(wire))) == 1


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ([1, {}, "0", "M"], "arguments"),
        ([1, {}], "invocationId"),
        ([1, {}, None, None, []], "target"),
        ([2, {}, "1"], "item"),
        ([2, {}, None, 1], "invocationId"),
        ([3, {}, "1"], "resultKind"),
        ([3, {}, "1", 3], "result"),
        ([3, {}, "1", 1], "error"),
        ([4, {}, None, "M", []], "invocationId"),
        ([5], "headers"),
        ([7], "error"),
        ([8], "sequenceId"),
        ([9], "sequenceId"),
    ],
)
def test_missing_required_property(body: list[Any], name: str) -> None:
    assert str(decode_error(framed(body))) == Texts.missing_property(name)


def test_header_values_must_be_strings() -> None:
    error = decode_error(framed([5, {"a": "1", "b": 2}, "1"]))
    assert str(error) == Texts.header_not_string("b")


@pytest.mark.parametrize(
    "body",
    [
        [3, {}, "1", 0],
        [3, {}, "1", 4, None],
        [3, {}, "1", True, "x"],
        [3, {}, "1", "1", "x"],
    ],
)
def test_invalid_result_kind(body: list[Any]) -> None:
    assert str(decode_error(framed(body))) == "Invalid invocation result kind."


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"type": 6},
        6,
        None,
        ["6"],
        [True],
        [1.0],
        [1, None, None, "M", []],
        [1, {1: "x"}, None, "M", []],
        [1, {}, 5, "M", []],
        [1, {}, None, 5, []],
        [1, {}, None, "M", "args"],
        [1, {}, None, "M", [], "s"],
        [1, {}, None, "M", [], [1]],
        [2, [], "1", 1],
        [3, {}, "1", 1, None],
        [3, {}, "1", 1, 5],
        [5, {}, b"1"],
        [7, 5],
        [7, None, 1],
        [8, "1"],
        [8, False],
        [9, 1.5],
    ],
)
def test_malformed_bodies(body: Any) -> None:
    assert isinstance(decode_error(framed(body)), RemoteProtocolError)


@pytest.mark.parametrize(
    "wire",
    [
        "00",  # an empty body
        "01 C1",  # never-used code
        "01 91",  # a truncated array
        "03 91 06 06",  # extra data after the body
        "03 91 A1 FF",  # invalid UTF-8
        "05 91 81 91 01 02",  # unhashable map key
        "04 91 C7 03 FF",  # a three-byte timestamp
        "0F 92 02 C7 0C FF 00 00 00 00 7F FF FF FF FF FF FF FF",  # year far beyond 9999
        "04 91 D4 80 00",  # ext type code -128
        "06 DD FF FF FF FF 06",  # an array claiming four billion items
    ],
)
def test_malformed_messagepack(wire: str) -> None:
    error = decode_error(bytes.fromhex(wire))
    assert isinstance(error, RemoteProtocolError)
    assert str(error).startswith("Invalid MessagePack") or "Expected" in str(error)


def test_deeply_nested_body() -> None:
    body = b"\x91" * 10_000 + b"\x06"
    wire = bytes.fromhex("91 4E") + body  # length 10001 = 0x91 0x4E
    assert isinstance(decode_error(wire), RemoteProtocolError)


def test_decoder_stays_failed() -> None:
    decoder = MSGPACK.decoder()
    decoder.receive_data(bytes.fromhex("01 C1 02 91 06"))
    with pytest.raises(RemoteProtocolError):
        decoder.next_message()
    decoder.receive_data(bytes.fromhex("02 91 06"))
    with pytest.raises(RemoteProtocolError):
        decoder.next_message()


@pytest.mark.parametrize("bad", [object(), 2**64, "\ud800", datetime.datetime(2024, 1, 1), {"k"}])
def test_unencodable_payload_is_a_local_error(bad: Any) -> None:
    with pytest.raises(LocalProtocolError, match="Cannot encode Completion as MessagePack"):
        MSGPACK.encode(Completion.with_result("1", bad))
    # The shared packer is still usable afterwards.
    assert MSGPACK.encode(Ping()) == bytes.fromhex("02 91 06")
    assert MSGPACK.encode(Ack(36)) == bytes.fromhex("03 92 08 24")


def test_encoding_a_non_message_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="not a hub message"):
        MSGPACK.encode(Ping)  # type: ignore[arg-type]
