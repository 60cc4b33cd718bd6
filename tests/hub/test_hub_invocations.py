"""Invocations end to end: results, argument checks, streams both ways, errors,
and the parallelism limit, with the exact texts of ``signalr-protocol.md`` section 9."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from hub_support import HANDSHAKE_OK, PATH, StartServer, drain, open_raw_client

from triohub import ClientStream, ClientStreamError, Hub, HubError, HubOptions, HubServer
from triohub.protocol import (
    CancelInvocation,
    Completion,
    Invocation,
    StreamInvocation,
    StreamItem,
)
from triohub.testing import HubTestClient, InvocationError, open_test_client


class Probe:
    """What the hub under test tells the test (one per test)."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.gate = trio.Event()


class WorkHub(Hub):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def echo(self, value: Any) -> Any:
        return value

    async def add(self, a: int, b: int) -> int:
        return a + b

    async def void(self) -> None:
        self.probe.log.append("void ran")

    async def typed(self, n: int, x: float, s: str, flag: bool, items: list[Any]) -> list[Any]:
        return [n, x, s, flag, items]

    async def throw(self, message: str) -> None:
        raise HubError(message)

    async def fail(self, message: str) -> None:
        raise ValueError(message)

    async def bad_result(self) -> object:
        return object()  # no protocol can encode this

    async def remember(self, value: Any) -> Any:
        """Per-connection state lives in context.items; the hub object is per call."""
        previous = self.context.items.get("value")
        self.context.items["value"] = value
        self.probe.log.append(getattr(self, "seen", None))
        self.seen = value
        return previous

    async def wait_for_gate(self) -> str:
        self.probe.log.append("waiting")
        await self.probe.gate.wait()
        return "opened"

    async def quick(self) -> str:
        self.probe.log.append("quick")
        return "quick"

    async def counter(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def ticks(self) -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await trio.sleep(1)
        finally:
            self.probe.log.append("ticks finally")

    async def stream_fails(self, hub_error: bool) -> AsyncIterator[int]:
        yield 1
        if hub_error:
            raise HubError("stream broke")
        raise ValueError("secret")

    async def upload_sum(self, source: ClientStream[float]) -> float:
        total: float = 0
        async for value in source:
            total += value
        return total

    async def upload_error(self, source: ClientStream[Any]) -> str:
        try:
            async for _ in source:
                pass
        except ClientStreamError as error:
            return f"client said: {error}"
        return "no error"

    async def zip_uploads(self, prefix: str, a: ClientStream[Any], b: ClientStream[Any]) -> str:
        return prefix + ",".join([str(x) async for x in a] + [str(y) async for y in b])

    async def doubled(self, source: ClientStream[int]) -> AsyncIterator[int]:
        async for value in source:
            yield value * 2


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def start(start_server: StartServer, probe: Probe) -> StartServer:
    async def start(**kwargs: Any) -> HubServer:
        return await start_server(WorkHub, factory=lambda: WorkHub(probe), **kwargs)

    return start


async def error_of(client: HubTestClient, target: str, *args: Any) -> str:
    with pytest.raises(InvocationError) as error:
        await client.invoke(target, *args)
    return str(error.value)


# -- plain methods ------------------------------------------------------------------


async def test_results_and_void_on_the_wire(start: StartServer, probe: Probe) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(b'{"target":"Add","arguments":[1,2],"invocationId":"0","type":1}\x1e')
        assert await client.record() == b'{"type":3,"invocationId":"0","result":3}\x1e'
        await client.send(b'{"target":"Void","arguments":[],"invocationId":"1","type":1}\x1e')
        assert await client.record() == b'{"type":3,"invocationId":"1","result":null}\x1e'
    assert probe.log == ["void ran"]


async def test_arguments_are_checked_against_annotations(start: StartServer) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        assert await client.invoke("Typed", 2.0, 3, "s", True, [1]) == [2, 3.0, "s", True, [1]]
        for bad in [
            ("x", 3, "s", True, []),  # str for int
            (True, 3, "s", True, []),  # bool is not an int
            (2.5, 3, "s", True, []),  # a fraction is not an int
            (2, "3", "s", True, []),
            (2, 3, 4, True, []),
            (2, 3, "s", 1, []),
            (2, 3, "s", True, {}),
        ]:
            assert await error_of(client, "Typed", *bad) == (
                "Failed to invoke 'Typed' due to an error on the server."
            )


@pytest.mark.parametrize("detailed", [False, True])
async def test_argument_count_and_type_errors(start: StartServer, detailed: bool) -> None:
    server = await start(options=HubOptions(enable_detailed_errors=detailed))
    base = "Failed to invoke 'add' due to an error on the server."
    async with open_test_client(server, PATH) as client:
        count = await error_of(client, "add", 1)
        many = await error_of(client, "add", 1, 2, 3)
        types = await error_of(client, "add", "one", 2)
    if detailed:
        assert count == base + (
            " InvalidDataException: Invocation provides 1 argument(s) but target expects 2."
        )
        assert many == base + (
            " InvalidDataException: Invocation provides 3 argument(s) but target expects 2."
        )
        assert types == base + (
            " InvalidDataException: Error binding arguments. Make sure that the types of the "
            "provided values match the types of the hub method being invoked."
        )
    else:
        assert count == many == types == base


@pytest.mark.parametrize("detailed", [False, True])
async def test_hub_error_shows_its_message_other_exceptions_only_when_detailed(
    start: StartServer, detailed: bool
) -> None:
    server = await start(options=HubOptions(enable_detailed_errors=detailed))
    async with open_test_client(server, PATH) as client:
        assert await error_of(client, "Throw", "nope") == (
            "An unexpected error occurred invoking 'Throw' on the server. HubException: nope"
        )
        assert await error_of(client, "Fail", "secret") == (
            "An unexpected error occurred invoking 'Fail' on the server."
            + (" ValueError: secret" if detailed else "")
        )
        # The connection survives hub errors.
        assert await client.invoke("Echo", "alive") == "alive"


async def test_unknown_method(start: StartServer) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(b'{"target":"Nope","arguments":[],"invocationId":"2","type":1}\x1e')
        assert await client.record() == (
            b'{"type":3,"invocationId":"2","error":"Failed to invoke \'Nope\' due to an error '
            b'on the server. HubException: Method does not exist."}\x1e'
        )


async def test_a_result_that_cannot_be_encoded_is_an_error_completion(
    autojump_clock: trio.abc.Clock, start: StartServer
) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        with trio.fail_after(5):  # the client must not be left waiting forever
            text = await error_of(client, "BadResult")
        assert text == "An unexpected error occurred invoking 'BadResult' on the server."
        assert await client.invoke("Echo", 1) == 1


async def test_a_non_blocking_call_never_gets_an_answer_not_even_an_error(
    start: StartServer,
) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        await client.send("Throw", "x")
        await client.send("Fail", "x")
        await client.send("Nope")
        await client.send("Add", 1)
        await client.send("Add", "a", "b")
        await client.send("Counter", 1)  # streaming method via a plain invocation
        await client.send("BadResult")
        await client.send("Add", 1, 2)
        assert await client.invoke("Echo", "done") == "done"
        await trio.testing.wait_all_tasks_blocked()
        assert drain(client) == []


async def test_each_call_gets_a_new_hub_but_context_items_persist(
    start: StartServer, probe: Probe
) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        assert await client.invoke("Remember", 1) is None
        assert await client.invoke("Remember", 2) == 1
    assert probe.log == [None, None]


# -- parallelism --------------------------------------------------------------------


async def test_one_invocation_at_a_time_by_default(start: StartServer, probe: Probe) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        await client.send_message(Invocation("WaitForGate", (), "1"))
        await client.send_message(Invocation("Quick", (), "2"))
        await trio.testing.wait_all_tasks_blocked()
        assert probe.log == ["waiting"]  # Quick waits for the first to finish
        assert drain(client) == []
        probe.gate.set()
        assert await client.next_message() == Completion.with_result("1", "opened")
        assert await client.next_message() == Completion.with_result("2", "quick")
    assert probe.log == ["waiting", "quick"]


async def test_max_parallel_invocations_lets_calls_overlap(
    start: StartServer, probe: Probe
) -> None:
    server = await start(options=HubOptions(max_parallel_invocations=2))
    async with open_test_client(server, PATH) as client:
        await client.send_message(Invocation("WaitForGate", (), "1"))
        await client.send_message(Invocation("Quick", (), "2"))
        assert await client.next_message() == Completion.with_result("2", "quick")
        probe.gate.set()
        assert await client.next_message() == Completion.with_result("1", "opened")


async def test_a_client_waiting_for_an_invocation_slot_is_not_timed_out(
    autojump_clock: trio.abc.Clock, start: StartServer, probe: Probe
) -> None:
    # The reader waits for the slot, so the client's pings stay unread; the
    # reference stops the client timeout while it dispatches a message
    # (HubConnectionHandler: StopClientTimeout / BeginClientTimeout).
    server = await start()
    async with open_test_client(server, PATH) as client:
        await client.ping()  # arms the 30 s client timeout
        await client.send_message(Invocation("WaitForGate", (), "1"))
        await client.send_message(Invocation("Quick", (), "2"))  # waits for the slot
        for seconds in range(10, 70, 10):  # a minute of a client pinging every 10 s
            await trio.sleep(10)
            assert not client.closed.is_set(), (
                f"closed after {seconds} s with {client.close_message}"
            )
            await client.ping()
        probe.gate.set()
        assert await client.next_message() == Completion.with_result("1", "opened")
        assert await client.next_message() == Completion.with_result("2", "quick")


async def test_streams_do_not_take_an_invocation_slot(start: StartServer, probe: Probe) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        await client.send_message(Invocation("WaitForGate", (), "1"))
        await trio.testing.wait_all_tasks_blocked()
        assert [item async for item in client.stream("Counter", 3)] == [0, 1, 2]
        probe.gate.set()
        assert await client.next_message() == Completion.with_result("1", "opened")


# -- server-to-client streams -------------------------------------------------------


async def test_stream_items_then_an_empty_completion_on_the_wire(start: StartServer) -> None:
    server = await start()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(b'{"target":"Counter","arguments":[2],"invocationId":"1","type":4}\x1e')
        assert [await client.record() for _ in range(3)] == [
            b'{"type":2,"invocationId":"1","item":0}\x1e',
            b'{"type":2,"invocationId":"1","item":1}\x1e',
            b'{"type":3,"invocationId":"1"}\x1e',
        ]


async def test_a_streaming_method_via_invocation_and_a_plain_one_via_stream_invocation(
    start: StartServer,
) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        assert await error_of(client, "Counter", 2) == (
            "The client attempted to invoke the streaming 'Counter' method "
            "with a non-streaming invocation."
        )
        with pytest.raises(InvocationError) as error:
            _ = [item async for item in client.stream("add", 1, 2)]
        assert str(error.value) == (
            "The client attempted to invoke the non-streaming 'add' method "
            "with a streaming invocation."
        )


async def test_cancel_invocation_stops_the_stream_and_completes_it(
    autojump_clock: trio.abc.Clock, start: StartServer, probe: Probe
) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        await client.send_message(StreamInvocation("7", "Ticks", ()))
        assert await client.next_message() == StreamItem("7", 0)
        assert await client.next_message() == StreamItem("7", 1)
        await client.send_message(CancelInvocation("7"))
        message = await client.next_message()
        while isinstance(message, StreamItem):  # items already on their way
            message = await client.next_message()
        assert message == Completion.empty("7")
        assert probe.log == ["ticks finally"]
        await client.send_message(CancelInvocation("7"))  # done already: ignored
        await client.send_message(CancelInvocation("unknown"))
        assert await client.invoke("Echo", "alive") == "alive"


async def test_breaking_out_of_a_stream_cancels_it(
    autojump_clock: trio.abc.Clock, start: StartServer, probe: Probe
) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        async for item in client.stream("Ticks"):
            if item == 3:
                break
        await trio.testing.wait_all_tasks_blocked()
        assert probe.log == ["ticks finally"]


async def test_a_duplicate_stream_invocation_id_is_refused(
    autojump_clock: trio.abc.Clock, start: StartServer
) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        await client.send_message(StreamInvocation("s", "Ticks", ()))
        assert await client.next_message() == StreamItem("s", 0)
        await client.send_message(StreamInvocation("s", "Counter", (1,)))
        assert await client.next_message() == Completion.with_error(
            "s", "Invocation ID 's' is already in use."
        )


@pytest.mark.parametrize("detailed", [False, True])
async def test_errors_while_streaming(start: StartServer, detailed: bool) -> None:
    server = await start(options=HubOptions(enable_detailed_errors=detailed))
    base = "An error occurred on the server while streaming results."
    async with open_test_client(server, PATH) as client:
        for hub_error, text in [
            (True, base + " HubException: stream broke"),
            (False, base + (" ValueError: secret" if detailed else "")),
        ]:
            await client.send_message(StreamInvocation("s", "StreamFails", (hub_error,)))
            assert await client.next_message() == StreamItem("s", 1)
            assert await client.next_message() == Completion.with_error("s", text)


# -- client-to-server streams -------------------------------------------------------


async def test_an_upload_stream_feeds_the_method(start: StartServer) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        await client.send_message(Invocation("UploadSum", (), "0", ("up",)))
        for value in (1, 2, 3.5):
            await client.send_message(StreamItem("up", value))
        await client.send_message(StreamItem("not-a-stream", 100))  # ignored
        await client.send_message(Completion.empty("up"))
        assert await client.next_message() == Completion.with_result("0", 6.5)


async def test_several_upload_streams_fill_their_parameters_in_order(start: StartServer) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        await client.send_message(Invocation("ZipUploads", ("got ",), "0", ("a", "b")))
        for stream_id, value in [("b", "b1"), ("a", "a1"), ("a", "a2")]:
            await client.send_message(StreamItem(stream_id, value))
        await client.send_message(Completion.empty("a"))
        await client.send_message(Completion.empty("b"))
        assert await client.next_message() == Completion.with_result("0", "got a1,a2,b1")


async def test_an_upload_into_a_server_stream(start: StartServer) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        await client.send_message(StreamInvocation("0", "Doubled", (), ("in",)))
        await client.send_message(StreamItem("in", 4))
        assert await client.next_message() == StreamItem("0", 8)
        await client.send_message(StreamItem("in", 5))
        await client.send_message(Completion.empty("in"))
        assert await client.next_message() == StreamItem("0", 10)
        assert await client.next_message() == Completion.empty("0")


@pytest.mark.parametrize("stream_ids", [(), ("a", "b")], ids=["none", "two"])
async def test_stream_count_mismatch(start: StartServer, stream_ids: tuple[str, ...]) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        with pytest.raises(InvocationError) as error:
            await client.invoke("UploadSum", stream_ids=stream_ids)
        assert str(error.value) == (
            "An unexpected error occurred invoking 'UploadSum' on the server. "
            f"HubException: Client sent {len(stream_ids)} stream(s), Hub method expects 1."
        )
        with pytest.raises(InvocationError) as error:
            await client.invoke("Echo", 1, stream_ids=("x",))
        assert str(error.value) == (
            "An unexpected error occurred invoking 'Echo' on the server. "
            "HubException: Client sent 1 stream(s), Hub method expects 0."
        )


async def test_a_client_completion_with_an_error_ends_the_upload_with_that_error(
    start: StartServer,
) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        await client.send_message(Invocation("UploadError", (), "0", ("up",)))
        await client.send_message(StreamItem("up", 1))
        await client.send_message(Completion.with_error("up", "disk full"))
        assert await client.next_message() == Completion.with_result("0", "client said: disk full")

        # Not caught by the method: an ordinary error, no details.
        await client.send_message(Invocation("UploadSum", (), "1", ("up2",)))
        await client.send_message(Completion.with_error("up2", "disk full"))
        assert await client.next_message() == Completion.with_error(
            "1", "An unexpected error occurred invoking 'UploadSum' on the server."
        )


async def test_uploads_left_open_are_completed_when_the_method_returns(start: StartServer) -> None:
    server = await start()
    async with open_test_client(server, PATH) as client:
        await client.send_message(Invocation("Echo", ("early",), "0"))
        assert await client.next_message() == Completion.with_result("0", "early")
        await client.send_message(Invocation("ZipUploads", ("",), "1", ("a", "b")))
        await client.send_message(Completion.empty("a"))
        await client.send_message(Completion.empty("b"))
        assert await client.next_message() == Completion.with_result("1", "")
        # Items for streams that ended are dropped, and the connection carries on.
        await client.send_message(StreamItem("a", 1))
        assert await client.invoke("Echo", "still fine") == "still fine"
