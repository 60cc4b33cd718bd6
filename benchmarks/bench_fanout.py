"""Broadcast fan-out: deliveries per second to many in-memory connections.

One broadcast (``hub_context(...).clients.all.send``) is encoded once per
protocol by the hub's router, pushed into every connection's outbox, written by
that connection's writer task to an in-memory transport and decoded by the
client. A delivery is one broadcast message arriving, decoded, at one client. A
run sends ``--messages`` broadcasts to ``--connections`` clients and is timed
from the first send to the last delivery; the figure is the median of
``--runs`` runs after one warm-up run.

Two kinds of client, both draining everything they are sent:

* ``test``: ``triohub.testing.open_test_client`` (a reader task decodes and routes
  each message into an inbox, a second task drains the inbox);
* ``raw``: one task per connection reads the transport and decodes its chunks,
  which is closer to the server-side cost of a real remote client.

Everything runs in one Trio thread: this is the per-process ceiling of the
whole path (router, outboxes, writers, transports, codecs), not of a network.

Usage: ``python benchmarks/bench_fanout.py [--quick] [--connections N]
[--messages M] [--runs R] [--protocol json|messagepack] [--client test|raw|both]``
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from contextlib import AsyncExitStack

import trio

# triohub comes from the installed package (`make bench-micro` uses .venv's editable
# install): the repository's folders are engine/ and actors/, not triohub/.
from triohub import Hub, HubServer
from triohub.protocol import Completion, Invocation, MessageDecoder
from triohub.testing import HubTestClient, open_test_client
from triohub.transports.memory import MemoryTransport, memory_transport_pair

PATH = "/bench"
PAYLOAD = ("alice", "x" * 64)


class BenchHub(Hub):
    """The benchmark sends from outside, through the hub context."""

    async def ready(self) -> None:
        """A round trip: once answered, the connection is registered with the router."""


class Deliveries:
    """Counts deliveries across all clients; wakes the timer when a run is complete."""

    def __init__(self) -> None:
        self.remaining = 0
        self.done = trio.Event()

    def expect(self, count: int) -> None:
        self.remaining = count
        self.done = trio.Event()

    def delivered(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.done.set()


async def drain_test_client(client: HubTestClient, deliveries: Deliveries) -> None:
    async for message in client.inbox:
        if isinstance(message, Invocation):
            deliveries.delivered()


async def drain_raw(
    transport: MemoryTransport, decoder: MessageDecoder, deliveries: Deliveries
) -> None:
    while True:
        while (message := decoder.next_message()) is not None:
            if isinstance(message, Invocation):
                deliveries.delivered()
        chunk = await transport.receive()
        if chunk is None:
            return
        decoder.receive_data(chunk)


async def connect_raw(
    server: HubServer, stack: AsyncExitStack, nursery: trio.Nursery, n: int, protocol: str
) -> tuple[MemoryTransport, MessageDecoder]:
    """Handshake, then one ``Ready`` round trip: after it the router has the connection."""
    server_side, client_side = memory_transport_pair()
    connect = functools.partial(server.connect, server.hubs[PATH], connection_id=f"c{n}")
    nursery.start_soon(connect, server_side)
    stack.push_async_callback(client_side.aclose)
    codec = server.protocols[protocol]
    handshake = b'{"protocol":"%s","version":1}\x1e' % protocol.encode()
    await client_side.send([handshake, codec.encode(Invocation("Ready", (), "r"))])
    decoder = codec.decoder(None)
    reply = await client_side.receive()  # the handshake reply is JSON, even for MessagePack
    if reply is None or not reply.startswith(b"{}\x1e"):
        raise AssertionError(f"handshake failed: {reply!r}")
    decoder.receive_data(reply[3:])
    while True:
        while (message := decoder.next_message()) is not None:
            if isinstance(message, Completion) and message.invocation_id == "r":
                return client_side, decoder
        chunk = await client_side.receive()
        if chunk is None:
            raise AssertionError("the connection closed during the set-up")
        decoder.receive_data(chunk)


async def one_run(
    server: HubServer, deliveries: Deliveries, clients: int, messages: int
) -> tuple[float, float]:
    """Deliveries per second of one run: per wall-clock second and per CPU second.

    The process is one thread, so its CPU time is what the run cost, whatever
    else the machine was doing; the wall-clock figure includes such noise.
    """
    everyone = server.hub_context(PATH).clients.all
    deliveries.expect(clients * messages)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(messages):
        await everyone.send("ReceiveMessage", *PAYLOAD)
    await deliveries.done.wait()
    count = clients * messages
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


async def bench(
    connections: int, messages: int, runs: int, protocol: str, client_kind: str
) -> list[tuple[float, float]]:
    server = HubServer()
    server.map_hub(PATH, BenchHub)
    deliveries = Deliveries()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with AsyncExitStack() as stack:
            for n in range(connections):
                if client_kind == "test":
                    client = await stack.enter_async_context(
                        open_test_client(server, PATH, protocol=protocol, connection_id=f"c{n}")
                    )
                    await client.invoke("Ready")
                    nursery.start_soon(drain_test_client, client, deliveries)
                else:
                    transport, decoder = await connect_raw(server, stack, nursery, n, protocol)
                    nursery.start_soon(drain_raw, transport, decoder, deliveries)
            stats = await server.stats(PATH)
            if stats.connections != connections:
                raise AssertionError(f"only {stats.connections} of {connections} registered")

            await one_run(server, deliveries, connections, messages)  # warm-up
            rates = [await one_run(server, deliveries, connections, messages) for _ in range(runs)]

            stats = await server.stats(PATH)
            if stats.slow_consumers or stats.connections != connections:
                raise AssertionError(f"connections were dropped during the runs: {stats}")
        server.stop()
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--connections", type=int, default=None, help="clients (default 1000)")
    parser.add_argument("--messages", type=int, default=None, help="broadcasts per run")
    parser.add_argument("--runs", type=int, default=None, help="timed runs after the warm-up")
    parser.add_argument("--protocol", choices=["json", "messagepack"], default="json")
    parser.add_argument("--client", choices=["test", "raw", "both"], default="both")
    args = parser.parse_args(argv)
    connections = args.connections or (100 if args.quick else 1_000)
    messages = args.messages or (10 if args.quick else 50)
    runs = args.runs or (3 if args.quick else 5)
    kinds = ["raw", "test"] if args.client == "both" else [args.client]

    print(
        f"python {sys.version.split()[0]}, trio {trio.__version__}, {args.protocol}: "
        f"{messages} broadcasts x {connections} connections per run, "
        f"median of {runs} runs after 1 warm-up"
    )
    for kind in kinds:
        results = trio.run(bench, connections, messages, runs, args.protocol, kind)
        wall = [rate for rate, _ in results]
        cpu = [rate for _, rate in results]
        print(
            f"{kind:>4} clients: median {statistics.median(wall):>9,.0f} deliveries/s wall, "
            f"{statistics.median(cpu):>9,.0f} per CPU s"
            f"  (wall runs: {', '.join(f'{rate:,.0f}' for rate in wall)})"
        )


if __name__ == "__main__":
    main()
