"""RFC 6455 framing of ``triohub.protocol.websocket``, checked against wsproto as the client.

* server frames we encode are read back by wsproto's client-side frame parser;
* masked, fragmented, interleaved frames written by wsproto's client decode to the
  expected events, however the byte stream is chunked;
* every protocol violation raises ``WebSocketError`` with the close code RFC 6455 asks for.
"""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from triohub.protocol.websocket import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    ControlFrame,
    FrameDecoder,
    Message,
    WebSocketError,
    accept_key,
    close_frame,
    encode_frame,
    parse_close,
    valid_key,
)

Event = Message | ControlFrame
CONTINUATION = 0x0
MASK = b"\x37\xfa\x21\x3d"
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]


def raw_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = MASK,
) -> bytes:
    """A client frame built by hand (``mask=None``: unmasked), for the error cases."""
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if mask is not None else 0
    size = len(payload)
    if size < 126:
        header = bytes((first, mask_bit | size))
    elif size < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if mask is None:
        return header + payload
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def feed_chunks(data: bytes, sizes: list[int], limit: int | None = None) -> list[Event]:
    """Feed ``data`` to a fresh decoder in chunks of the given sizes (then the rest)."""
    decoder = FrameDecoder(max_message_size=limit)
    events: list[Event] = []
    pos = 0
    for size in sizes:
        events += decoder.feed(data[pos : pos + size])
        pos += size
    events += decoder.feed(data[pos:])
    return events


def decode_error(data: bytes, limit: int | None = None) -> WebSocketError:
    with pytest.raises(WebSocketError) as info:
        FrameDecoder(max_message_size=limit).feed(data)
    return info.value


def wsproto_read(data: bytes) -> list[tuple[Opcode, object]]:
    """Frames as wsproto's client parser sees our server bytes (each one a whole message)."""
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(data)
    frames = list(client.received_frames())
    assert all(frame.message_finished for frame in frames)
    return [(frame.opcode, frame.payload) for frame in frames]


# --- handshake keys --------------------------------------------------------------------


def test_accept_key_rfc6455_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("dGhlIHNhbXBsZSBub25jZQ==", True),
        (base64.b64encode(bytes(range(16))).decode(), True),
        (" AAAAAAAAAAAAAAAAAAAAAA== ", True),  # surrounding spaces are stripped
        ("", False),
        (base64.b64encode(bytes(15)).decode(), False),  # 15 bytes
        (base64.b64encode(bytes(17)).decode(), False),  # 17 bytes
        ("dGhlIHNhbXBsZSBub25jZQ", False),  # padding missing
        ("dGhlIHNhbXBsZSBub25j!Q==", False),  # not the base64 alphabet
        ("dGhlIHNhbXBsZSBub25jZQ==dGhl", False),  # data after the padding
        ("dGhlIHNhbXBsZSBub25jZé==", False),  # not ASCII
    ],
)
def test_valid_key(key: str, ok: bool) -> None:
    assert valid_key(key) is ok


# --- server frames -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x82\x00"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_encode_frame_header(size: int, header: bytes) -> None:
    payload = bytes(i % 251 for i in range(size))
    frame = encode_frame(BINARY, payload)
    assert frame == header + payload
    assert wsproto_read(frame) == [(Opcode.BINARY, payload)]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_encode_text_frame_read_by_wsproto(size: int) -> None:
    text = ("aé€😀" * size)[:size]
    assert wsproto_read(encode_frame(TEXT, text.encode())) == [(Opcode.TEXT, text)]


@given(st.lists(st.one_of(st.binary(max_size=70_000), st.text(max_size=300)), max_size=4))
def test_server_frames_read_by_wsproto(messages: list[bytes | str]) -> None:
    data = b"".join(
        encode_frame(TEXT, m.encode()) if isinstance(m, str) else encode_frame(BINARY, m)
        for m in messages
    )
    expected = [(Opcode.TEXT if isinstance(m, str) else Opcode.BINARY, m) for m in messages]
    assert wsproto_read(data) == expected


