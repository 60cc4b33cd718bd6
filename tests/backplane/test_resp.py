"""RESP2 for the backplane's hot paths: exact bytes out, every reply shape in,
whatever way the stream is cut."""

from __future__ import annotations

import pytest

from triohub.backplane.resp import (
    NEED_DATA,
    RespError,
    RespParser,
    RespProtocolError,
    command,
    publish,
)


def test_a_command_is_an_array_of_bulk_strings() -> None:
    assert command(b"SUBSCRIBE", b"P:user:bob", b"P:all") == (
        b"*3\r\n$9\r\nSUBSCRIBE\r\n$10\r\nP:user:bob\r\n$5\r\nP:all\r\n"
    )


def test_publish_is_the_same_bytes_as_the_general_command() -> None:
    data = b"\x93\x90\x82binary\r\n\x00"
    assert publish(b"P:user:bob", data) == command(b"PUBLISH", b"P:user:bob", data)
    assert publish(b"c", b"") == b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$0\r\n\r\n"


STREAM = (
    b":2\r\n"
    b"+OK\r\n"
    b"-WRONGPASS invalid username-password pair\r\n"
    b"$-1\r\n"
    b"*3\r\n$7\r\nmessage\r\n$5\r\nP:all\r\n$6\r\na\r\nb\x00c\r\n"
    b"*3\r\n$7\r\nmessage\r\n$4\r\na\r\nb\r\n$3\r\n$\r\n\r\n"
    b"*2\r\n*1\r\n:-7\r\n$0\r\n\r\n"
    b"*-1\r\n"
)
VALUES = [
    2,
    b"OK",
    RespError("WRONGPASS invalid username-password pair"),
    None,
    [b"message", b"P:all", b"a\r\nb\x00c"],
    [b"message", b"a\r\nb", b"$\r\n"],
    [[-7], b""],
    None,
]


def drain(parser: RespParser) -> list[object]:
    values = []
    while (value := parser.next()) is not NEED_DATA:
        values.append(value)
    return values


def test_every_reply_shape_in_one_feed() -> None:
    parser = RespParser()
    parser.feed(STREAM)
    assert drain(parser) == VALUES


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11])
def test_the_same_replies_fed_in_small_pieces(size: int) -> None:
    parser = RespParser()
    values: list[object] = []
    for start in range(0, len(STREAM), size):
        parser.feed(STREAM[start : start + size])
        values += drain(parser)
    assert values == VALUES


def test_an_incomplete_reply_waits_for_its_end() -> None:
    parser = RespParser()
    parser.feed(b"*3\r\n$7\r\nmessage\r\n$5\r\nP:all\r\n$6\r\na\r\nb")
    assert parser.next() is NEED_DATA
    parser.feed(b"\x00c\r")
    assert parser.next() is NEED_DATA
    parser.feed(b"\n:1\r\n")
    assert drain(parser) == [[b"message", b"P:all", b"a\r\nb\x00c"], 1]


@pytest.mark.parametrize(
    "garbage",
    [
        b"!3\r\n",
        b":x1\r\n",
        b"$abc\r\nxx\r\n",
        b"*?\r\n",
        b"*3\r\n$7\r\nmessage\r\n$x\r\n",
        b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$-x\r\n",
    ],
)
def test_bytes_that_are_not_resp_raise(garbage: bytes) -> None:
    parser = RespParser()
    parser.feed(garbage)
    with pytest.raises(RespProtocolError):
        parser.next()
