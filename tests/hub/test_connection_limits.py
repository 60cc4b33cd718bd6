"""What one connection may hold on the server is bounded: outbox bytes, open
streams, pending client results, groups and group names. Refusals answer the
call; a client that keeps running into limits is closed, with the reason."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from hub_support import HANDSHAKE_OK, PATH, StartServer, drain, open_raw_client

from triohub import ClientStream, Hub, HubOptions, HubServer
from triohub.actors.supervisor import CloseReason
from triohub.hub.hub import LimitExceeded
from triohub.protocol import Close, Completion, Invocation, StreamInvocation, StreamItem
from triohub.testing import HubTestClient, InvocationError, open_test_client

KIB = 1024


class Tally:
    def __init__(self) -> None:
        self.echoes = 0
        self.gate = trio.Event()
        self.uploads: list[ClientStream[Any]] = []


class LimitsHub(Hub):
    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    async def echo(self, value: Any) -> Any:
        self.tally.echoes += 1
        return value

    async def upload_sum(self, source: ClientStream[float]) -> float:
        return sum([value async for value in source])

    async def zip_uploads(self, a: ClientStream[Any], b: ClientStream[Any]) -> list[Any]:
        return [x async for x in a] + [y async for y in b]

    async def held_sum(self, source: ClientStream[int]) -> int:
        self.tally.uploads.append(source)
        await self.tally.gate.wait()
        return sum([value async for value in source])

    async def ticks(self) -> AsyncIterator[int]:
        n = 0
        while True:
            yield n
            n += 1
            await trio.sleep(1)

    async def join_group(self, group: str) -> None:
        await self.groups.add(self.context.connection_id, group)

    async def leave_group(self, group: str) -> None:
        await self.groups.remove(self.context.connection_id, group)


@pytest.fixture
def tally() -> Tally:
    return Tally()


@pytest.fixture
def start(start_server: StartServer, tally: Tally) -> StartServer:
    async def start(**kwargs: Any) -> HubServer:
        return await start_server(LimitsHub, factory=lambda: LimitsHub(tally), **kwargs)

    return start


async def error_of(client: HubTestClient, target: str, *args: Any) -> str:
    with pytest.raises(InvocationError) as error:
        await client.invoke(target, *args)
    return str(error.value)


def too_many_streams(target: str, limit: int) -> Completion:
    return Completion.with_error(
        "x",
        f"An unexpected error occurred invoking '{target}' on the server. HubException: "
        f"Too many open streams: a connection may have {limit} "
        "(streams to and from the client together).",
    )


def echo_record(invocation_id: int, size: int) -> bytes:
    payload = "x" * size
    return b'{"type":1,"invocationId":"%d","target":"Echo","arguments":["%s"]}\x1e' % (
        invocation_id,
        payload.encode(),
    )


# -- outbox bytes -------------------------------------------------------------------


async def test_large_broadcasts_to_a_client_that_stopped_reading_close_it_by_bytes(
    autojump_clock: trio.abc.Clock, start_server: StartServer
) -> None:
    """Twenty 64 KiB broadcasts are 20 records (far below ``outbox_size``) but
    1.25 MiB: past the default ``outbox_max_bytes``, a slow consumer. The same
    number of small ones is not."""
    server = await start_server(LimitsHub, factory=lambda: LimitsHub(Tally()))
    everyone = server.hub_context(PATH).clients.all
    # buffer=1: the unread handshake reply fills the pipe, the writer blocks.
    async with open_raw_client(server, buffer=1) as client:
        for n in range(20):
            await everyone.send("Receive", n, "x" * 100)
        await trio.testing.wait_all_tasks_blocked()
        assert (await server.stats(PATH)).slow_consumers == 0

        for n in range(20):
            await everyone.send("Receive", n, "x" * (64 * KIB))
        await trio.testing.wait_all_tasks_blocked()
        assert (await server.stats(PATH)).slow_consumers == 1
        await client.ended.wait()
    assert client.reason is CloseReason.SLOW_CONSUMER


async def test_pipelined_echoes_to_a_client_that_stopped_reading_wait_for_room(
    start_server: StartServer,
) -> None:
    """A client pipelines 8 KiB echoes and reads nothing: its own results wait
    for room in its outbox (1 MiB), so the server stops reading its records
    instead of piling up a result per record (back-pressure, as the reference's
    pipes do)."""
    tally = Tally()
    server = await start_server(LimitsHub, factory=lambda: LimitsHub(tally))
    async with open_raw_client(server, buffer=1) as client, trio.open_nursery() as nursery:

        async def pipeline() -> None:
            for n in range(400):
                await client.send(echo_record(n, 8 * KIB))

        nursery.start_soon(pipeline)
        await trio.testing.wait_all_tasks_blocked()
        # 1 MiB of ~8.1 KiB results, plus the one in the blocked write.
        assert 120 <= tally.echoes <= 130, tally.echoes
        nursery.cancel_scope.cancel()


# -- streams ------------------------------------------------------------------------


async def test_uploads_and_server_streams_count_together_toward_max_streams(
    autojump_clock: trio.abc.Clock, start: StartServer
) -> None:
    server = await start(options=HubOptions(max_streams=3))
    async with open_test_client(server, PATH) as client:
        await client.send_message(Invocation("UploadSum", (), "u1", ("a",)))
        await client.send_message(StreamInvocation("t1", "Ticks", ()))
        assert await client.next_message() == StreamItem("t1", 0)
        # Two upload streams where one is left: refused, nothing opened.
        await client.send_message(Invocation("ZipUploads", (), "x", ("b", "c")))
        assert await client.next_message() == too_many_streams("ZipUploads", 3)
        await client.send_message(Invocation("UploadSum", (), "u2", ("d",)))
        await client.send_message(StreamInvocation("x", "Ticks", ()))
        assert await client.next_message() == too_many_streams("Ticks", 3)

        # Ending a stream gives its place back.
        await client.send_message(StreamItem("a", 2))
        await client.send_message(Completion.empty("a"))
        assert await client.next_message() == Completion.with_result("u1", 2)
        await client.send_message(Invocation("UploadSum", (), "u3", ("e",)))
        await client.send_message(Invocation("UploadSum", (), "x", ("f",)))
        assert await client.next_message() == too_many_streams("UploadSum", 3)
        for stream_id in ("d", "e"):
            await client.send_message(Completion.empty(stream_id))
        replies = {await client.next_message(), await client.next_message()}
        assert replies == {Completion.with_result("u2", 0), Completion.with_result("u3", 0)}
        # Plain calls were never counted.
        assert await client.invoke("Echo", "still here") == "still here"


async def test_twenty_thousand_upload_calls_meet_the_limit_then_the_door(
    start: StartServer,
) -> None:
    """The finding: 20,000 open ``UploadSum`` calls on one connection, each
    holding a task and a stream. With the defaults 32 are open, 20 are refused,
    and the connection is closed, saying why."""
    server = await start()
    async with open_raw_client(server) as client, trio.open_nursery() as nursery:
        assert await client.record() == HANDSHAKE_OK

        async def flood() -> None:
            # The server shutting the door mid-flood is the expected end.
            with contextlib.suppress(trio.BrokenResourceError):
                for n in range(20_000):
                    await client.send(
                        b'{"type":1,"invocationId":"%d","target":"UploadSum","arguments":[],'
                        b'"streamIds":["s%d"]}\x1e' % (n, n)
                    )

        nursery.start_soon(flood)
        records = await client.rest()
        nursery.cancel_scope.cancel()
    refusal = (
        b"An unexpected error occurred invoking 'UploadSum' on the server. HubException: "
        b"Too many open streams: a connection may have 32 (streams to and from the client "
        b"together)."
    )
    assert records[:20] == [
        b'{"type":3,"invocationId":"%d","error":"%s"}\x1e' % (n, refusal) for n in range(32, 52)
    ]
    assert records[20:] == [
        b'{"type":7,"error":"Connection closed with an error. HubException: 20 requests '
        b"were refused within 60 s for exceeding the connection's limits.\"}\x1e"
    ]
    assert client.reason is CloseReason.LIMITS_EXCEEDED
    assert server.live_connections == 0


async def test_refusals_are_counted_per_window(
    autojump_clock: trio.abc.Clock, start: StartServer
) -> None:
    server = await start(options=HubOptions(max_streams=1, max_refusals=3, refusal_window=10))
    async with open_test_client(server, PATH) as client:
        await client.send_message(StreamInvocation("t", "Ticks", ()))
        for _ in range(2):
            await client.send_message(StreamInvocation("x", "Ticks", ()))
        await trio.sleep(10)  # the window ends: two refusals were not enough
        for _ in range(2):
            await client.send_message(StreamInvocation("x", "Ticks", ()))
        await trio.sleep(5)
        messages = [m for m in drain(client) if isinstance(m, Completion)]
        assert messages == [too_many_streams("Ticks", 1)] * 4
        assert client.close_message is None
        await client.send_message(StreamInvocation("x", "Ticks", ()))  # the third in 10 s
        await client.closed.wait()
    assert client.close_message == Close(
        error="Connection closed with an error. HubException: 3 requests were refused "
        "within 10 s for exceeding the connection's limits."
    )


async def test_an_upload_buffers_at_most_stream_buffer_capacity_items(
    start: StartServer, tally: Tally
) -> None:
    """The method does not read yet: two items wait in its stream, the reader
    waits with the third, and the connection's later records wait behind it."""
    server = await start(options=HubOptions(stream_buffer_capacity=2))
    async with open_test_client(server, PATH) as client:
        await client.send_message(Invocation("HeldSum", (), "0", ("up",)))
        for value in range(1, 11):
            await client.send_message(StreamItem("up", value))
        await client.send_message(Completion.empty("up"))
        await client.send_message(Invocation("Echo", ("after",), "1"))
        await trio.testing.wait_all_tasks_blocked()
        (source,) = tally.uploads
        assert source._receive.statistics().current_buffer_used == 2
        assert tally.echoes == 0
        tally.gate.set()
        replies = {await client.next_message(), await client.next_message()}
    assert replies == {Completion.with_result("0", 55), Completion.with_result("1", "after")}


