"""The handshake parser and builders, with exact bytes (protocol doc 4.1, 13.1-3)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triohub.protocol.base import HubProtocol, TransferFormat
from triohub.protocol.errors import LocalProtocolError, Texts
from triohub.protocol.handshake import (
    SUCCESS_REPLY,
    HandshakeFailure,
    HandshakeParser,
    HandshakeRequest,
    failure_reply,
    parse_handshake_request,
    resolve_protocol,
)
from triohub.protocol.json_protocol import JsonHubProtocol
from triohub.protocol.msgpack_protocol import MessagePackHubProtocol

JSON_HANDSHAKE = b'{"protocol":"json","version":1}\x1e'
MSGPACK_HANDSHAKE = b'{"protocol":"messagepack","version":1}\x1e'
UNEXPECTED_REPLY = b'{"error":"An unexpected error occurred during connection handshake."}\x1e'
PROTOCOLS: dict[str, HubProtocol] = {
    "json": JsonHubProtocol(),
    "messagepack": MessagePackHubProtocol(),
}
ANY_FORMAT = (TransferFormat.TEXT, TransferFormat.BINARY)


def parse_all(data: bytes, max_message_size: int | None = 32768) -> HandshakeParser:
    parser = HandshakeParser(max_message_size)
    assert parser.feed(data) is not None
    return parser


# -- section 13 vectors -----------------------------------------------------------


def test_vector_1_json_handshake_request() -> None:
    assert len(JSON_HANDSHAKE) == 32
    expected = bytes.fromhex(
        "7B 22 70 72 6F 74 6F 63 6F 6C 22 3A 22 6A 73 6F 6E 22 2C 22 76 65 72 73 69 6F 6E 22 3A 31 7D 1E"
    )
    assert expected == JSON_HANDSHAKE
    assert HandshakeParser().feed(JSON_HANDSHAKE) == HandshakeRequest("json", 1)


def test_vector_14_messagepack_handshake_request_is_json() -> None:
    assert len(MSGPACK_HANDSHAKE) == 39
    assert HandshakeParser().feed(MSGPACK_HANDSHAKE) == HandshakeRequest("messagepack", 1)


def test_vector_2_success_reply() -> None:
    assert SUCCESS_REPLY == b"{}\x1e" == bytes.fromhex("7B 7D 1E")


def test_vector_3_failure_replies() -> None:
    assert failure_reply(Texts.protocol_not_supported("foo")) == (
        b'{"error":"The protocol \'foo\' is not supported."}\x1e'
    )
    assert failure_reply(Texts.version_not_supported(3, "json")) == (
        b'{"error":"The server does not support version 3 of the \'json\' protocol."}\x1e'
    )
    canceled = failure_reply(Texts.HANDSHAKE_CANCELED)
    assert canceled == b'{"error":"Handshake was canceled."}\x1e'
    assert len(canceled) == 36
    assert HandshakeFailure(Texts.HANDSHAKE_CANCELED).reply == canceled


def test_failure_reply_escapes_like_the_relaxed_writer() -> None:
    # Quotes, backslashes and control characters are escaped; ' and non-ASCII are not.
    assert (
        failure_reply("a \"b\" \\ \n 'c' é") == b'{"error":"a \\"b\\" \\\\ \\n \'c\' \xc3\xa9"}\x1e'
    )


def test_failure_needs_a_text() -> None:
    with pytest.raises(ValueError, match="error"):
        HandshakeFailure("")


# -- parsing ----------------------------------------------------------------------


def test_extra_properties_are_skipped_and_order_is_free() -> None:
    record = b'{"version":2,"x":{"y":[1]},"protocol":"messagepack"}'
    assert parse_handshake_request(record) == HandshakeRequest("messagepack", 2)


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        pytest.param(b'{"version":1}', "Missing required property 'protocol'.", id="no-protocol"),
        pytest.param(
            b'{"protocol":"json"}', "Missing required property 'version'.", id="no-version"
        ),
        pytest.param(b'{"protocol":null,"version":1}', "Missing required", id="null-protocol"),
        pytest.param(b'{"protocol":"json","version":null}', "Missing required", id="null-version"),
        pytest.param(b'{"protocol":1,"version":1}', "'protocol'", id="protocol-number"),
        pytest.param(b'{"protocol":"json","version":"1"}', "'version'", id="version-string"),
        pytest.param(b'{"protocol":"json","version":1.0}', "'version'", id="version-float"),
        pytest.param(b'{"protocol":"json","version":true}', "'version'", id="version-bool"),
        pytest.param(b'{"protocol":"json","version":2147483648}', "'version'", id="version-int64"),
        pytest.param(b'{"protocol":"json",', "not valid JSON", id="truncated-json"),
        pytest.param(b"", "not valid JSON", id="empty"),
        pytest.param(b"\xff\xfe", "not valid JSON", id="not-utf8"),
        pytest.param(b'["json",1]', "not a JSON object", id="array"),
        pytest.param(b'"json"', "not a JSON object", id="string"),
    ],
)
def test_malformed_request_is_a_generic_failure(payload: bytes, detail: str) -> None:
    outcome = parse_handshake_request(payload)
    assert isinstance(outcome, HandshakeFailure)
    assert outcome.error == Texts.HANDSHAKE_UNEXPECTED
    assert outcome.detail is not None
    assert detail in outcome.detail
    # The detail is for logs: the wire only gets the generic text.
    assert outcome.reply == UNEXPECTED_REPLY


def test_int32_bounds_are_versions() -> None:
    low = b'{"protocol":"json","version":-2147483648}'
    high = b'{"protocol":"json","version":2147483647}'
    assert parse_handshake_request(low) == HandshakeRequest("json", -(2**31))
    assert parse_handshake_request(high) == HandshakeRequest("json", 2**31 - 1)


# -- the incremental parser -------------------------------------------------------


def test_returns_none_until_the_separator_arrives() -> None:
    parser = HandshakeParser()
    for byte in JSON_HANDSHAKE[:-1]:
        assert parser.feed(bytes([byte])) is None
    assert parser.feed(b"\x1e") == HandshakeRequest("json", 1)
    assert parser.remainder == b""


def test_records_after_the_handshake_are_the_remainder() -> None:
    records = b'{"type":6}\x1e{"type":1,"target":"A","arguments":[]}\x1e{"ty'
    parser = parse_all(JSON_HANDSHAKE + records)
    assert parser.remainder == records


def test_binary_records_after_a_messagepack_handshake_are_the_remainder() -> None:
    ping = bytes.fromhex("02 91 06")
    assert parse_all(MSGPACK_HANDSHAKE + ping).remainder == ping


def test_feeding_after_the_outcome_is_a_local_error() -> None:
    parser = parse_all(JSON_HANDSHAKE)
    with pytest.raises(LocalProtocolError, match="decoder"):
        parser.feed(b'{"type":6}\x1e')


def test_invalid_json_record_is_a_reply_not_an_exception() -> None:
    outcome = HandshakeParser().feed(b"{nope}\x1e")
    assert isinstance(outcome, HandshakeFailure)
    assert outcome.reply == UNEXPECTED_REPLY


def test_handshake_that_fills_the_limit_exactly_is_accepted() -> None:
    size = len(JSON_HANDSHAKE)
    assert HandshakeParser(size).feed(JSON_HANDSHAKE + b'{"type":6}\x1e') == HandshakeRequest(
        "json", 1
    )


def test_handshake_one_byte_over_the_limit_is_canceled() -> None:
    outcome = HandshakeParser(len(JSON_HANDSHAKE) - 1).feed(JSON_HANDSHAKE)
    assert outcome == HandshakeFailure(Texts.HANDSHAKE_CANCELED)
    assert isinstance(outcome, HandshakeFailure)
    assert outcome.reply == b'{"error":"Handshake was canceled."}\x1e'


def test_oversize_handshake_fails_before_its_separator_arrives() -> None:
    parser = HandshakeParser(64)
    start = b'{"protocol":"json","version":1,"pad":"'
    # 64 bytes without a separator may still be a handshake...
    assert parser.feed(start + b"x" * (64 - len(start))) is None
    # ...but a 65th byte without one cannot be.
    assert parser.feed(b"x") == HandshakeFailure(Texts.HANDSHAKE_CANCELED)
    assert parser.remainder == b""


def test_default_limit_is_32_kib() -> None:
    pad = b"x" * 32768
    outcome = HandshakeParser().feed(b'{"protocol":"json","version":1,"p":"' + pad + b'"}\x1e')
    assert outcome == HandshakeFailure(Texts.HANDSHAKE_CANCELED)


def test_no_limit() -> None:
    pad = b"x" * 100_000
    record = b'{"protocol":"json","version":1,"p":"' + pad + b'"}\x1e'
    assert HandshakeParser(None).feed(record) == HandshakeRequest("json", 1)


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_message_size"):
        HandshakeParser(0)


@given(
    records=st.lists(st.binary(max_size=40), max_size=5).map(b"\x1e".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_any_split_gives_the_same_request_and_remainder(records: bytes, cuts: list[int]) -> None:
    stream = JSON_HANDSHAKE + records
    bounds = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    parser = HandshakeParser()
    for start, end in itertools.pairwise(bounds):
        outcome = parser.feed(stream[start:end])
        if outcome is not None:
            break
    assert outcome == HandshakeRequest("json", 1)
    # The remainder is whatever came after the record in the chunks fed so far.
    assert parser.remainder == stream[len(JSON_HANDSHAKE) : end]


# -- choosing the protocol --------------------------------------------------------


def test_resolves_known_protocols() -> None:
    assert resolve_protocol(HandshakeRequest("json", 1), PROTOCOLS, ANY_FORMAT) is PROTOCOLS["json"]
    msgpack = resolve_protocol(HandshakeRequest("messagepack", 2), PROTOCOLS, ANY_FORMAT)
    assert msgpack is PROTOCOLS["messagepack"]


def test_unknown_protocol() -> None:
    outcome = resolve_protocol(HandshakeRequest("foo", 1), PROTOCOLS, ANY_FORMAT)
    assert outcome == HandshakeFailure("The protocol 'foo' is not supported.")
    assert isinstance(outcome, HandshakeFailure)
    assert outcome.reply == b'{"error":"The protocol \'foo\' is not supported."}\x1e'


def test_version_above_the_protocols_is_refused() -> None:
    outcome = resolve_protocol(HandshakeRequest("json", 3), PROTOCOLS, ANY_FORMAT)
    assert outcome == HandshakeFailure(
        "The server does not support version 3 of the 'json' protocol."
    )


@pytest.mark.parametrize("version", [0, 1, 2, -1])
def test_versions_up_to_the_protocols_are_accepted(version: int) -> None:
    outcome = resolve_protocol(HandshakeRequest("json", version), PROTOCOLS, ANY_FORMAT)
    assert outcome is PROTOCOLS["json"]


def test_names_match_case_insensitively_and_errors_quote_the_request() -> None:
    assert resolve_protocol(HandshakeRequest("JSON", 1), PROTOCOLS, ANY_FORMAT) is PROTOCOLS["json"]
    outcome = resolve_protocol(HandshakeRequest("MessagePack", 9), PROTOCOLS, ANY_FORMAT)
    assert outcome == HandshakeFailure(
        "The server does not support version 9 of the 'MessagePack' protocol."
    )


def test_messagepack_over_a_text_only_transport() -> None:
    outcome = resolve_protocol(
        HandshakeRequest("messagepack", 1), PROTOCOLS, (TransferFormat.TEXT,)
    )
    # The reference names the protocol's own format: the transport lacks Binary.
    assert outcome == HandshakeFailure(
        "Cannot use the 'messagepack' protocol on the current transport. "
        "The transport does not support 'Binary' transfer format."
    )
    assert outcome == HandshakeFailure(
        Texts.transfer_format_not_supported("messagepack", TransferFormat.BINARY.value)
    )


def test_json_over_a_text_only_transport() -> None:
    outcome = resolve_protocol(HandshakeRequest("json", 1), PROTOCOLS, (TransferFormat.TEXT,))
    assert outcome is PROTOCOLS["json"]