def test_server_control_frames_read_by_wsproto() -> None:
    data = encode_frame(PING, b"p") + encode_frame(PONG, b"") + close_frame(1000, "bye ✓")
    assert wsproto_read(data) == [
        (Opcode.PING, b"p"),
        (Opcode.PONG, b""),
        (Opcode.CLOSE, (1000, "bye ✓")),
    ]


# --- client frames from wsproto --------------------------------------------------------


@st.composite
def conversations(draw: st.DrawFn) -> tuple[bytes, list[Event]]:
    """wsproto client bytes: fragmented messages with control frames between fragments."""
    client = FrameProtocol(client=True, extensions=[])
    wire = bytearray()
    expected: list[Event] = []

    def control() -> None:
        kind = draw(st.sampled_from([PING, PONG, CLOSE]))
        if kind == CLOSE:
            code, reason = draw(st.sampled_from(VALID_CODES)), draw(st.text(max_size=30))
            wire.extend(client.close(code, reason))
            payload = struct.pack("!H", code) + reason.encode()
        else:
            payload = draw(st.binary(max_size=125))
            wire.extend(client.ping(payload) if kind == PING else client.pong(payload))
        expected.append(ControlFrame(kind, payload))

    for _ in range(draw(st.integers(0, 4))):
        data: bytes | str = draw(st.one_of(st.binary(max_size=400), st.text(max_size=100)))
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
        bounds = [0, *cuts, len(data)]
        for i in range(len(bounds) - 1):
            if i and draw(st.booleans()):
                control()
            wire.extend(client.send_data(data[bounds[i] : bounds[i + 1]], fin=i == len(bounds) - 2))
        payload = data.encode() if isinstance(data, str) else data
        expected.append(Message(TEXT if isinstance(data, str) else BINARY, payload))
        if draw(st.booleans()):
            control()
    return bytes(wire), expected


@given(conversations(), st.lists(st.integers(0, 64), max_size=30))
def test_decoder_reads_wsproto_client(conv: tuple[bytes, list[Event]], sizes: list[int]) -> None:
    """All at once, in arbitrary chunks, or a byte at a time: the same events."""
    wire, expected = conv
    assert feed_chunks(wire, []) == expected
    assert feed_chunks(wire, sizes) == expected
    assert feed_chunks(wire, [1] * len(wire)) == expected


def test_decoder_interleaved_example() -> None:
    client = FrameProtocol(client=True, extensions=[])
    wire = b"".join(
        [
            client.send_data("hé", fin=False),
            client.ping(b"1"),
            client.send_data("llo", fin=False),
            client.pong(b""),
            client.send_data("!", fin=True),
            client.send_data(b"\x00" * 70_000, fin=False),
            client.close(1001, "going"),
            client.send_data(b"\xff", fin=True),
        ]
    )
    assert FrameDecoder().feed(wire) == [
        ControlFrame(PING, b"1"),
        ControlFrame(PONG, b""),
        Message(TEXT, "héllo!".encode()),
        ControlFrame(CLOSE, b"\x03\xe9going"),
        Message(BINARY, b"\x00" * 70_000 + b"\xff"),
    ]


@given(st.text(), st.data())
def test_utf8_split_anywhere_across_fragments(text: str, data: st.DataObject) -> None:
    encoded = text.encode()
    cut = data.draw(st.integers(0, len(encoded)))
    wire = raw_frame(TEXT, encoded[:cut], fin=False) + raw_frame(CONTINUATION, encoded[cut:])
    assert FrameDecoder().feed(wire) == [Message(TEXT, encoded)]


# --- protocol errors -------------------------------------------------------------------

