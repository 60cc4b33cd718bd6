"""Encode/decode throughput of the hub protocol codecs, in messages per second.

The codecs sit on every message a connection sends or receives, and a broadcast
is encoded once per protocol and then fanned out, so their per-message cost
bounds what one server process can push. Three shapes are measured: a client
invocation, a completion carrying a result and a server broadcast.

Decoding is timed two ways: one record per ``receive_data`` (one WebSocket
frame per message, the usual case) and a batch of records per chunk (a long
poll POST body or a client's coalesced sends).

Usage: ``python benchmarks/bench_codec.py [--quick] [--rounds N]``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

# triohub comes from the installed package (`make bench-micro` uses .venv's editable
# install): the repository's folders are engine/ and actors/, not triohub/.
from triohub.protocol.base import HubProtocol
from triohub.protocol.json_protocol import JsonHubProtocol
from triohub.protocol.messages import Completion, HubMessage, Invocation
from triohub.protocol.msgpack_protocol import MessagePackHubProtocol

BATCH = 100

CASES: dict[str, HubMessage] = {
    "invocation": Invocation("SendMessage", ["alice", "x" * 64], invocation_id="17"),
    "completion": Completion.with_result("17", {"id": 42, "text": "hello", "ok": True}),
    "broadcast": Invocation("ReceiveMessage", ["alice", "x" * 64]),
}


def best_rate(run: Callable[[int], None], count: int, rounds: int) -> float:
    """Messages per second of the fastest round: the least disturbed by the machine."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run(count)
        best = min(best, time.perf_counter() - started)
    return count / best


def bench_encode(protocol: HubProtocol, message: HubMessage) -> Callable[[int], None]:
    encode = protocol.encode

    def run(count: int) -> None:
        for _ in range(count):
            encode(message)

    return run


def bench_decode_single(protocol: HubProtocol, message: HubMessage) -> Callable[[int], None]:
    record = protocol.encode(message)

    def run(count: int) -> None:
        decoder = protocol.decoder(32 * 1024)
        receive, next_message = decoder.receive_data, decoder.next_message
        for _ in range(count):
            receive(record)
            if next_message() is None:
                raise AssertionError("record did not decode")

    return run


def bench_decode_batch(protocol: HubProtocol, message: HubMessage) -> Callable[[int], None]:
    chunk = protocol.encode(message) * BATCH

    def run(count: int) -> None:
        decoder = protocol.decoder(32 * 1024)
        next_message = decoder.next_message
        for _ in range(count // BATCH):
            decoder.receive_data(chunk)
            while next_message() is not None:
                pass

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per figure")
    args = parser.parse_args(argv)
    count = 2_000 if args.quick else 100_000
    rounds = args.rounds or (2 if args.quick else 5)

    protocols: list[HubProtocol] = [JsonHubProtocol(), MessagePackHubProtocol()]
    header = f"{'message':<11} {'protocol':<11} {'bytes':>5} {'encode/s':>11} {'decode/s':>11} {'decode/s x100':>14}"
    print(f"python {sys.version.split()[0]}, {count} messages per round, best of {rounds}")
    print(header)
    print("-" * len(header))
    for case, message in CASES.items():
        for protocol in protocols:
            size = len(protocol.encode(message))
            encode = best_rate(bench_encode(protocol, message), count, rounds)
            single = best_rate(bench_decode_single(protocol, message), count, rounds)
            batch = best_rate(bench_decode_batch(protocol, message), count, rounds)
            print(
                f"{case:<11} {protocol.name:<11} {size:>5} "
                f"{encode:>11,.0f} {single:>11,.0f} {batch:>14,.0f}"
            )


if __name__ == "__main__":
    main()