# -- groups -------------------------------------------------------------------------


async def test_group_names_are_limited_in_length(start: StartServer) -> None:
    server = await start(options=HubOptions(max_group_name_length=10))
    async with open_test_client(server, PATH) as client:
        await client.invoke("JoinGroup", "x" * 10)
        assert await error_of(client, "JoinGroup", "y" * 30_000) == (
            "An unexpected error occurred invoking 'JoinGroup' on the server. HubException: "
            "Group names may be at most 10 characters long; this one has 30000."
        )
    assert (await server.stats(PATH)).groups == 0


async def test_a_connection_is_in_at_most_max_groups_per_connection_groups(
    start: StartServer,
) -> None:
    server = await start()  # the default: 100
    async with open_test_client(server, PATH, connection_id="c") as client:
        for n in range(100):
            await client.invoke("JoinGroup", f"g{n}")
        await client.invoke("JoinGroup", "g0")  # already in: no change, no refusal
        assert await error_of(client, "JoinGroup", "one too many") == (
            "An unexpected error occurred invoking 'JoinGroup' on the server. HubException: "
            "A connection may be in at most 100 groups."
        )
        assert (await server.stats(PATH)).groups == 100
        await client.invoke("LeaveGroup", "g0")
        await client.invoke("JoinGroup", "one too many")
        assert (await server.stats(PATH)).groups == 100