ERRORS = {
    "unmasked": (encode_frame(TEXT, b"hi"), 1002),
    "unmasked empty": (raw_frame(BINARY, mask=None), 1002),
    "rsv1": (raw_frame(TEXT, b"x", rsv=0x40), 1002),
    "rsv2": (raw_frame(TEXT, b"x", rsv=0x20), 1002),
    "rsv3": (raw_frame(PING, b"", rsv=0x10), 1002),
    "fragmented ping": (raw_frame(PING, b"", fin=False), 1002),
    "fragmented close": (raw_frame(CLOSE, b"\x03\xe8", fin=False), 1002),
    "ping over 125": (raw_frame(PING, bytes(126)), 1002),
    "close over 125": (raw_frame(CLOSE, b"\x03\xe8" + bytes(124)), 1002),
    "continuation first": (raw_frame(CONTINUATION, b"x"), 1002),
    "unfinished continuation first": (raw_frame(CONTINUATION, b"x", fin=False), 1002),
    "continuation after finished": (raw_frame(TEXT, b"a") + raw_frame(CONTINUATION, b"b"), 1002),
    "text inside fragmented": (raw_frame(TEXT, b"a", fin=False) + raw_frame(TEXT, b"b"), 1002),
    "binary inside fragmented": (raw_frame(TEXT, b"a", fin=False) + raw_frame(BINARY, b"b"), 1002),
    "invalid utf-8": (raw_frame(TEXT, b"ok\xff"), 1007),
    "surrogate in utf-8": (raw_frame(TEXT, b"\xed\xa0\x80"), 1007),
    "truncated utf-8": (raw_frame(TEXT, "€".encode()[:2]), 1007),
    "invalid utf-8 across fragments": (
        raw_frame(TEXT, b"\xe2\x82", fin=False) + raw_frame(CONTINUATION, b"\x28"),
        1007,
    ),
    "64-bit length high bit": (b"\x82\xff" + struct.pack("!Q", 1 << 63) + MASK, 1002),
}
ERRORS |= {
    f"opcode {op:#x}": (raw_frame(op, b"x"), 1002) for op in [*range(0x3, 0x8), *range(0xB, 0x10)]
}


@pytest.mark.parametrize(("data", "code"), list(ERRORS.values()), ids=list(ERRORS))
def test_protocol_errors(data: bytes, code: int) -> None:
    assert decode_error(data).code == code


def test_header_errors_need_no_payload() -> None:
    assert decode_error(b"\x81\x05").code == 1002  # unmasked, payload not sent yet
    assert decode_error(b"\x83\x85").code == 1002  # unknown opcode
    assert decode_error(b"\x89\xfe\x00\x7e" + MASK).code == 1002  # ping over 125


def test_error_after_valid_frames_in_a_later_feed() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(raw_frame(TEXT, b"a", fin=False)) == []
    assert decoder.feed(raw_frame(PING, b"p")) == [ControlFrame(PING, b"p")]
    with pytest.raises(WebSocketError) as info:
        decoder.feed(raw_frame(BINARY, b"b"))
    assert info.value.code == 1002


def test_max_message_size() -> None:
    assert FrameDecoder(max_message_size=10).feed(raw_frame(BINARY, bytes(10))) == [
        Message(BINARY, bytes(10))
    ]
    fragments = raw_frame(TEXT, b"x" * 6, fin=False) + raw_frame(CONTINUATION, b"y" * 4)
    assert FrameDecoder(max_message_size=10).feed(fragments) == [Message(TEXT, b"x" * 6 + b"y" * 4)]
    # Control frames are not data messages, and the count restarts with each message.
    wire = raw_frame(PING, bytes(125)) + fragments + raw_frame(BINARY, bytes(10)) + fragments
    assert len(FrameDecoder(max_message_size=10).feed(wire)) == 4

    assert decode_error(raw_frame(BINARY, bytes(11)), limit=10).code == 1009
    too_big = raw_frame(TEXT, b"x" * 6, fin=False) + raw_frame(CONTINUATION, b"y" * 5)
    assert decode_error(too_big, limit=10).code == 1009
    many = b"".join(
        raw_frame(BINARY if i == 0 else CONTINUATION, b"z", fin=False) for i in range(11)
    )
    assert decode_error(many, limit=10).code == 1009
    # Refused from the header alone: the 2**40-byte payload never has to arrive.
    assert decode_error(b"\x82\xff" + struct.pack("!Q", 1 << 40) + MASK, limit=10).code == 1009


