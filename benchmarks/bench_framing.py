"""triohub's own RFC 6455 framing (``native_ws`` over ``protocol.websocket``) against
wsproto's, the WebSocket library hypercorn uses: why the native server keeps its own.

Two shapes, server side, no sockets:

* echo: one masked client text frame carrying a hub record is decoded, and one
  unmasked frame carrying the answer is encoded (what one call costs in framing;
  wsproto takes text frames as ``str``, as the ASGI app hands them over);
* broadcast: one record framed for each of ``--recipients`` connections (a hub
  broadcast). triohub frames the payload once and hands every connection the same
  bytes (``native_ws.FrameCache``); wsproto frames per connection (each
  ``Connection.send``).

The best of ``--rounds`` rounds is reported (the least disturbed by the machine).

Usage: ``python benchmarks/bench_framing.py [--quick] [--rounds N] [--recipients N]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from wsproto.connection import Connection, ConnectionType
from wsproto.events import Message, TextMessage
from wsproto.frame_protocol import Opcode

# triohub comes from the installed package (the repository's folders are engine/ and
# actors/, not triohub/).
from triohub.protocol.websocket import TEXT, FrameDecoder, encode_frame
from triohub.protocol.websocket import Message as WsMessage
from triohub.transports.native_ws import FrameCache

RECORD = b'{"type":1,"invocationId":"17","target":"Echo","arguments":["' + b"x" * 64 + b'"]}\x1e'
ANSWER = b'{"type":3,"invocationId":"17","result":"' + b"x" * 64 + b'"}\x1e'


def client_frame(payload: bytes) -> bytes:
    """A final, masked text frame as a client sends it."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | TEXT, 0x80 | size))
    else:
        assert size < 65536
        head = bytes((0x80 | TEXT, 0x80 | 126)) + size.to_bytes(2, "big")
    return head + mask + masked


def best(run: Callable[[int], None], count: int, rounds: int) -> float:
    """Seconds per operation of the fastest round."""
    fastest = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run(count)
        fastest = min(fastest, time.perf_counter() - started)
    return fastest / count


def echo_triohub(count: int) -> None:
    decoder = FrameDecoder(1024 * 1024)
    frame = client_frame(RECORD)
    for _ in range(count):
        for message in decoder.feed(frame):
            assert isinstance(message, WsMessage)
        encode_frame(TEXT, ANSWER)


def echo_wsproto(count: int) -> None:
    connection = Connection(ConnectionType.SERVER)
    frame = client_frame(RECORD)
    answer = ANSWER.decode()
    for _ in range(count):
        connection.receive_data(frame)
        for event in connection.events():
            assert isinstance(event, TextMessage)
        connection.send(Message(data=answer))


def broadcast_triohub(recipients: int) -> Callable[[int], None]:
    def run(count: int) -> None:
        cache = FrameCache()
        for _ in range(count):
            payload = bytes(ANSWER)  # a new record per broadcast: framed once, then cached
            for _ in range(recipients):
                cache.frame(TEXT, payload)

    return run


def broadcast_wsproto(recipients: int) -> Callable[[int], None]:
    connections = [Connection(ConnectionType.SERVER) for _ in range(recipients)]

    def run(count: int) -> None:
        for _ in range(count):
            text = ANSWER.decode()
            for connection in connections:
                connection.send(Message(data=text))

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--recipients", type=int, default=1000)
    args = parser.parse_args(argv)
    echoes = 2_000 if args.quick else 50_000
    broadcasts = 20 if args.quick else 200
    assert Opcode.TEXT == TEXT
    rows = [
        ("echo (decode + encode), per message", echo_triohub, echo_wsproto, echoes),
        (
            f"broadcast to {args.recipients}, per broadcast",
            broadcast_triohub(args.recipients),
            broadcast_wsproto(args.recipients),
            broadcasts,
        ),
    ]
    print(f"{'framing':<42} {'triohub':>12} {'wsproto':>12} {'ratio':>8}")
    for name, ours, theirs, count in rows:
        own = best(ours, count, args.rounds)
        other = best(theirs, count, args.rounds)
        print(f"{name:<42} {own * 1e6:>9.2f} us {other * 1e6:>9.2f} us {other / own:>7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
