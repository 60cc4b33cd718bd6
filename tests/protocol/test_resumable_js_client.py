"""Our ``ResumableStream`` against the official client's own ``MessageBuffer``.

``js/message_buffer_peer.mjs`` runs the installed ``@microsoft/signalr``
MessageBuffer (what ``withStatefulReconnect()`` uses) with a fake socket and a
fake clock; hypothesis interleaves sends both ways, frame deliveries, clock
ticks, socket cuts (noticed by the server or not), the client noticing, and
resumes. The client's own logic decides what it resends, what it drops as a
duplicate, when it acks, and whether our Sequence is acceptable (a Sequence
past what it received stops its connection). After every step each side has
received a prefix of what the other sent, once and in order; healed, all of it.
The client may stop only through its own double-cut flaw (pinned by
``test_the_clients_double_cut_limitation``); the example goes on from there
with a fresh connection, as the real client's automatic reconnect would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from triohub.protocol import JsonHubProtocol, MessagePackHubProtocol, Texts

from .test_resumable_properties import BUFFER_SIZE, Peer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "protocol" / "js" / "message_buffer_peer.mjs"


class JsClient:
    """The node process: one command line in, one answer line out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.sent: list[int] = []
        self.answer: dict[str, Any] = {}

    def __call__(self, op: str, **fields: Any) -> list[bytes]:
        """Run one command; return the frames the client wrote on the live socket."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the node peer died on {op}"
        self.answer = json.loads(line)
        stopped = self.answer["stopped"]
        if stopped is not None:
            # The one way the client may stop: its own limitation (see
            # test_the_clients_double_cut_limitation), which needs a Sequence of
            # ours that was within what it had received, past where its resend got.
            assert stopped == Texts.SEQUENCE_AHEAD, stopped
            assert self.answer["next"] < self.answer["sequence"] <= self.answer["latest"] + 1
        return [bytes.fromhex(frame) for frame in self.answer["out"]]

    @property
    def stopped(self) -> bool:
        return self.answer.get("stopped") is not None


@pytest.fixture(scope="module")
def js_client() -> Iterator[JsClient]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js 20) is not on PATH; `make test` installs it", pytrace=False)
    process = subprocess.Popen(
        [node, str(SCRIPT)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield JsClient(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)


class AgainstTheJsClient(RuleBasedStateMachine):
    def __init__(self, client: JsClient) -> None:
        super().__init__()
        self.client = client
        self.server: Peer | None = None
        self.now = 0.0
        self.alive = True  # the socket
        self.client_noticed = True
        self.to_client: list[bytes] = []  # frames in flight; WebSocket messages are whole

    # Also after the client stopped (its double-cut flaw): its automatic reconnect
    # starts a fresh connection. Without this, a stopped client left no rule whose
    # precondition held, and hypothesis failed with "no progress can be made".
    @precondition(lambda self: not self.started())
    @rule(msgpack=st.booleans())
    def start(self, msgpack: bool) -> None:
        protocol = MessagePackHubProtocol() if msgpack else JsonHubProtocol()
        self.server = Peer(protocol, "server")
        # A fresh socket and clock (the node side resets its clock too); nothing of
        # a stopped connection stays in flight.
        self.now = 0.0
        self.alive = True
        self.client_noticed = True
        self.to_client = []
        self.client.sent = []
        self.client("reset", protocol="messagepack" if msgpack else "json", bufferSize=BUFFER_SIZE)

    def started(self) -> bool:
        # A client that stopped falls back to a fresh connection: nothing to resume.
        return self.server is not None and not self.client.stopped

    def to_server(self, frames: list[bytes]) -> None:
        assert self.server is not None
        if self.alive:
            self.server.inbound += b"".join(frames)

    def from_server(self, frame: bytes | None) -> None:
        if frame is not None and self.alive:
            self.to_client.append(frame)

    @precondition(lambda self: self.started() and not self.client.answer["blocked"])
    @rule()
    def client_sends(self) -> None:
        # An app that awaits each call: it waits while backpressure holds one.
        payload = len(self.client.sent)
        self.client.sent.append(payload)
        self.to_server(self.client("send", payload=payload))

    @precondition(lambda self: self.started() and not self.server.stream.full)
    @rule()
    def server_sends(self) -> None:
        assert self.server is not None
        payload = len(self.server.sent)
        self.server.sent.append(payload)
        message = self.server.message(payload)
        frame = self.server.protocol.encode(message)
        self.from_server(self.server.stream.send(message.type, frame))

    @precondition(lambda self: self.started() and self.alive)
    @rule(frames=st.integers(min_value=1, max_value=4))
    def deliver_to_client(self, frames: int) -> None:
        batch, self.to_client = self.to_client[:frames], self.to_client[frames:]
        if batch:
            self.to_server(self.client("receive", hex=b"".join(batch).hex()))

    @precondition(lambda self: self.started() and self.alive)
    @rule(size=st.integers(min_value=1, max_value=64))
    def deliver_to_server(self, size: int) -> None:
        assert self.server is not None
        data = bytes(self.server.inbound[:size])
        del self.server.inbound[:size]
        self.server.take(data, self.now)

    @precondition(started)
    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 2.0]))
    def tick(self, seconds: float) -> None:
        assert self.server is not None
        self.now += seconds
        self.from_server(self.server.stream.ack(self.now))
        self.to_server(self.client("advance", ms=seconds * 1000))

    @precondition(lambda self: self.started() and self.alive)
    @rule(server_notices=st.booleans())
    def cut(self, server_notices: bool) -> None:
        assert self.server is not None
        self.alive = False
        self.client_noticed = False
        self.client("cut")
        if server_notices:
            self.server.stream.detach()
        self.to_client.clear()
        self.server.inbound.clear()
        self.server.decoder = self.server.protocol.decoder()

    @precondition(lambda self: self.started() and not self.client_noticed)
    @rule()
    def client_notices(self) -> None:
        self.client_noticed = True
        self.client("disconnected")

    @precondition(lambda self: self.started() and not self.alive and self.client_noticed)
    @rule()
    def resume(self) -> None:
        assert self.server is not None
        self.alive = True
        for frame in self.server.stream.resume():
            self.from_server(frame)
        self.to_server(self.client("resend"))

    @precondition(started)
    @rule()
    def heal_and_settle(self) -> None:
        assert self.server is not None
        if not self.client_noticed:
            self.client_notices()
        if not self.alive:
            self.resume()
        for _ in range(50):
            if self.client.stopped:
                return
            self.deliver_to_client(len(self.to_client) or 1)
            self.deliver_to_server(len(self.server.inbound) or 1)
            settled = not (self.server.stream.buffered_count or self.client.answer["buffered"])
            if settled and not self.to_client and not self.server.inbound:
                break
            self.tick(1.0)
        if self.client.stopped:
            return
        assert self.server.received == self.client.sent
        assert self.client.answer["received"] == self.server.sent
        assert self.server.stream.buffered_bytes == 0
        assert self.client.answer["buffered"] == self.client.answer["blocked"] == 0

    @invariant()
    def each_side_received_a_prefix_once_in_order(self) -> None:
        if self.server is None:
            return
        received = self.client.answer["received"]
        assert received == self.server.sent[: len(received)]
        assert self.server.received == self.client.sent[: len(self.server.received)]

    def teardown(self) -> None:
        if self.started():
            self.heal_and_settle()


def test_exactly_once_in_order_with_the_official_client(js_client: JsClient) -> None:
    run_state_machine_as_test(
        lambda: AgainstTheJsClient(js_client),
        settings=settings(max_examples=150, stateful_step_count=50, deadline=None),
    )


def test_a_resend_of_what_we_had_is_acknowledged_again(js_client: JsClient) -> None:
    # Our Ack dies with the socket; the client resends what we already have. Without
    # a second Ack its buffer (and, once full, its sends) would wait for ever.
    link = AgainstTheJsClient(js_client)
    link.start(msgpack=False)
    link.client_sends()
    link.deliver_to_server(size=64)
    link.tick(1.0)  # our Ack{1} is in flight...
    link.cut(server_notices=True)  # ...and lost
    link.client_notices()
    link.resume()
    link.heal_and_settle()


def test_the_clients_double_cut_limitation(js_client: JsClient) -> None:
    # The official client's own flaw, pinned so that a fix upstream shows here.
    # Its Ack timer, armed before a cut, fires after the resume while the resend
    # of what it had is still under way: it acknowledges #3 although its next
    # expected id went back to #2. A second cut then, and our Sequence{4} (the
    # reference server's too) is "greater than amount of messages we've
    # received": the client stops, and its automatic reconnect starts afresh.
    link = AgainstTheJsClient(js_client)
    link.start(msgpack=False)
    for _ in range(3):
        link.server_sends()
    link.deliver_to_client(frames=3)  # the client's Ack timer: due at t=1 s
    link.cut(server_notices=True)
    link.client_notices()
    link.resume()  # we write Sequence{1}, #1, #2, #3
    link.deliver_to_client(frames=2)  # Sequence{1} and #1 (a duplicate)
    link.tick(1.0)  # the timer fires: Ack{3}
    link.deliver_to_server(size=200)
    assert link.server.stream.buffered_count == 0  # type: ignore[union-attr]
    for _ in range(3):
        link.server_sends()  # #4, #5, #6: lost in the cut, resent after Sequence{4}
    link.cut(server_notices=True)
    link.client_notices()
    link.resume()
    # Sequence{4} and the resend in one batch: the peer stops at the Sequence (the
    # real client would go on, numbering #4 as 2, and hand #6 to the app as 4).
    link.deliver_to_client(frames=4)
    assert js_client.stopped
    assert js_client.answer["stopped"] == Texts.SEQUENCE_AHEAD
    assert (js_client.answer["next"], js_client.answer["latest"]) == (2, 3)
    assert js_client.answer["received"] == [0, 1, 2]
    # The client's automatic reconnect starts afresh, and so does the machine (a
    # stopped client once left hypothesis no rule to run).
    assert not link.started()
    link.start(msgpack=True)
    link.server_sends()
    link.client_sends()
    link.heal_and_settle()
