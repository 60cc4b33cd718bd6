"""How long HTTP-transport connections live, and what they may hold: reaping of
unused negotiations, idle long-polling drops, bounded buffers and slow
consumers, the ASGI lifespan (``signalr-protocol.md`` sections 2.2 item 5, 3.3, 6).
All on virtual time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from triohub import HubServer
from triohub.transports.asgi import SignalRApp
from triohub.transports.longpolling import LongPollingTransport

from .asgi_client import AsgiClient
from .conftest import MakeHarness
from .support import HUB, Harness, Journal, JournalHub, completion, invocation

FLOOD_RECORD = 4000
"""Characters of each flooded argument."""


async def _flood(harness: Harness, connection_id: str, count: int) -> None:
    """Send ``count`` records to one connection as fast as the router takes them."""
    client = harness.server.hub_context(HUB).clients.client(connection_id)
    for _ in range(count):
        await client.send("Flood", "x" * FLOOD_RECORD)


# -- reaping and idle drops ----------------------------------------------------------


async def test_a_negotiated_connection_never_used_is_dropped_after_15_s(
    harness: Harness, autojump_clock: MockClock
) -> None:
    token = (await harness.negotiate())["connectionToken"]
    await trio.sleep(14.9)
    assert harness.app.connections.get(token) is not None
    # The reference's 1 s heartbeat: gone within a second after the 15 s.
    await trio.sleep(1.2)
    assert harness.app.connections.get(token) is None
    for headers in ([], [(b"accept", b"text/event-stream")]):
        late = await harness.client.request("GET", HUB, query=f"id={token}", headers=headers)
        assert (late.status, late.body) == (404, b"No Connection with that ID")
    socket = harness.client.websocket(HUB, query=f"id={token}")
    await socket.closed.wait()
    assert socket.rejection.status == 404


async def test_a_used_connection_is_not_reaped_as_unused(
    harness: Harness, autojump_clock: MockClock
) -> None:
    poller = await harness.long_polling()
    sse = await harness.sse()
    for _ in range(4):  # 40 s, polling within the idle limit
        pending = poller.open_poll()
        await trio.sleep(10)
        pending.disconnect()
        await pending.finished.wait()
    assert harness.app.connections.get(poller.token) is not None
    assert harness.app.connections.get(sse.token) is not None
    assert await harness.router_counts() == (2, 0, 0)


async def test_a_client_that_stops_polling_is_dropped_after_15_s(
    harness: Harness, autojump_clock: MockClock
) -> None:
    poller = await harness.long_polling()
    last_poll_ended = trio.current_time()
    assert await harness.router_counts() == (1, 0, 0)
    dropped_at = await harness.journal.wait_disconnected(poller.connection_id)
    assert dropped_at - last_poll_ended == pytest.approx(15.0)
    await trio.sleep(0.1)
    assert await harness.router_counts() == (0, 0, 0)
    assert harness.server.live_connections == 0
    assert harness.app.connections.get(poller.token) is None
    late = await poller.poll()
    assert (late.status, late.body) == (404, b"No Connection with that ID")


async def test_the_idle_count_starts_when_a_poll_ends(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """A held 90 s poll is not idleness; 14 s gaps between polls are allowed."""
    poller = await harness.long_polling()
    await poller.poll()  # held 90 s
    for _ in range(3):
        await trio.sleep(14)
        await poller.post(invocation("Echo", "alive", invocation_id="1"))
        assert (await poller.poll()).body == completion("1", "alive")
    assert harness.journal.disconnected == {}


async def test_an_idle_drop_with_unpolled_data_leaves_nothing_behind(
    harness: Harness, autojump_clock: MockClock
) -> None:
    poller = await harness.long_polling()
    await poller.post(invocation("Echo", "never read", invocation_id="1"))
    await harness.journal.wait_disconnected(poller.connection_id)
    # The ended connection waits up to close_timeout (5 s) for a last poll.
    await trio.sleep(5.1)
    assert harness.app.connections.get(poller.token) is None
    assert harness.server.live_connections == 0
    assert await harness.router_counts() == (0, 0, 0)


async def test_hub_options_set_the_timers(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    """``long_poll_timeout`` and ``disconnect_timeout`` are the hub's, not constants."""
    harness = await make_harness(long_poll_timeout=5.0, disconnect_timeout=3.0)
    unused = (await harness.negotiate())["connectionToken"]
    poller = await harness.long_polling()
    started = trio.current_time()
    held = await poller.poll()
    assert (held.status, held.body) == (200, b"")
    assert trio.current_time() - started == pytest.approx(5.0)
    assert harness.app.connections.get(unused) is None  # reaped after 3-4 s
    ended = trio.current_time()
    dropped_at = await harness.journal.wait_disconnected(poller.connection_id)
    assert dropped_at - ended == pytest.approx(3.0)


# -- bounded buffers and slow consumers ----------------------------------------------


