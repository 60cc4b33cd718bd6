"""``ResumableStream``: stateful reconnect's sequencing, replay buffer and Ack pacing.

Synchronous and exact: times are plain numbers passed in, frames are the
protocol's real bytes. The wire behaviour checked here is the official
client's (``MessageBuffer.ts``): ids from 1 per direction for types 1-5 only,
a Sequence naming the first unacknowledged id, Acks that free everything up to
their id. ``test_resumable_properties.py`` drives two of them over a cut-prone
link with hypothesis.
"""

from __future__ import annotations

import pytest

from triohub.hub.options import HubOptions
from triohub.protocol import (
    DEFAULT_BUFFER_SIZE,
    SEQUENCED_TYPES,
    Ack,
    CancelInvocation,
    Close,
    Completion,
    Invocation,
    JsonHubProtocol,
    LocalProtocolError,
    MessagePackHubProtocol,
    MessageType,
    Ping,
    RemoteProtocolError,
    ResumableStream,
    Sequence,
    StreamInvocation,
    StreamItem,
    Texts,
)
from triohub.protocol.messages import HubMessage

JSON = JsonHubProtocol()
MSGPACK = MessagePackHubProtocol()


def send(stream: ResumableStream, message: HubMessage) -> bytes | None:
    return stream.send(message.type, JSON.encode(message))


def item(n: int) -> StreamItem:
    return StreamItem("s", n)


# -- which messages are sequenced ---------------------------------------------------------