def test_empty_fragments_count_toward_the_size_limit() -> None:
    """An endless run of empty fragments would otherwise never reach the limit
    (nor end the message): each counts as one byte."""
    empty = raw_frame(TEXT, b"", fin=False) + raw_frame(CONTINUATION, b"", fin=False) * 200
    assert decode_error(empty, limit=100).code == 1009
    # Fed one frame at a time, too: refused by the 200th at the latest.
    decoder = FrameDecoder(max_message_size=100)
    assert decoder.feed(raw_frame(TEXT, b"", fin=False)) == []
    fed = 0
    with pytest.raises(WebSocketError) as info:  # noqa: PT012
        while fed < 200:
            decoder.feed(raw_frame(CONTINUATION, b"", fin=False))
            fed += 1
    assert info.value.code == 1009
    # A few empty fragments within the limit still make a message.
    few = raw_frame(TEXT, b"", fin=False) + raw_frame(CONTINUATION, b"", fin=False) * 10
    assert FrameDecoder(max_message_size=100).feed(few + raw_frame(CONTINUATION, b"ok")) == [
        Message(TEXT, b"ok")
    ]


# --- close frames ----------------------------------------------------------------------


def test_parse_close_empty() -> None:
    assert parse_close(b"") == (1005, "")


CLOSE_ERRORS = [
    (b"\x03", 1002),  # one byte
    *[(struct.pack("!H", code) + b"reason", 1002) for code in INVALID_CODES],
    *[(b"\x03\xe8" + reason, 1007) for reason in (b"\xff", b"ok\xc3", b"\xed\xa0\x80")],
]


@pytest.mark.parametrize(("payload", "code"), CLOSE_ERRORS)
def test_parse_close_errors(payload: bytes, code: int) -> None:
    with pytest.raises(WebSocketError) as info:
        parse_close(payload)
    assert info.value.code == code


@pytest.mark.parametrize("code", VALID_CODES)
@pytest.mark.parametrize("reason", ["", "bye", "fermé ✓ 😀"])
def test_parse_close_valid(code: int, reason: str) -> None:
    assert parse_close(struct.pack("!H", code) + reason.encode()) == (code, reason)


def _close_payload(frame: bytes) -> bytes:
    assert frame[0] == 0x80 | CLOSE
    assert frame[1] == len(frame) - 2 <= 125  # unmasked, one-byte length
    return frame[2:]


@pytest.mark.parametrize(
    ("reason", "sent"),
    [
        ("", ""),
        ("bye", "bye"),
        ("x" * 123, "x" * 123),
        ("x" * 200, "x" * 123),  # cut to fit the 125-byte control frame limit
        ("é" * 61 + "x", "é" * 61 + "x"),  # exactly 123 bytes
        ("é" * 62, "é" * 61),  # 124 bytes: the cut must not split the last "é"
        ("ab" + "😀" * 31, "ab" + "😀" * 30),  # 126 bytes: no half emoji
    ],
    ids=["empty", "short", "123 ascii", "200 ascii", "123 utf-8", "124 utf-8", "126 utf-8"],
)
def test_close_frame_round_trip(reason: str, sent: str) -> None:
    assert parse_close(_close_payload(close_frame(1000, reason))) == (1000, sent)


@given(st.sampled_from(VALID_CODES), st.text(max_size=100))
def test_close_frame_round_trip_any_reason(code: int, reason: str) -> None:
    """Long reasons are cut to fit 125 bytes, but never inside a UTF-8 character."""
    parsed_code, parsed_reason = parse_close(_close_payload(close_frame(code, reason)))
    assert parsed_code == code
    if len(reason.encode()) <= 123:
        assert parsed_reason == reason
    else:
        assert reason.startswith(parsed_reason)
        assert 123 - 4 < len(parsed_reason.encode()) <= 123
