"""``FrameChecker``: the frame rules of ``FrameDecoder`` without decoding, for a
server whose own decoder drops the connection without a close code (hypercorn).

It must agree with the decoder: silent on every valid client stream (wsproto's,
chunked anyhow), and the same close code on every violation it can see without
unmasking data payloads (all but text that is not UTF-8, which stays wsproto's).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triohub.protocol.websocket import FrameChecker, WebSocketError

from .test_websocket_frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    ERRORS,
    INVALID_CODES,
    MASK,
    PING,
    TEXT,
    conversations,
    raw_frame,
)

SEEN = {name: case for name, case in ERRORS.items() if case[1] != 1007}
"""The violations visible without unmasking data payloads."""


def check(data: bytes, sizes: list[int]) -> None:
    checker = FrameChecker()
    pos = 0
    for size in sizes:
        checker.feed(data[pos : pos + size])
        pos += size
    checker.feed(data[pos:])


@given(conversations(), st.lists(st.integers(0, 64), max_size=30))
def test_silent_on_valid_client_streams(conv: tuple[bytes, object], sizes: list[int]) -> None:
    wire, _ = conv
    check(wire, [])
    check(wire, sizes)
    check(wire, [1] * len(wire))


@pytest.mark.parametrize(("data", "code"), list(SEEN.values()), ids=list(SEEN))
@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_the_decoders_close_codes(data: bytes, code: int, chunk: int | None) -> None:
    sizes = [] if chunk is None else [chunk] * (len(data) // chunk + 1)
    with pytest.raises(WebSocketError) as info:
        check(data, sizes)
    assert info.value.code == code


@pytest.mark.parametrize("code", INVALID_CODES)
def test_close_payloads_are_checked(code: int) -> None:
    with pytest.raises(WebSocketError) as info:
        FrameChecker().feed(raw_frame(CLOSE, struct.pack("!H", code)))
    assert info.value.code == 1002
    with pytest.raises(WebSocketError) as info:
        FrameChecker().feed(raw_frame(CLOSE, struct.pack("!H", 1000) + b"\xff"))
    assert info.value.code == 1007


def test_data_payloads_are_skipped_not_kept() -> None:
    """A large message in small reads: the checker holds at most a frame head."""
    checker = FrameChecker()
    wire = raw_frame(BINARY, bytes(200_000), fin=False) + raw_frame(CONTINUATION, b"end")
    for start in range(0, len(wire), 1000):
        checker.feed(wire[start : start + 1000])
        assert len(checker._buffer) < 14
    # A violation after the skipped payload is still seen.
    with pytest.raises(WebSocketError):
        checker.feed(raw_frame(CONTINUATION, b"x"))


def test_a_head_split_anywhere() -> None:
    wire = b"\x82\xff" + struct.pack("!Q", 70_000) + MASK + bytes(70_000) + raw_frame(TEXT, b"ok")
    for cut in range(1, 16):
        checker = FrameChecker()
        checker.feed(wire[:cut])
        checker.feed(wire[cut:])


def test_permessage_deflate_allows_rsv1_on_a_messages_first_frame_only() -> None:
    first = raw_frame(TEXT, b"x", fin=False, rsv=0x40)
    FrameChecker(compressed=True).feed(first + raw_frame(CONTINUATION, b"y"))
    FrameChecker(compressed=True).feed(raw_frame(BINARY, b"z", rsv=0x40))
    for wrong in (
        first + raw_frame(CONTINUATION, b"y", rsv=0x40),
        raw_frame(PING, b"", rsv=0x40),
        raw_frame(TEXT, b"x", rsv=0x20),
    ):
        with pytest.raises(WebSocketError) as info:
            FrameChecker(compressed=True).feed(wrong)
        assert info.value.code == 1002