def test_types_1_to_5_are_sequenced_and_nothing_else() -> None:
    assert {int(kind) for kind in SEQUENCED_TYPES} == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    "message",
    [
        Invocation("m", [1], invocation_id="1"),
        StreamItem("1", "x"),
        Completion.with_result("1", None),
        StreamInvocation("1", "m"),
        CancelInvocation("1"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_a_sequenced_send_is_numbered_and_buffered(message: HubMessage) -> None:
    stream = ResumableStream(JSON)
    frame = JSON.encode(message)
    assert stream.send(message.type, frame) == frame
    assert (stream.sent_count, stream.buffered_count, stream.buffered_bytes) == (1, 1, len(frame))


@pytest.mark.parametrize("message", [Ping(), Close(), Ack(1), Sequence(1)], ids=repr)
def test_other_sends_pass_through_unnumbered(message: HubMessage) -> None:
    stream = ResumableStream(JSON)
    frame = JSON.encode(message)
    assert stream.send(message.type, frame) == frame
    assert (stream.sent_count, stream.buffered_count, stream.buffered_bytes) == (0, 0, 0)


# -- the replay buffer ---------------------------------------------------------------


def test_an_ack_frees_everything_up_to_its_id() -> None:
    stream = ResumableStream(JSON)
    frames = [JSON.encode(item(n)) for n in range(5)]
    for frame in frames:
        stream.send(MessageType.STREAM_ITEM, frame)
    assert not stream.receive(Ack(3), now=0.0)  # consumed, not for the hub
    assert stream.buffered_count == 2
    assert stream.buffered_bytes == len(frames[3]) + len(frames[4])
    assert stream.resume()[1:] == frames[3:]


def test_an_old_ack_changes_nothing() -> None:
    stream = ResumableStream(JSON)
    for n in range(3):
        send(stream, item(n))
    stream.receive(Ack(2), now=0.0)
    stream.receive(Ack(1), now=0.0)
    stream.receive(Ack(0), now=0.0)
    assert stream.buffered_count == 1


def test_an_ack_for_a_record_never_sent_is_a_protocol_error() -> None:
    stream = ResumableStream(JSON)
    send(stream, item(0))
    with pytest.raises(RemoteProtocolError, match="Ack for sequence ID 2, but only 1") as caught:
        stream.receive(Ack(2), now=0.0)
    assert caught.value.close == Close("Connection closed with an error.", allow_reconnect=True)


def test_full_at_the_limit_and_never_past_it_plus_one_record() -> None:
    frame = JSON.encode(item("x" * 20))
    stream = ResumableStream(JSON, buffer_size=3 * len(frame) - 1)
    for _ in range(2):
        stream.send(MessageType.STREAM_ITEM, frame)
        assert not stream.full
    # The third record takes the buffer past its limit: allowed, then full.
    stream.send(MessageType.STREAM_ITEM, frame)
    assert stream.full
    assert stream.buffered_bytes == 3 * len(frame)
    with pytest.raises(LocalProtocolError, match="replay buffer is full"):
        stream.send(MessageType.STREAM_ITEM, frame)
    assert stream.sent_count == 3  # the refused record got no id
    # Pings, Acks and Closes still go while full.
    assert stream.send(MessageType.PING, JSON.encode(Ping())) is not None
    stream.receive(Ack(1), now=0.0)
    assert not stream.full
    stream.send(MessageType.STREAM_ITEM, frame)
    assert stream.full


def test_one_record_bigger_than_the_whole_buffer_still_goes() -> None:
    stream = ResumableStream(JSON, buffer_size=10)
    big = JSON.encode(item("y" * 100))
    assert stream.send(MessageType.STREAM_ITEM, big) == big
    assert stream.full
    stream.receive(Ack(1), now=0.0)
    assert (stream.full, stream.buffered_bytes) == (False, 0)


def test_the_default_buffer_is_100_000_bytes_here_and_in_hub_options() -> None:
    frame = b"x" * 1000
    stream = ResumableStream(JSON)
    for _ in range(99):
        stream.send(MessageType.INVOCATION, frame)
    assert not stream.full
    stream.send(MessageType.INVOCATION, frame)
    assert stream.full
    assert DEFAULT_BUFFER_SIZE == HubOptions().stateful_reconnect_buffer_size == 100_000


def test_hub_options_keep_stateful_reconnect_opt_in() -> None:
    assert HubOptions().allow_stateful_reconnect is False
    assert HubOptions(stateful_reconnect_buffer_size=4096).stateful_reconnect_buffer_size == 4096
    with pytest.raises(ValueError, match="stateful_reconnect_buffer_size"):
        HubOptions(stateful_reconnect_buffer_size=0)


@pytest.mark.parametrize("size", [0, -1, True, 1.5])
def test_buffer_size_must_be_a_positive_integer(size: object) -> None:
    with pytest.raises(ValueError, match="buffer_size"):
        ResumableStream(JSON, buffer_size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("interval", [0, -1.0, float("nan")])
def test_ack_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ValueError, match="ack_interval"):
        ResumableStream(JSON, ack_interval=interval)


# -- detach and resume ----------------------------------------------------------------


def test_resume_writes_a_sequence_first_then_the_unacknowledged_records() -> None:
    stream = ResumableStream(JSON)
    frames = [JSON.encode(item(n)) for n in range(4)]
    for frame in frames[:3]:
        stream.send(MessageType.STREAM_ITEM, frame)
    stream.receive(Ack(1), now=0.0)
    stream.detach()
    assert not stream.attached
    # While detached, sequenced records wait in the buffer; the rest is not kept.
    assert stream.send(MessageType.STREAM_ITEM, frames[3]) is None
    assert stream.send(MessageType.PING, JSON.encode(Ping())) is None
    assert stream.resume() == [b'{"type":9,"sequenceId":2}\x1e', *frames[1:]]
    assert stream.attached
    # The resent records stay buffered until acknowledged.
    assert stream.buffered_count == 3


def test_resume_with_nothing_unacknowledged_still_sends_a_sequence() -> None:
    stream = ResumableStream(MSGPACK)
    assert stream.resume() == [bytes.fromhex("03 92 09 01")]
    for n in range(3):
        stream.send(MessageType.STREAM_ITEM, MSGPACK.encode(item(n)))
    stream.receive(Ack(3), now=0.0)
    stream.detach()
    # The next new record will be #4.
    assert stream.resume() == [bytes.fromhex("03 92 09 04")]


def test_resume_without_detach_replays_too() -> None:
    # The client may reconnect before the server sees the old socket fail.
    stream = ResumableStream(JSON)
    frame = JSON.encode(item(0))
    stream.send(MessageType.STREAM_ITEM, frame)
    assert stream.resume() == [b'{"type":9,"sequenceId":1}\x1e', frame]
    assert stream.resume() == [b'{"type":9,"sequenceId":1}\x1e', frame]


# -- incoming sequencing ----------------------------------------------------------------


def test_incoming_records_are_numbered_and_others_dispatched_unnumbered() -> None:
    stream = ResumableStream(JSON)
    assert stream.receive(Invocation("m", [], invocation_id="1"), now=0.0)
    assert stream.receive(Ping(), now=0.0)
    assert stream.receive(CancelInvocation("1"), now=0.0)
    assert stream.receive(Close(), now=0.0)
    assert stream.latest_received == 2


def test_a_resend_after_the_peers_sequence_drops_what_was_seen() -> None:
    stream = ResumableStream(JSON)
    calls = [Invocation("m", [n]) for n in range(1, 6)]
    for call in calls[:3]:
        assert stream.receive(call, now=0.0)
    # The peer lost our Ack: it resumes from #2 and resends #2..#5.
    assert not stream.receive(Sequence(2), now=1.0)
    assert [stream.receive(call, now=1.0) for call in calls[1:]] == [False, False, True, True]
    assert stream.latest_received == 5


def test_a_sequence_at_the_next_id_drops_nothing() -> None:
    stream = ResumableStream(JSON)
    stream.receive(Invocation("m", [1]), now=0.0)
    stream.receive(Sequence(2), now=0.0)
    assert stream.receive(Invocation("m", [2]), now=0.0)
    assert stream.latest_received == 2


def test_a_sequence_past_what_was_received_is_a_protocol_error() -> None:
    # The peer would skip record #2, which never arrived: the reference's text.
    stream = ResumableStream(JSON)
    stream.receive(Invocation("m", [1]), now=0.0)
    with pytest.raises(RemoteProtocolError) as caught:
        stream.receive(Sequence(3), now=0.0)
    assert str(caught.value) == Texts.SEQUENCE_AHEAD
    assert str(caught.value) == "Sequence ID greater than amount of messages we've received."


def test_a_second_cut_during_the_resend_may_resume_past_the_resend() -> None:
    # We acknowledged #3, the peer resent #1-#3 after a cut, a second cut came
    # after #1's resend: the peer freed #1-#3 on our Ack and resumes at #4.
    # The reference (and the JS client as receiver) stops the connection here.
    stream = ResumableStream(JSON)
    calls = [Invocation("m", [n]) for n in range(1, 5)]
    for call in calls[:3]:
        stream.receive(call, now=0.0)
    assert stream.ack(now=1.0) == b'{"type":8,"sequenceId":3}\x1e'
    stream.receive(Sequence(1), now=2.0)
    assert not stream.receive(calls[0], now=2.0)
    stream.receive(Sequence(4), now=3.0)
    assert stream.receive(calls[3], now=3.0)
    assert stream.latest_received == 4


@pytest.mark.parametrize("sequence_id", [0, -1, -(2**63)])
def test_a_sequence_below_1_is_a_protocol_error(sequence_id: int) -> None:
    stream = ResumableStream(JSON)
    with pytest.raises(RemoteProtocolError, match="not positive"):
        stream.receive(Sequence(sequence_id), now=0.0)


# -- Ack pacing --------------------------------------------------------------------------


def test_no_ack_while_nothing_arrived() -> None:
    stream = ResumableStream(JSON)
    stream.receive(Ping(), now=0.0)
    assert stream.ack_deadline is None
    assert stream.ack(now=100.0) is None


def test_an_ack_is_due_a_second_after_the_first_new_record_and_covers_all() -> None:
    stream = ResumableStream(JSON)
    stream.receive(Invocation("m", [1]), now=10.0)
    stream.receive(Invocation("m", [2]), now=10.5)
    assert stream.ack_deadline == 11.0
    assert stream.ack(now=10.99) is None
    stream.receive(Invocation("m", [3]), now=10.995)
    assert stream.ack(now=11.0) == b'{"type":8,"sequenceId":3}\x1e'
    assert stream.ack_deadline is None
    assert stream.ack(now=50.0) is None  # nothing new since


def test_acks_are_at_least_the_interval_apart() -> None:
    stream = ResumableStream(MSGPACK, ack_interval=0.25)
    stream.receive(StreamItem("1", 0), now=0.0)
    assert stream.ack(now=0.25) == bytes.fromhex("03 92 08 01")
    stream.receive(StreamItem("1", 1), now=0.25)
    assert stream.ack_deadline == 0.5
    assert stream.ack(now=0.4) is None
    assert stream.ack(now=0.5) == bytes.fromhex("03 92 08 02")


def test_a_due_ack_waits_while_detached_and_goes_after_resume() -> None:
    stream = ResumableStream(JSON)
    stream.receive(Invocation("m", [1]), now=0.0)
    stream.detach()
    assert stream.ack(now=5.0) is None
    assert stream.resume() == [b'{"type":9,"sequenceId":1}\x1e']
    assert stream.ack(now=5.0) == b'{"type":8,"sequenceId":1}\x1e'


def test_a_resend_of_seen_records_is_acknowledged_again() -> None:
    # Our Ack for #1-#2 went out, then the transport dropped and the peer never
    # read it: without a new Ack its buffer would hold them for ever.
    stream = ResumableStream(JSON)
    stream.receive(Invocation("m", [1]), now=0.0)
    stream.receive(Invocation("m", [2]), now=0.0)
    assert stream.ack(now=1.0) == b'{"type":8,"sequenceId":2}\x1e'
    stream.resume()
    stream.receive(Sequence(1), now=3.0)
    assert stream.ack_deadline == 4.0
    stream.receive(Invocation("m", [1]), now=3.1)
    stream.receive(Invocation("m", [2]), now=3.1)
    assert stream.ack(now=4.0) == b'{"type":8,"sequenceId":2}\x1e'
