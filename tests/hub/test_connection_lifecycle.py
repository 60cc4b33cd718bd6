"""One connection from handshake to close, through ``HubServer`` and the supervisor.

Timers run on ``autojump_clock``: a test waits as long as the protocol says and
checks the exact virtual time something happened, in no real time at all.
Records are compared byte for byte (``signalr-protocol.md`` sections 4.1, 6, 7, 13).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import trio
import trio.testing
from hub_support import (
    CLOSE,
    CLOSE_ERROR,
    CLOSE_ERROR_RECONNECT,
    CLOSE_RECONNECT,
    HANDSHAKE_OK,
    JSON_HANDSHAKE,
    PATH,
    PING,
    StartServer,
    drain,
    open_raw_client,
)

from triohub import Hub, HubOptions, HubServer, Principal
from triohub.actors.routing import RouterStats
from triohub.actors.supervisor import CloseReason
from triohub.protocol import Close, Invocation, Ping
from triohub.testing import HubTestClient, open_test_client
from triohub.transports.memory import memory_transport_pair

Events = list[tuple[Any, ...]]


class LifecycleHub(Hub):
    """Records its connect and disconnect hooks in a list shared by the test."""

    def __init__(self, events: Events) -> None:
        self.events = events

    async def on_connected(self) -> None:
        self.events.append(("connected", self.context.connection_id))
        if self.context.principal.has_claim("fail_connect"):
            raise RuntimeError("refused by on_connected")

    async def on_disconnected(self, error: BaseException | None) -> None:
        self.events.append(("disconnected", self.context.connection_id, error))

    async def echo(self, value: Any) -> Any:
        return value

    async def abort(self) -> None:
        self.context.abort()

    async def notify_then_abort(self) -> None:
        await self.clients.caller.send("Bye", "now")
        self.context.abort()


@pytest.fixture
def events() -> Events:
    return []


@pytest.fixture
def start(start_server: StartServer, events: Events) -> StartServer:
    """``await start(options=...)``: a server running ``LifecycleHub`` at ``PATH``."""

    async def start(**kwargs: Any) -> HubServer:
        return await start_server(LifecycleHub, factory=lambda: LifecycleHub(events), **kwargs)

    return start


def invocation(target: str, *json_args: str, invocation_id: str | None = None) -> bytes:
    id_part = f',"invocationId":"{invocation_id}"' if invocation_id is not None else ""
    return f'{{"type":1{id_part},"target":"{target}","arguments":[{",".join(json_args)}]}}\x1e'.encode()


# -- keep-alive ---------------------------------------------------------------------


async def test_keep_alive_ping_after_15_seconds_of_send_silence(
    autojump_clock: trio.abc.Clock, start: StartServer
) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        opened = trio.current_time()
        with trio.move_on_after(14.999):
            pytest.fail(f"nothing is due before 15 s, got {await client.record()!r}")
        assert await client.record() == PING
        assert trio.current_time() - opened == pytest.approx(15)
        assert await client.record() == PING
        assert trio.current_time() - opened == pytest.approx(30)


async def test_keep_alive_counts_from_the_last_send(
    autojump_clock: trio.abc.Clock, start: StartServer
) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        opened = trio.current_time()
        await trio.sleep(10)
        await client.send(invocation("Echo", "1", invocation_id="0"))
        assert await client.record() == b'{"type":3,"invocationId":"0","result":1}\x1e'
        assert await client.record() == PING
        assert trio.current_time() - opened == pytest.approx(25)


@pytest.mark.parametrize("interval", [0.5, 5.0, 40.0])
async def test_keep_alive_interval_is_configurable(
    autojump_clock: trio.abc.Clock, start: StartServer, interval: float
) -> None:
    server = await start(options=HubOptions(keep_alive_interval=interval))
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        opened = trio.current_time()
        for beat in (1, 2, 3):
            assert await client.record() == PING
            assert trio.current_time() - opened == pytest.approx(beat * interval)


async def test_no_keep_alive_on_transports_that_keep_themselves_alive(
    autojump_clock: trio.abc.Clock, start: StartServer
) -> None:
    server = await start()
    async with open_raw_client(server, keep_alive=False) as client:
        assert await client.record() == HANDSHAKE_OK
        with trio.move_on_after(600) as waited:
            pytest.fail(f"long polling gets no pings, got {await client.record()!r}")
        assert waited.cancelled_caught


# -- client timeout -----------------------------------------------------------------


async def test_a_client_that_never_pings_is_never_timed_out(
    autojump_clock: trio.abc.Clock, start: StartServer
) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        with trio.move_on_after(605):  # 40 pings, none of them answered
            while True:
                assert await client.record() == PING
        assert not client.ended.is_set()
        await client.send(invocation("Echo", '"still here"', invocation_id="0"))
        assert await client.record() == b'{"type":3,"invocationId":"0","result":"still here"}\x1e'


async def test_a_client_that_pinged_then_went_silent_is_closed_after_30_seconds(
    autojump_clock: trio.abc.Clock, start: StartServer, events: Events
) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(PING)
        pinged = trio.current_time()
        records = await client.rest()
        assert trio.current_time() - pinged == pytest.approx(30)
        assert records[-1] == CLOSE_ERROR_RECONNECT
        assert set(records[:-1]) <= {PING}
        await client.ended.wait()
    assert client.reason is CloseReason.CLIENT_TIMEOUT
    assert (await server.stats(PATH)).connections == 0
    [(_, _, error)] = [e for e in events if e[0] == "disconnected"]
    assert isinstance(error, Exception)


async def test_any_client_message_restarts_the_client_timeout(
    autojump_clock: trio.abc.Clock, start: StartServer
) -> None:
    server = await start(options=HubOptions(client_timeout=10))
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(PING)
        for n in range(5):
            await trio.sleep(9)
            await client.send(invocation("Echo", str(n)))  # non-blocking: no reply
        last = trio.current_time()
        assert not client.ended.is_set()
        assert [r for r in await client.rest() if r != PING] == [CLOSE_ERROR_RECONNECT]
        assert trio.current_time() - last == pytest.approx(10)


# -- handshake ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "handshake",
    [None, b'{"protocol":"json",'],
    ids=["nothing sent", "half a handshake"],
)
async def test_handshake_timeout(
    autojump_clock: trio.abc.Clock, start: StartServer, events: Events, handshake: bytes | None
) -> None:
    server = await start()
    started = trio.current_time()
    async with open_raw_client(server, handshake=handshake) as client:
        assert await client.record() == b'{"error":"Handshake was canceled."}\x1e'
        assert trio.current_time() - started == pytest.approx(15)
        assert await client.record() is None
        await client.ended.wait()
    assert client.reason is CloseReason.HANDSHAKE_TIMEOUT
    assert events == []


async def test_handshake_timeout_is_configurable_and_a_late_handshake_still_works(
    autojump_clock: trio.abc.Clock, start: StartServer
) -> None:
    server = await start(options=HubOptions(handshake_timeout=3))
    async with open_raw_client(server, handshake=None, connection_id="late") as late:
        await trio.sleep(2.9)
        await late.send(b'{"protocol":"json","version":1}\x1e')
        assert await late.record() == HANDSHAKE_OK
    started = trio.current_time()
    async with open_raw_client(server, handshake=None, connection_id="never") as never:
        assert await never.record() == b'{"error":"Handshake was canceled."}\x1e'
        assert trio.current_time() - started == pytest.approx(3)


@pytest.mark.parametrize(
    ("handshake", "reply"),
    [
        (
            b'{"protocol":"foo","version":1}\x1e',
            b'{"error":"The protocol \'foo\' is not supported."}\x1e',
        ),
        (
            b'{"protocol":"json","version":3}\x1e',
            b'{"error":"The server does not support version 3 of the \'json\' protocol."}\x1e',
        ),
    ],
    ids=["unknown protocol", "version 3"],
)
async def test_handshake_errors_are_answered_exactly_then_closed(
    start: StartServer, events: Events, handshake: bytes, reply: bytes
) -> None:
    server = await start()
    async with open_test_client(server, PATH, handshake=handshake) as client:
        assert client.handshake_reply == reply
        await client.closed.wait()
        assert drain(client) == []

    async with open_raw_client(server, handshake=handshake) as raw:
        assert await raw.rest() == [reply]
        await raw.ended.wait()
    assert raw.reason is CloseReason.HANDSHAKE_FAILED
    assert events == []
    assert (await server.stats(PATH)).connections == 0


async def test_records_batched_behind_the_handshake_are_handled(start: StartServer) -> None:
    server = await start()
    batched = b'{"protocol":"json","version":1}\x1e' + invocation("Echo", "7", invocation_id="0")
    async with open_raw_client(server, handshake=batched) as client:
        assert await client.record() == HANDSHAKE_OK
        assert await client.record() == b'{"type":3,"invocationId":"0","result":7}\x1e'


# -- protocol errors ----------------------------------------------------------------


def echo_record_of_size(size: int) -> bytes:
    """A blocking ``Echo("x…")`` record of exactly ``size`` bytes, separator included."""
    frame = invocation("Echo", '""', invocation_id="0")
    record = invocation("Echo", '"' + "x" * (size - len(frame)) + '"', invocation_id="0")
    assert len(record) == size
    return record


async def test_a_record_of_exactly_32_kib_is_accepted(start: StartServer) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(echo_record_of_size(32 * 1024))
        reply = await client.record()
        assert reply is not None
        assert reply.startswith(b'{"type":3,"invocationId":"0","result":"xxx')


async def test_a_record_over_32_kib_closes_the_connection_with_an_error(
    start: StartServer, events: Events
) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(echo_record_of_size(32 * 1024 + 1))
        assert await client.rest() == [CLOSE_ERROR_RECONNECT]
        await client.ended.wait()
    assert client.reason is CloseReason.PROTOCOL_ERROR
    assert events[-1][:2] == ("disconnected", "raw")
    assert isinstance(events[-1][2], Exception)


async def test_max_message_size_is_configurable(start: StartServer) -> None:
    server = await start(options=HubOptions(max_message_size=100))
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        record = echo_record_of_size(100)
        await client.send(record)
        value = record[record.index(b'"xxx') : record.index(b"]")]
        assert await client.record() == b'{"type":3,"invocationId":"0","result":%s}\x1e' % value
        await client.send(echo_record_of_size(101))
        assert await client.rest() == [CLOSE_ERROR_RECONNECT]


async def test_a_malformed_record_closes_the_connection_with_an_error(start: StartServer) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(b'{"type":1,"target":\x1e')
        assert await client.rest() == [CLOSE_ERROR_RECONNECT]
        await client.ended.wait()
    assert client.reason is CloseReason.PROTOCOL_ERROR


# -- slow consumers -----------------------------------------------------------------


async def test_a_client_that_stops_reading_is_closed_as_a_slow_consumer(
    autojump_clock: trio.abc.Clock, start: StartServer
) -> None:
    server = await start(options=HubOptions(outbox_size=8))
    everyone = server.hub_context(PATH).clients.all
    received: dict[str, list[int]] = {"fast1": [], "fast2": []}

    async def read(client: HubTestClient, into: list[int]) -> None:
        async for message in client.inbox:
            if isinstance(message, Invocation):
                into.append(message.arguments[0])

    async with (
        open_test_client(server, PATH, connection_id="fast1") as fast1,
        open_test_client(server, PATH, connection_id="fast2") as fast2,
        # Never read: its inbox fills, then the one-chunk pipe, then its outbox.
        open_test_client(server, PATH, connection_id="slow", buffer=1) as slow,
    ):
        sent = 0
        async with trio.open_nursery() as readers:
            readers.start_soon(read, fast1, received["fast1"])
            readers.start_soon(read, fast2, received["fast2"])
            # Bursts smaller than the outbox, with quiescence in between: readers
            # that keep reading never fall behind, the one that stopped does.
            while (await server.stats(PATH)).slow_consumers == 0:
                assert sent < 5_000, "the slow client was never closed"
                for _ in range(4):
                    await everyone.send("Receive", sent)
                    sent += 1
                await trio.testing.wait_all_tasks_blocked()
            stats = await server.stats(PATH)
            assert (stats.connections, stats.slow_consumers) == (2, 1)

            for _ in range(10):  # the others still get everything
                await everyone.send("Receive", sent)
                sent += 1
            await trio.testing.wait_all_tasks_blocked()
            assert received["fast1"] == received["fast2"] == list(range(sent))
            readers.cancel_scope.cancel()

        # What the slow client did get: a prefix, in order, then the error close.
        messages = [m async for m in slow.inbox if not isinstance(m, Ping)]
        items = [m.arguments[0] for m in messages[:-1] if isinstance(m, Invocation)]
        assert len(items) == len(messages) - 1
        assert items == list(range(len(items)))
        assert 1000 <= len(items) < sent - 10
        assert messages[-1] == Close(error="Connection closed with an error.", allow_reconnect=True)
        assert slow.close_message == messages[-1]
    assert (await server.stats(PATH)).slow_consumers == 1


# -- closing ------------------------------------------------------------------------


async def test_a_client_close_is_answered_with_a_plain_close(
    start: StartServer, events: Events
) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(CLOSE)
        assert await client.rest() == [CLOSE]
        await client.ended.wait()
    assert client.reason is CloseReason.CLIENT_CLOSED
    assert events == [("connected", "raw"), ("disconnected", "raw", None)]
    assert (await server.stats(PATH)).connections == 0


async def test_a_close_batched_behind_the_handshake_is_a_clean_close(
    start: StartServer, events: Events
) -> None:
    server = await start()
    async with open_raw_client(server, handshake=JSON_HANDSHAKE + CLOSE) as client:
        assert await client.rest() == [HANDSHAKE_OK, CLOSE]
        await client.ended.wait()
    assert client.reason is CloseReason.CLIENT_CLOSED
    assert events == [("connected", "raw"), ("disconnected", "raw", None)]


async def test_a_bad_record_batched_behind_the_handshake_is_a_protocol_error(
    start: StartServer,
) -> None:
    server = await start()
    async with open_raw_client(server, handshake=JSON_HANDSHAKE + b"nonsense\x1e") as client:
        assert await client.rest() == [HANDSHAKE_OK, CLOSE_ERROR_RECONNECT]
        await client.ended.wait()
    assert client.reason is CloseReason.PROTOCOL_ERROR


async def test_a_client_that_drops_the_transport_is_unregistered(
    start: StartServer, events: Events
) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(invocation("Echo", "1", invocation_id="0"))
        assert await client.record() == b'{"type":3,"invocationId":"0","result":1}\x1e'
        assert (await server.stats(PATH)).connections == 1
    assert client.reason is CloseReason.TRANSPORT_CLOSED
    assert (await server.stats(PATH)).connections == 0
    assert [e[:2] for e in events] == [("connected", "raw"), ("disconnected", "raw")]


async def test_abort_from_a_hub_method_sends_a_plain_close(
    start: StartServer, events: Events
) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(invocation("NotifyThenAbort"))
        # What was queued before the abort still goes out first.
        assert await client.rest() == [
            b'{"type":1,"target":"Bye","arguments":["now"]}\x1e',
            CLOSE,
        ]
        await client.ended.wait()
    assert client.reason is CloseReason.ABORTED
    assert events[-1] == ("disconnected", "raw", None)


async def test_abort_during_a_blocking_call_sends_no_completion(start: StartServer) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(invocation("Abort", invocation_id="0"))
        assert await client.rest() == [CLOSE]


async def test_on_connected_raising_closes_with_an_error_and_no_reconnect(
    start: StartServer, events: Events
) -> None:
    server = await start()
    refused = Principal({"sub": "u1", "fail_connect": True}, scheme="Test")
    async with open_raw_client(server, principal=refused) as client:
        assert await client.rest() == [HANDSHAKE_OK, CLOSE_ERROR]
        await client.ended.wait()
    assert client.reason is CloseReason.CONNECT_FAILED
    assert events == [("connected", "raw")]  # no disconnect hook for a refused connect
    assert await server.stats(PATH) == RouterStats(
        connections=0, users=0, groups=0, slow_consumers=0
    )


async def test_stop_closes_every_connection_and_run_returns(
    autojump_clock: trio.abc.Clock, hang_guard: None, events: Events
) -> None:
    server = HubServer()
    server.map_hub(PATH, LifecycleHub, factory=lambda: LifecycleHub(events))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with (
            open_raw_client(server, connection_id="a") as a,
            open_raw_client(server, connection_id="b") as b,
            open_test_client(server, PATH, connection_id="c") as c,
        ):
            for raw in (a, b):
                assert await raw.record() == HANDSHAKE_OK
            assert server.live_connections == 3
            stopping = trio.current_time()
            server.stop()
            assert await a.rest() == [CLOSE_RECONNECT]
            assert await b.rest() == [CLOSE_RECONNECT]
            await c.closed.wait()
            assert c.close_message == Close(allow_reconnect=True)
            await a.ended.wait()
            await b.ended.wait()
            assert (a.reason, b.reason) == (CloseReason.SHUTDOWN, CloseReason.SHUTDOWN)
        await server.wait_stopped()
    # No grace period was needed: every connection ended at once.
    assert trio.current_time() == stopping
    assert not server.running
    assert server.live_connections == 0
    assert sorted(e for e in events if e[0] == "disconnected") == [
        ("disconnected", "a", None),
        ("disconnected", "b", None),
        ("disconnected", "c", None),
    ]


async def test_stop_ends_connections_still_in_their_handshake_at_once(
    autojump_clock: trio.abc.Clock, hang_guard: None, events: Events
) -> None:
    # Connections run in the transport's task (``server.connect``), not in the
    # server's nursery, and one still in its handshake is not registered with
    # the router: ``run`` must end it anyway, without waiting for the grace.
    server = HubServer(options=HubOptions(handshake_timeout=60))
    server.map_hub(PATH, LifecycleHub, factory=lambda: LifecycleHub(events))
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(server.run, shutdown_grace=2))
        async with open_raw_client(server, handshake=None) as pending:
            await trio.testing.wait_all_tasks_blocked()  # connect() is running
            assert server.live_connections == 1
            stopping = trio.current_time()
            server.stop()
            await server.wait_stopped()
            assert trio.current_time() == stopping
            with trio.move_on_after(1):
                await pending.ended.wait()
            assert pending.ended.is_set(), (
                "run() returned but a connection it accepted is still running"
            )
            assert await pending.rest() == []  # no handshake, so no close record
    assert server.live_connections == 0
    assert events == []  # never connected, so never disconnected


async def test_no_new_connection_once_stopping(
    autojump_clock: trio.abc.Clock, hang_guard: None, events: Events
) -> None:
    server = HubServer()
    server.map_hub(PATH, LifecycleHub, factory=lambda: LifecycleHub(events))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with open_test_client(server, PATH) as kept:
            server.stop()
            server_side, client_side = memory_transport_pair()
            reason = await server.connect(server.hubs[PATH], server_side, connection_id="late")
            assert reason is CloseReason.SHUTDOWN
            assert await client_side.receive() is None  # closed without a word
            await kept.closed.wait()
        await server.wait_stopped()
    assert server.live_connections == 0