async def test_group_refusals_count_toward_closing_the_connection(start: StartServer) -> None:
    server = await start(options=HubOptions(max_groups_per_connection=1, max_refusals=3))
    async with open_test_client(server, PATH) as client:
        await client.invoke("JoinGroup", "mine")
        for n in range(2):
            await error_of(client, "JoinGroup", f"more{n}")
        await client.send("JoinGroup", "more2")  # no invocation id: still a refusal
        await client.closed.wait()
    assert client.close_message == Close(
        error="Connection closed with an error. HubException: 3 requests were refused "
        "within 60 s for exceeding the connection's limits."
    )
    assert (await server.stats(PATH)).groups == 0


# -- client results -----------------------------------------------------------------


async def test_pending_client_results_per_connection_are_limited(
    autojump_clock: trio.abc.Clock, start: StartServer
) -> None:
    server = await start(options=HubOptions(max_pending_client_results=2))
    target = server.hub_context(PATH).clients.client("quiet")
    async with open_raw_client(server, connection_id="quiet") as client:
        assert await client.record() == HANDSHAKE_OK
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(target.invoke, "Never")  # a client that never answers
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(LimitExceeded) as error:
                await target.invoke("Never")
            assert str(error.value) == "Connection 'quiet' already has 2 client results pending."
            nursery.cancel_scope.cancel()
        # Those calls are over: room again (answered this time).
        async with trio.open_nursery() as nursery:
            nursery.start_soon(target.invoke, "Answered")
            assert await client.record() == (
                b'{"type":1,"invocationId":"s1","target":"Never","arguments":[]}\x1e'
            )
            nursery.cancel_scope.cancel()


# -- options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_streams", 0),
        ("max_streams", 1.5),
        ("max_streams", True),
        ("max_pending_client_results", -1),
        ("max_groups_per_connection", 0),
        ("max_group_name_length", None),
        ("max_refusals", 0),
        ("refusal_window", 0),
        ("outbox_max_bytes", 0),
        ("outbox_size", 2.0),
        ("max_message_size", 0),
        ("close_timeout", -1.0),
    ],
)
def test_limits_must_be_positive(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"HubOptions.{field} must be (a )?positive"):
        HubOptions(**{field: value})


def test_the_limit_defaults() -> None:
    options = HubOptions()
    assert (
        options.max_streams,
        options.max_pending_client_results,
        options.max_groups_per_connection,
        options.max_group_name_length,
        options.max_refusals,
        options.refusal_window,
        options.outbox_max_bytes,
    ) == (32, 10, 100, 1024, 20, 60.0, 1024 * 1024)
    assert HubOptions(max_message_size=None).max_message_size is None
