"""Stateful reconnect: one connection's sequence numbers and replay buffer (sans-IO).

Once negotiate granted ``useStatefulReconnect`` and the handshake asked for
version 2, both sides number the records of types 1-5 (Invocation, StreamItem,
Completion, StreamInvocation, CancelInvocation) per direction, from 1 up by 1,
keep what they sent until the peer acknowledges it, and after a dropped
transport pick up where they were::

    server                                  client
      |-- StreamItem (#41) ------------x        (cut: #41 lost)
      |<============ new WebSocket, same id=, no handshake ==========|
      |-- Sequence{41}, StreamItem (#41) -->    resend from the first unacked id
      |<-- Sequence{7}, Invocation (#7) ----    the client's resend; seen ids dropped
      |<-- Ack{41} -------------------------    about a second later

``ResumableStream`` holds that state for one connection, server side, and does
no I/O and reads no clock: times are passed in. It mirrors the official
client's ``MessageBuffer.ts`` and the server's ``MessageBuffer.cs`` where the
wire is concerned. It is stricter where they trust the peer (an Ack for a
record never sent, a Sequence below 1), and more careful where they can stall
or fail: a resend of records we already had is acknowledged again, so the
peer's buffer empties; and a peer's Sequence is checked against what we
received rather than against how far its resend got, because our Ack may have
covered records whose resend a second cut interrupted.

How the I/O side uses it (one per connection whose ``HandshakeCompleted``
says ``stateful_reconnect``):

* the single writer passes every framed record through ``send`` and writes
  what it returns; before a sequenced record it waits while ``full`` (woken
  when the reader's ``receive`` of an Ack clears it), and it writes ``ack(now)``
  whenever ``ack_deadline`` passes, also while it waits for room;
* the reader passes every message through ``receive`` and dispatches only
  those it returns True for;
* a transport that fails without a Close record: ``HubConnection.transport_lost``
  and ``detach``; the connection lives on for the disconnect timeout;
* a WebSocket request with the same connection token (authenticated, same
  user): stop the old writer, write ``resume()`` first, then carry on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence as Frames
from typing import Final

from .base import HubProtocol, TransferFormat
from .errors import LocalProtocolError, RemoteProtocolError, Texts
from .messages import Ack, HubMessage, MessageType, Sequence

__all__ = [
    "DEFAULT_ACK_INTERVAL",
    "DEFAULT_BUFFER_SIZE",
    "SEQUENCED_TYPES",
    "ResumableStream",
]

DEFAULT_BUFFER_SIZE: Final = 100_000
"""Bytes of unacknowledged records kept per connection (the reference's default)."""

DEFAULT_ACK_INTERVAL: Final = 1.0
"""Seconds between a new record's arrival and its Ack (both reference sides)."""

SEQUENCED_TYPES: Final = frozenset(
    {
        MessageType.INVOCATION,
        MessageType.STREAM_ITEM,
        MessageType.COMPLETION,
        MessageType.STREAM_INVOCATION,
        MessageType.CANCEL_INVOCATION,
    }
)
"""The message types that get sequence ids, are buffered, and are acknowledged.
Ping, Close, Ack and Sequence are not: they are never resent."""


class ResumableStream:
    """Sequencing, replay buffer and Ack pacing of one resumable connection.

    Outgoing: every framed record the connection writes goes through ``send``,
    which numbers and keeps records of ``SEQUENCED_TYPES`` until an Ack from the
    peer frees them; ``full`` says when to stop sending them (backpressure:
    nothing is dropped, and the buffer never holds more than ``buffer_size``
    bytes plus one record). ``detach`` when the transport drops; ``resume``
    gives what the next transport must write first.

    Incoming: every decoded message goes through ``receive``, which numbers
    sequenced ones, drops those already seen (the peer's resend after a
    resume), and consumes Ack and Sequence. ``ack_deadline`` / ``ack`` say when
    to acknowledge what arrived.

    Args:
        protocol: the connection's agreed hub protocol; the Ack and Sequence
            records are encoded with it.
        buffer_size: bytes of unacknowledged records before ``full``.
        ack_interval: seconds from the first unacknowledged arrival to its Ack.
    """

    __slots__ = (
        "_ack_at",
        "_ack_interval",
        "_attached",
        "_buffer_size",
        "_buffered",
        "_latest_received",
        "_next_receive_id",
        "_protocol",
        "_records",
        "_sent",
    )

    def __init__(
        self,
        protocol: HubProtocol,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        ack_interval: float = DEFAULT_ACK_INTERVAL,
    ) -> None:
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError(f"buffer_size must be a positive integer, not {buffer_size!r}")
        if not ack_interval > 0:
            raise ValueError(f"ack_interval must be positive, not {ack_interval!r}")
        self._protocol = protocol
        self._buffer_size = buffer_size
        self._ack_interval = ack_interval
        self._attached = True
        # Outgoing: ids 1.._sent were sent; _records holds (id, frame) for the
        # unacknowledged ones, oldest first; _buffered is the sum of their sizes.
        self._sent = 0
        self._records: deque[tuple[int, bytes]] = deque()
        self._buffered = 0
        # Incoming: the id the next sequenced record gets, the highest id
        # processed, and when the next Ack is due.
        self._next_receive_id = 1
        self._latest_received = 0
        self._ack_at: float | None = None

    # -- outgoing ---------------------------------------------------------------

    @property
    def attached(self) -> bool:
        """Whether a transport is there to write to (False between ``detach``
        and ``resume``)."""
        return self._attached

    @property
    def buffered_bytes(self) -> int:
        """Bytes of sent records the peer has not acknowledged yet."""
        return self._buffered

    @property
    def buffered_count(self) -> int:
        """Records the peer has not acknowledged yet."""
        return len(self._records)

    @property
    def full(self) -> bool:
        """The buffer holds ``buffer_size`` bytes or more: wait for an Ack (see
        ``receive``) before the next sequenced ``send``. Other records may go."""
        return self._buffered >= self._buffer_size

    @property
    def sent_count(self) -> int:
        """The id of the last sequenced record sent (0 before the first)."""
        return self._sent

    def record_type(self, frame: bytes) -> int:
        """The ``MessageType`` of a record this server's own encoder framed.

        Both encoders write the type first: JSON as ``{"type":N``, MessagePack
        as the first element of the array after the varint length prefix.
        """
        if self._protocol.transfer_format is TransferFormat.TEXT:
            end = frame.find(b",", 8, 12)
            return int(frame[8 : end if end > 0 else frame.index(b"}", 8)])
        at = 0
        while frame[at] & 0x80:  # the varint length prefix
            at += 1
        head = frame[at + 1]  # fixarray, array 16 or array 32
        return frame[at + 2 if 0x90 <= head <= 0x9F else at + 4 if head == 0xDC else at + 6]

    def admissible(self, frames: Frames[bytes]) -> int:
        """How many of ``frames``, from the first, may be sent now.

        A sequenced record goes while the buffer is not ``full`` (so it holds at
        most ``buffer_size`` bytes plus one record); others always go. 0: wait
        for an Ack before the first.
        """
        room = self._buffer_size - self._buffered
        count = 0
        for frame in frames:
            if frame and self.record_type(frame) in SEQUENCED_TYPES:
                if room <= 0:
                    break
                room -= len(frame)
            count += 1
        return count

    def send(self, message_type: int, frame: bytes) -> bytes | None:
        """Account for one framed record before it is written.

        Args:
            message_type: the record's ``MessageType`` (``message.type``).
            frame: the record exactly as the protocol encoded it.

        Returns:
            ``frame`` when it is to be written now; ``None`` while detached (a
            sequenced record then waits in the buffer for ``resume``, anything
            else is pointless on a transport that is gone and is not kept).

        Raises:
            LocalProtocolError: a sequenced record while ``full``: the caller
                must wait for an Ack first.
        """
        if message_type in SEQUENCED_TYPES:
            if self._buffered >= self._buffer_size:
                raise LocalProtocolError(
                    f"the replay buffer is full ({self._buffered} of {self._buffer_size} "
                    "bytes unacknowledged); wait until `full` is False before sending"
                )
            self._sent += 1
            self._records.append((self._sent, frame))
            self._buffered += len(frame)
        return frame if self._attached else None

    def detach(self) -> None:
        """The transport dropped: sends are buffered, not written, until ``resume``."""
        self._attached = False

    def resume(self) -> list[bytes]:
        """A new transport took over; return what to write on it, in order.

        Returns:
            A Sequence with the id of the first record to be resent (the next
            new id when nothing is unacknowledged; the reference sends it even
            then), followed by every unacknowledged record, oldest first.
            Nothing else may be written on the new transport before these: the
            official client discards every record until it reads the Sequence.
            Works whether or not ``detach`` was called (the client may reconnect
            before the server notices the old transport is gone).
        """
        self._attached = True
        first = self._records[0][0] if self._records else self._sent + 1
        return [self._protocol.encode(Sequence(first)), *(frame for _, frame in self._records)]

    # -- incoming ---------------------------------------------------------------

    def receive(self, message: HubMessage, now: float) -> bool:
        """Account for one message read from the peer.

        Args:
            message: the decoded message.
            now: the current time, in the clock ``ack_deadline`` uses.

        Returns:
            Whether to dispatch the message to the hub: False for an Ack and a
            Sequence (consumed here) and for a sequenced record already seen
            (the peer's resend after a resume). After an Ack, ``full`` may have
            turned False: wake whoever waits to send.

        Raises:
            RemoteProtocolError: an Ack for a record never sent, or a Sequence
                below 1 or past the records received (``Texts.SEQUENCE_AHEAD``);
                close the connection with ``exc.close``.
        """
        kind = message.type
        if kind in SEQUENCED_TYPES:
            current = self._next_receive_id
            self._next_receive_id = current + 1
            if current <= self._latest_received:
                # Already processed; the peer resends it because our Ack was
                # lost with the old transport, so acknowledge again.
                self._schedule_ack(now)
                return False
            self._latest_received = current
            self._schedule_ack(now)
            return True
        if isinstance(message, Ack):
            self._acknowledged(message.sequence_id)
            return False
        if isinstance(message, Sequence):
            self._resequence(message.sequence_id, now)
            return False
        return True

    @property
    def latest_received(self) -> int:
        """The id of the last sequenced record processed (0 before the first)."""
        return self._latest_received

    @property
    def ack_deadline(self) -> float | None:
        """When an Ack is due; ``None`` while nothing new needs acknowledging."""
        return self._ack_at

    def ack(self, now: float) -> bytes | None:
        """The Ack record to write at ``now``, if one is due and a transport is there.

        An Ack is due ``ack_interval`` after the first record it covers
        arrived, so Acks go out at most that often and only after something
        new; it covers everything processed up to ``now``.
        """
        if self._ack_at is None or now < self._ack_at or not self._attached:
            return None
        self._ack_at = None
        return self._protocol.encode(Ack(self._latest_received))

    def _schedule_ack(self, now: float) -> None:
        if self._ack_at is None:
            self._ack_at = now + self._ack_interval

    def _acknowledged(self, sequence_id: int) -> None:
        if sequence_id > self._sent:
            raise RemoteProtocolError(Texts.ack_ahead(sequence_id, self._sent))
        records = self._records
        while records and records[0][0] <= sequence_id:
            self._buffered -= len(records.popleft()[1])

    def _resequence(self, sequence_id: int, now: float) -> None:
        if sequence_id < 1:
            raise RemoteProtocolError(Texts.sequence_not_positive(sequence_id))
        # The reference refuses anything past _next_receive_id, but after a resume
        # we may have acknowledged more than we re-received before the next cut;
        # only a Sequence past everything received would skip records.
        if sequence_id > self._latest_received + 1:
            raise RemoteProtocolError(Texts.SEQUENCE_AHEAD)
        self._next_receive_id = sequence_id
        if sequence_id <= self._latest_received:
            # The peer still holds records we processed: its Ack was lost.
            self._schedule_ack(now)
