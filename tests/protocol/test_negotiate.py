"""Negotiate: query parsing, ids and byte-exact bodies (protocol doc 2, 13.4)."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from triohub.protocol.base import TransferFormat
from triohub.protocol.errors import Texts
from triohub.protocol.negotiate import (
    NegotiateError,
    NegotiateRequest,
    NegotiateResponse,
    TransportType,
    negotiate,
    new_connection_id,
    parse_negotiate_query,
)

ALL = tuple(TransportType)
ID = "AAAAAAAAAAAAAAAAAAAAAA"
TOKEN = "BBBBBBBBBBBBBBBBBBBBBB"
TRANSPORTS_JSON = (
    b'"availableTransports":['
    b'{"transport":"WebSockets","transferFormats":["Text","Binary"]},'
    b'{"transport":"ServerSentEvents","transferFormats":["Text"]},'
    b'{"transport":"LongPolling","transferFormats":["Text","Binary"]}]'
)
URL_SAFE_22 = re.compile(r"[A-Za-z0-9_-]{22}")


# -- section 13 vector 4 -----------------------------------------------------------


def test_vector_4_version_1_body() -> None:
    response = NegotiateResponse(1, ID, TOKEN, ALL)
    assert response.body == (
        b'{"negotiateVersion":1,"connectionId":"AAAAAAAAAAAAAAAAAAAAAA",'
        b'"connectionToken":"BBBBBBBBBBBBBBBBBBBBBB",' + TRANSPORTS_JSON + b"}"
    )


def test_token_lifetime_is_reported_last_when_given() -> None:
    response = NegotiateResponse(1, ID, TOKEN, ALL, token_lifetime_seconds=299)
    assert response.body == (
        b'{"negotiateVersion":1,"connectionId":"AAAAAAAAAAAAAAAAAAAAAA",'
        b'"connectionToken":"BBBBBBBBBBBBBBBBBBBBBB",'
        + TRANSPORTS_JSON
        + b',"tokenLifetimeSeconds":299}'
    )


def test_vector_4_version_0_body_has_no_token() -> None:
    response = NegotiateResponse(0, ID, ID, ALL)
    assert response.body == (
        b'{"negotiateVersion":0,"connectionId":"AAAAAAAAAAAAAAAAAAAAAA",' + TRANSPORTS_JSON + b"}"
    )


def test_vector_4_non_integer_version() -> None:
    outcome = negotiate("negotiateVersion=abc", transports=ALL)
    assert outcome == NegotiateError(Texts.NEGOTIATE_NON_INTEGER)
    assert isinstance(outcome, NegotiateError)
    assert outcome.body == b'{"error":"The client requested a non-integer protocol version."}'


def test_vector_4_end_to_end_version_1() -> None:
    outcome = negotiate(b"negotiateVersion=1", transports=ALL)
    assert isinstance(outcome, NegotiateResponse)
    assert URL_SAFE_22.fullmatch(outcome.connection_id)
    assert URL_SAFE_22.fullmatch(outcome.connection_token)
    assert outcome.connection_token != outcome.connection_id
    assert outcome.body == (
        b'{"negotiateVersion":1,"connectionId":"'
        + outcome.connection_id.encode()
        + b'","connectionToken":"'
        + outcome.connection_token.encode()
        + b'",'
        + TRANSPORTS_JSON
        + b"}"
    )


def test_vector_4_end_to_end_without_query_is_version_0() -> None:
    outcome = negotiate("", transports=ALL)
    assert isinstance(outcome, NegotiateResponse)
    assert outcome.negotiate_version == 0
    # v0 clients (pysignalr, signalrcore) send the id where v1 clients send the token.
    assert outcome.connection_token == outcome.connection_id
    assert outcome.body == (
        b'{"negotiateVersion":0,"connectionId":"'
        + outcome.connection_id.encode()
        + b'",'
        + TRANSPORTS_JSON
        + b"}"
    )


# -- transports ----------------------------------------------------------------


def test_transports_are_listed_in_wire_order_whatever_the_input_order() -> None:
    response = NegotiateResponse(
        1, ID, TOKEN, [TransportType.LONG_POLLING, TransportType.WEBSOCKETS]
    )
    assert response.available_transports == (
        TransportType.WEBSOCKETS,
        TransportType.LONG_POLLING,
    )
    document = orjson.loads(response.body)
    assert document["availableTransports"] == [
        {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
        {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
    ]


def test_only_enabled_transports_are_listed() -> None:
    outcome = negotiate("negotiateVersion=1", transports={TransportType.SERVER_SENT_EVENTS})
    assert isinstance(outcome, NegotiateResponse)
    assert outcome.body.endswith(
        b'"availableTransports":[{"transport":"ServerSentEvents","transferFormats":["Text"]}]}'
    )


def test_no_transports_is_an_empty_list() -> None:
    assert NegotiateResponse(0, ID, ID, ()).body.endswith(b'"availableTransports":[]}')


def test_transfer_formats_of_transports() -> None:
    assert TransportType.SERVER_SENT_EVENTS.transfer_formats == (TransferFormat.TEXT,)
    both = (TransferFormat.TEXT, TransferFormat.BINARY)
    assert TransportType.WEBSOCKETS.transfer_formats == both
    assert TransportType.LONG_POLLING.transfer_formats == both


# -- stateful reconnect -----------------------------------------------------------


def test_stateful_reconnect_granted_comes_first() -> None:
    outcome = negotiate(
        "negotiateVersion=1&useStatefulReconnect=true",
        transports={TransportType.WEBSOCKETS},
        allow_stateful_reconnect=True,
    )
    assert isinstance(outcome, NegotiateResponse)
    assert outcome.use_stateful_reconnect
    assert outcome.body.startswith(b'{"useStatefulReconnect":true,"negotiateVersion":1,')


def test_stateful_reconnect_not_allowed_by_the_server() -> None:
    outcome = negotiate("negotiateVersion=1&useStatefulReconnect=true", transports=ALL)
    assert isinstance(outcome, NegotiateResponse)
    assert not outcome.use_stateful_reconnect
    assert b"useStatefulReconnect" not in outcome.body


def test_stateful_reconnect_not_asked_is_not_granted() -> None:
    # JS rejects a `true` it did not ask for.
    outcome = negotiate("negotiateVersion=1", transports=ALL, allow_stateful_reconnect=True)
    assert isinstance(outcome, NegotiateResponse)
    assert b"useStatefulReconnect" not in outcome.body


@pytest.mark.parametrize(
    ("value", "asked"),
    [("true", True), ("True", True), (" TRUE ", True), ("false", False), ("1", False), ("", False)],
)
def test_use_stateful_reconnect_parses_like_dotnet_bool(value: str, asked: bool) -> None:
    request = parse_negotiate_query({"negotiateVersion": "1", "UseStatefulReconnect": value})
    assert request == NegotiateRequest(1, use_stateful_reconnect=asked)


# -- the version --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "version"),
    [
        ("", 0),
        ("negotiateVersion=0", 0),
        ("negotiateVersion=1", 1),
        ("NegotiateVersion=1", 1),
        ("NEGOTIATEVERSION=1", 1),
        ("negotiateVersion=2", 1),
        ("negotiateVersion=2147483647", 1),
        ("negotiateVersion=+1", 1),
        ("negotiateVersion=%201%20", 1),
        ("negotiateVersion=007", 1),
        ("id=x&negotiateVersion=1&_=5", 1),
        ("negotiateversionX=5", 0),
    ],
)
def test_version_from_a_query_string(query: str, version: int) -> None:
    assert parse_negotiate_query(query) == NegotiateRequest(version)


@pytest.mark.parametrize(
    "value",
    ["abc", "", "1.0", "1e0", "1_0", "0x1", "\u0661", "2147483648", "1,1", "- 1", "one"],
)
def test_non_integer_versions(value: str) -> None:
    assert parse_negotiate_query({"negotiateVersion": value}) == NegotiateError(
        Texts.NEGOTIATE_NON_INTEGER
    )


def test_repeated_keys_join_like_string_values() -> None:
    # ASP.NET reads ?negotiateVersion=1&NegotiateVersion=1 as "1,1": not an integer.
    outcome = parse_negotiate_query("negotiateVersion=1&NegotiateVersion=1")
    assert outcome == NegotiateError(Texts.NEGOTIATE_NON_INTEGER)
    assert parse_negotiate_query({"negotiateVersion": ["1"]}) == NegotiateRequest(1)
    assert parse_negotiate_query({"negotiateVersion": ["1", "1"]}) == NegotiateError(
        Texts.NEGOTIATE_NON_INTEGER
    )


def test_below_the_minimum_version() -> None:
    outcome = parse_negotiate_query("negotiateVersion=0", minimum_version=1)
    assert outcome == NegotiateError(
        "The client requested version '0', but the server does not support this version."
    )
    assert isinstance(outcome, NegotiateError)
    assert outcome.body == (
        b'{"error":"The client requested version \'0\', but the server does not support '
        b'this version."}'
    )


def test_absent_version_is_0_against_the_minimum() -> None:
    assert parse_negotiate_query({}, minimum_version=1) == NegotiateError(
        Texts.negotiate_version_unsupported(0)
    )


def test_negative_version_is_below_the_default_minimum() -> None:
    assert parse_negotiate_query("negotiateVersion=-1") == NegotiateError(
        Texts.negotiate_version_unsupported(-1)
    )


def test_version_error_wins_over_everything_else() -> None:
    outcome = negotiate(
        "negotiateVersion=x&useStatefulReconnect=true",
        transports=ALL,
        allow_stateful_reconnect=True,
    )
    assert isinstance(outcome, NegotiateError)
    assert outcome.body == b'{"error":"The client requested a non-integer protocol version."}'


# -- ids ------------------------------------------------------------------------------


@given(st.integers(min_value=2, max_value=50))
def test_ids_are_22_url_safe_chars_and_unique(count: int) -> None:
    ids = [new_connection_id() for _ in range(count)]
    assert all(URL_SAFE_22.fullmatch(value) for value in ids)
    assert len(set(ids)) == count


@given(st.sampled_from(["", "negotiateVersion=0", "negotiateVersion=1", "negotiateVersion=9"]))
def test_negotiated_ids_are_22_url_safe_chars(query: str) -> None:
    outcome = negotiate(query, transports=ALL)
    assert isinstance(outcome, NegotiateResponse)
    assert URL_SAFE_22.fullmatch(outcome.connection_id)
    assert URL_SAFE_22.fullmatch(outcome.connection_token)
    assert (outcome.connection_token == outcome.connection_id) == (outcome.negotiate_version == 0)


def test_version_0_response_must_reuse_the_id_as_token() -> None:
    with pytest.raises(ValueError, match="connection_token must equal"):
        NegotiateResponse(0, ID, TOKEN, ALL)