@pytest.mark.parametrize("quiet", [0.0, 1.0], ids=["flood-at-last-poll", "flood-1s-later"])
async def test_long_polling_buffer_is_bounded_and_a_flooded_client_is_dropped(
    harness: Harness, autojump_clock: MockClock, quiet: float
) -> None:
    """A hub floods a client that stopped polling: the transport holds at most
    its bound (plus the one batch that crossed it; the writer then waits), the
    router drops the connection as a slow consumer, the hub is told, and
    nothing is left behind.

    ``flood-at-last-poll`` is the tight case: the writer's send times out at
    t+10 s while the idle reaper is due at t+15 s; each closing step has its
    own time limit, so the disconnect hooks still run.
    """
    poller = await harness.long_polling()
    connection = harness.app.connections.get(poller.token)
    assert connection is not None
    transport = connection.channel
    assert isinstance(transport, LongPollingTransport)
    bound = transport._max_buffer
    accepted: list[tuple[int, int]] = []  # (buffered before, batch size) per write
    buffered = 0
    original = transport.send

    async def counting_send(chunks: Sequence[bytes]) -> None:
        nonlocal buffered
        before = buffered
        await original(chunks)
        buffered += sum(map(len, chunks))
        accepted.append((before, sum(map(len, chunks))))

    transport.send = counting_send  # type: ignore[method-assign]
    await trio.sleep(quiet)
    await _flood(harness, poller.connection_id, 3000)  # ~12 MB offered
    stats = await harness.server.stats(HUB)
    assert (stats.connections, stats.slow_consumers) == (0, 1)
    # Never a write into a full buffer; at most one batch over the bound.
    assert all(before < bound for before, _ in accepted), accepted[-3:]
    peak = max(before + size for before, size in accepted)
    assert bound <= peak <= bound + max(size for _, size in accepted)
    assert peak < 2 * bound
    with trio.move_on_after(60):
        await harness.journal.wait_disconnected(poller.connection_id)
    assert poller.connection_id in harness.journal.disconnected, "on_disconnected never ran"
    await trio.sleep(5.1)
    assert harness.app.connections.get(poller.token) is None
    assert harness.server.live_connections == 0
    assert await harness.router_counts() == (0, 0, 0)


