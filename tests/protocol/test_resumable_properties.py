"""Two ``ResumableStream`` peers over a link that hypothesis cuts at random.

A server and a client, each with a replay buffer, exchange records over a
byte stream per direction; hypothesis interleaves sends, partial deliveries,
pings, clock ticks (Acks), cuts (with or without the server noticing) and
resumes. After every step each side has received a prefix of what the other
sent, in order, nothing twice, and no buffer is past its limit plus one record;
whenever the link is healed and the clock runs, everything sent arrives
exactly once and both buffers empty.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from triohub.protocol import (
    HubProtocol,
    Invocation,
    JsonHubProtocol,
    MessageDecoder,
    MessagePackHubProtocol,
    Ping,
    ResumableStream,
    StreamItem,
)
from triohub.protocol.messages import HubMessage

BUFFER_SIZE = 120
"""Small, so that hypothesis fills the buffers often."""


class Peer:
    """One side: its stream state, what it sent, what it received, its inbound link."""

    def __init__(self, protocol: HubProtocol, name: str) -> None:
        self.protocol = protocol
        self.name = name
        self.stream = ResumableStream(protocol, buffer_size=BUFFER_SIZE)
        self.sent: list[int] = []
        self.received: list[int] = []
        self.decoder: MessageDecoder = protocol.decoder()
        self.inbound = bytearray()  # bytes in flight toward this peer
        self.largest_frame = 0

    def message(self, payload: int) -> HubMessage:
        # The client invokes, the server streams: both sequenced types.
        if self.name == "client":
            return Invocation("Send", [payload, "x" * (payload % 7)])
        return StreamItem("7", [payload, "y" * (payload % 5)])

    def take(self, data: bytes, now: float) -> None:
        """Bytes arriving from the other side, decoded and run through the stream."""
        self.decoder.receive_data(data)
        while (message := self.decoder.next_message()) is not None:
            if self.stream.receive(message, now) and isinstance(message, Invocation | StreamItem):
                payload = (
                    message.arguments[0] if isinstance(message, Invocation) else message.item[0]
                )
                self.received.append(payload)


class CutProneLink(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.protocol: HubProtocol | None = None
        self.now = 0.0
        self.connected = True

    @precondition(lambda self: self.protocol is None)
    @rule(msgpack=st.booleans())
    def start(self, msgpack: bool) -> None:
        self.protocol = MessagePackHubProtocol() if msgpack else JsonHubProtocol()
        self.server = Peer(self.protocol, "server")
        self.client = Peer(self.protocol, "client")

    def peers(self) -> tuple[Peer, Peer]:
        return self.server, self.client

    def other(self, peer: Peer) -> Peer:
        return self.client if peer is self.server else self.server

    def write(self, sender: Peer, frame: bytes | None) -> None:
        # A detached stream writes nothing; a server that missed the cut writes
        # into the dead transport, which is the same as nothing.
        if frame is not None and self.connected:
            self.other(sender).inbound += frame

    @precondition(lambda self: self.protocol is not None)
    @rule(from_client=st.booleans())
    def send(self, from_client: bool) -> None:
        sender = self.client if from_client else self.server
        if sender.stream.full:
            return  # the I/O layer waits here; never drops, never grows
        payload = len(sender.sent)
        frame = sender.protocol.encode(sender.message(payload))
        sender.largest_frame = max(sender.largest_frame, len(frame))
        sender.sent.append(payload)
        self.write(sender, sender.stream.send(sender.message(payload).type, frame))

    @precondition(lambda self: self.protocol is not None)
    @rule(from_client=st.booleans())
    def ping(self, from_client: bool) -> None:
        sender = self.client if from_client else self.server
        self.write(sender, sender.stream.send(Ping.type, sender.protocol.encode(Ping())))

    @precondition(lambda self: self.protocol is not None and self.connected)
    @rule(to_client=st.booleans(), size=st.integers(min_value=1, max_value=64))
    def deliver(self, to_client: bool, size: int) -> None:
        receiver = self.client if to_client else self.server
        data = bytes(receiver.inbound[:size])
        del receiver.inbound[:size]
        receiver.take(data, self.now)

    @precondition(lambda self: self.protocol is not None)
    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 2.5]))
    def tick(self, seconds: float) -> None:
        self.now += seconds
        for peer in self.peers():
            self.write(peer, peer.stream.ack(self.now))

    @precondition(lambda self: self.protocol is not None and self.connected)
    @rule(server_notices=st.booleans())
    def cut(self, server_notices: bool) -> None:
        """The TCP connection dies: bytes in flight are lost, partial records too."""
        self.connected = False
        self.client.stream.detach()
        if server_notices:
            self.server.stream.detach()
        for peer in self.peers():
            peer.inbound.clear()
            peer.decoder = peer.protocol.decoder()

    @precondition(lambda self: self.protocol is not None and not self.connected)
    @rule()
    def resume(self) -> None:
        self.connected = True
        for peer in self.peers():
            for frame in peer.stream.resume():
                self.write(peer, frame)

    @precondition(lambda self: self.protocol is not None)
    @rule()
    def heal_and_settle(self) -> None:
        """Resume if cut, then deliver and let Acks flow until nothing moves."""
        if not self.connected:
            self.resume()
        for _ in range(50):
            for peer in self.peers():
                peer.take(bytes(peer.inbound), self.now)
                peer.inbound.clear()
            if all(
                not peer.stream.buffered_count and peer.stream.ack_deadline is None
                for peer in self.peers()
            ):
                break
            self.tick(1.0)
        for peer in self.peers():
            assert peer.received == self.other(peer).sent, peer.name
            assert (peer.stream.buffered_count, peer.stream.buffered_bytes) == (0, 0), peer.name
            assert peer.stream.ack_deadline is None, peer.name

    @invariant()
    def each_side_received_a_prefix_exactly_once_in_order(self) -> None:
        if self.protocol is None:
            return
        for peer in self.peers():
            sent = self.other(peer).sent
            assert peer.received == sent[: len(peer.received)], peer.name

    @invariant()
    def no_buffer_grows_past_its_limit_plus_one_record(self) -> None:
        if self.protocol is None:
            return
        for peer in self.peers():
            assert peer.stream.buffered_bytes < BUFFER_SIZE + max(peer.largest_frame, 1)

    def teardown(self) -> None:
        if self.protocol is not None:
            self.heal_and_settle()


CutProneLink.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestCutProneLink = CutProneLink.TestCase