async def test_a_flooded_sse_client_that_stopped_reading_is_dropped_and_the_hub_told(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """An SSE client whose stream is not read (a full TCP window): the writer's
    send times out (10 s), the router drops the connection as a slow consumer,
    and ``on_disconnected`` must still run.

    The final record's write blocks on the same stalled stream; it has its own
    time limit, so the transport close and ``session.closed()`` (router
    unregister, ``on_disconnected``) still follow.
    """
    sse = await harness.sse()
    sse.stream.stall()
    await _flood(harness, sse.connection_id, 2000)
    stats = await harness.server.stats(HUB)
    assert (stats.connections, stats.slow_consumers) == (0, 1)
    with trio.move_on_after(60):
        await harness.journal.wait_disconnected(sse.connection_id)
    assert sse.connection_id in harness.journal.disconnected, (
        "on_disconnected never ran for the slow consumer"
    )
    await sse.stream.finished.wait()
    assert harness.app.connections.get(sse.token) is None
    assert harness.server.live_connections == 0


async def test_a_stalled_sse_stream_alone_ends_after_the_send_timeout(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """No flood: one record stuck in a stream nobody reads (a full TCP window).
    ``send_timeout`` (10 s) ends the connection; within that plus the close
    budget (final record, then the transport's close: ``close_timeout`` = 5 s
    each) the router must have forgotten it, its group membership included, and
    the hub must have been told.

    Here the router never dropped the connection itself, so only
    ``session.closed()`` removes its entry and group membership.
    """
    sse = await harness.sse()
    await sse.post(invocation("JoinGroup", "room", invocation_id="0"))
    assert await sse.event() == completion("0", None)
    assert await harness.router_counts() == (1, 0, 1)
    sse.stream.stall()
    await sse.post(invocation("Echo", "stuck", invocation_id="1"))
    await trio.sleep(20.5)
    assert harness.server.live_connections == 0
    assert harness.app.connections.get(sse.token) is None
    assert sse.stream.finished.is_set()
    after = (await harness.router_counts(), sse.connection_id in harness.journal.disconnected)
    assert after == ((0, 0, 0), True), "router entry and group leaked; on_disconnected never ran"


# -- the ASGI lifespan ---------------------------------------------------------------


class Lifespan:
    """Drives ``app``'s lifespan protocol."""

    def __init__(self, app: SignalRApp) -> None:
        self.app = app
        self._to_app, self._inbox = trio.open_memory_channel[dict[str, Any]](math.inf)
        self._to_app.send_nowait({"type": "lifespan.startup"})
        self.started = trio.Event()
        self.stopped = trio.Event()
        self.events: list[dict[str, Any]] = []

    async def _send(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event["type"] == "lifespan.startup.complete":
            self.started.set()
        elif event["type"] == "lifespan.shutdown.complete":
            self.stopped.set()

    async def run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        await self.app(scope, self._inbox.receive, self._send)

    def shutdown(self) -> None:
        self._to_app.send_nowait({"type": "lifespan.shutdown"})


def _count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for n in task.child_nurseries for child in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


def _app() -> tuple[SignalRApp, Journal]:
    server = HubServer()
    journal = Journal()
    server.map_hub(HUB, JournalHub, factory=partial(JournalHub, journal))
    return SignalRApp(server), journal


async def test_the_lifespan_runs_the_server_and_the_reaper(autojump_clock: MockClock) -> None:
    app, journal = _app()
    async with trio.open_nursery() as nursery:
        lifespan = Lifespan(app)
        nursery.start_soon(lifespan.run)
        await lifespan.started.wait()
        assert app.server.running
        harness = Harness(app.server, app, AsgiClient(app, nursery), journal)
        unused = (await harness.negotiate())["connectionToken"]
        poller = await harness.long_polling()
        pending = poller.open_poll()
        await trio.sleep(16.5)
        assert app.connections.get(unused) is None  # reaped by the lifespan's reaper
        assert app.connections.get(poller.token) is not None  # held poll: not idle
        lifespan.shutdown()
        # Shutdown: the held poll carries the close record (reconnect allowed).
        response = await pending.response()
        assert response.body == b'{"type":7,"allowReconnect":true}\x1e'
        await lifespan.stopped.wait()
    assert [e["type"] for e in lifespan.events] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert not app.server.running
    assert harness.client.violations == []


# -- scale ---------------------------------------------------------------------------

CLIENTS = 200
ROUNDS = 30
GROUPS = 20


async def test_200_long_polling_clients_leave_nothing_behind(autojump_clock: MockClock) -> None:
    """200 clients each invoke once a second for 30 s (virtual) and send to
    their group of 10 every 5 s, all over long polling; then half DELETE and
    half just stop polling. Afterwards: no live connection, no router entry,
    no table entry, the same task count as before they came, and the server
    stops at once."""
    app, journal = _app()
    server = app.server
    async with trio.open_nursery() as nursery:
        lifespan = Lifespan(app)
        nursery.start_soon(lifespan.run)
        await lifespan.started.wait()
        harness = Harness(server, app, AsgiClient(app, nursery), journal)
        baseline = _count_tasks()
        joined = 0
        all_joined = trio.Event()
        ended = 0

        async def client(index: int) -> None:
            nonlocal joined, ended
            await trio.sleep(index / CLIENTS)  # spread the arrivals over a second
            poller = await harness.long_polling()
            group = f"g{index % GROUPS}"
            completions: dict[str, bytes] = {}
            group_messages = 0
            expected_group = (CLIENTS // GROUPS) * (ROUNDS // 5)
            done = trio.Event()

            async def poll_loop() -> None:
                nonlocal group_messages
                while len(completions) < ROUNDS + 1 or group_messages < expected_group:
                    response = await poller.poll()
                    assert response.status == 200, response
                    if not response.body:
                        continue
                    # A client's round trip: what arrives meanwhile comes in the next poll.
                    await trio.sleep(0.05)
                    for record in response.body[:-1].split(b"\x1e"):
                        if record.startswith(b'{"type":3'):
                            invocation_id = record.split(b'"invocationId":"')[1].split(b'"')[0]
                            completions[invocation_id.decode()] = record + b"\x1e"
                        elif record.startswith(b'{"type":1,"target":"Receive"'):
                            group_messages += 1
                done.set()

            async with trio.open_nursery() as own:
                own.start_soon(poll_loop)
                await poller.post(invocation("JoinGroup", group, invocation_id="join"))
                joined += 1
                if joined == CLIENTS:
                    all_joined.set()
                await all_joined.wait()
                for round_ in range(ROUNDS):
                    await trio.sleep(1)
                    body = invocation("Echo", f"{index}-{round_}", invocation_id=str(round_))
                    if round_ % 5 == 4:
                        body += invocation("SendToGroup", group, f"{index}-{round_}")
                    response = await poller.post(body)
                    assert response.status == 200, response
                await done.wait()
            for round_ in range(ROUNDS):
                assert completions[str(round_)] == completion(str(round_), f"{index}-{round_}")
            assert group_messages == expected_group
            if index % 2:
                assert (await poller.delete()).status == 202
            ended += 1

        started = trio.current_time()
        async with trio.open_nursery() as clients:
            for index in range(CLIENTS):
                clients.start_soon(client, index)
        assert ended == CLIENTS
        assert trio.current_time() - started < ROUNDS + 5
        assert len(journal.connected) == CLIENTS
        # The ones that just stopped polling go 15 s after their last poll.
        with trio.fail_after(16):
            await journal.wait_count(CLIENTS)
        await trio.sleep(0.1)
        assert server.live_connections == 0
        stats = await server.stats(HUB)
        assert (stats.connections, stats.users, stats.groups, stats.slow_consumers) == (0, 0, 0, 0)
        assert len(app.connections) == 0
        harness.client.forget_finished()
        assert harness.client.exchanges == []  # every request has returned
        assert _count_tasks() == baseline
        stop_at = trio.current_time()
        lifespan.shutdown()
    assert trio.current_time() - stop_at < 0.01  # nothing left to wait for
    assert not server.running
    assert harness.client.violations == []
