"""The ``pysignalr`` client (asyncio) against the demo.

pysignalr negotiates without ``negotiateVersion`` (version 0: it connects with
``id=<connectionId>``), passes every JSON key of a message to a dataclass and raises on
unknown message types, so any extra field or record from the server breaks it. It runs
in ``asyncio.run`` inside plain sync tests, or in a worker thread of a trio test
(test_pysignalr_native.py), never on trio's own thread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from pysignalr.client import SignalRClient
from pysignalr.messages import CompletionMessage
from pysignalr.protocol.json import JSONProtocol
from pysignalr.protocol.messagepack import MessagepackProtocol

from tests.demo_process import DemoServer

from .checks import ASK_CALLER_NO_RESULT, THROW_BOOM

pytestmark = pytest.mark.e2e

T = TypeVar("T")

WAIT = 5.0
PROTOCOLS = {"json": JSONProtocol, "messagepack": MessagepackProtocol}


class Session:
    """A connected pysignalr client with futures-based helpers."""

    def __init__(self, client: SignalRClient, task: asyncio.Task[None]) -> None:
        self.client = client
        self.task = task
        self.received: asyncio.Queue[list[Any]] = asyncio.Queue()
        self.errors: list[CompletionMessage] = []

    async def invoke(self, method: str, *args: Any) -> CompletionMessage:
        done: asyncio.Future[CompletionMessage] = asyncio.get_running_loop().create_future()

        async def on_completion(message: Any) -> None:
            done.set_result(message)

        await self.client.send(method, list(args), on_invocation=on_completion)
        return await self._wait(done, f"the Completion of {method}{args}")

    async def stream(self, method: str, *args: Any) -> tuple[list[Any], CompletionMessage]:
        items: list[Any] = []
        done: asyncio.Future[CompletionMessage] = asyncio.get_running_loop().create_future()

        async def on_next(item: Any) -> None:
            items.append(item)

        async def on_end(message: Any) -> None:
            done.set_result(message)

        await self.client.stream(method, list(args), on_next, on_end, on_end)
        return items, await self._wait(done, f"the end of the stream {method}{args}")

    async def next_received(self) -> list[Any]:
        return await self._wait(self.received.get(), "a 'Receive' invocation")

    async def _wait(self, awaitable: Awaitable[T], what: str) -> T:
        """Wait for ``awaitable``, failing at once if the client's run task died."""
        waiter = asyncio.ensure_future(awaitable)
        finished, _ = await asyncio.wait(
            {waiter, self.task}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter in finished:
            return waiter.result()
        waiter.cancel()
        if self.task in finished:
            raise AssertionError(f"pysignalr stopped while waiting for {what}: {self.task!r}")
        raise AssertionError(f"timed out after {WAIT} s waiting for {what}")


@asynccontextmanager
async def connected(url: str, protocol: str) -> AsyncIterator[Session]:
    client = SignalRClient(url, protocol=PROTOCOLS[protocol](), retry_count=1)
    opened = asyncio.Event()

    async def on_open() -> None:
        opened.set()

    client.on_open(on_open)
    task = asyncio.create_task(client.run())
    session = Session(client, task)

    async def on_receive(arguments: list[Any]) -> None:
        await session.received.put(arguments)

    async def on_error(message: CompletionMessage) -> None:
        session.errors.append(message)

    async def get_answer(arguments: list[Any]) -> Any:
        return arguments[0] * 2

    client.on("Receive", on_receive)
    client.on("getAnswer", get_answer)
    client.on_error(on_error)
    try:
        await session._wait(opened.wait(), "the connection to open")
        yield session
        assert not task.done(), f"pysignalr's run task ended: {task!r}"
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))


# -- scenarios: one connection to the echo hub at ``url`` each -----------------------------

NESTED = {"text": "héllo ☃", "n": [1, 2.5, None, True], "deep": {"a": {"b": []}}}


async def invoke(url: str, protocol: str) -> None:
    async with connected(url, protocol) as session:
        add = await session.invoke("Add", 2, 3)
        assert (add.result, add.error) == (5, None), add
        add_floats = await session.invoke("Add", 1.5, 2.25)
        assert add_floats.result == 3.75, add_floats
        echo = await session.invoke("Echo", NESTED)
        assert echo.result == NESTED, echo
        void = await session.invoke("Void")
        assert (void.result, void.error) == (None, None), void
        thrown = await session.invoke("Throw", "boom")
        assert thrown.error == THROW_BOOM, thrown
        assert session.errors == [thrown], "pysignalr's on_error saw the error Completion"


async def send_is_received_by_own_handler(url: str, protocol: str) -> None:
    async with connected(url, protocol) as session:
        arguments: list[Any] = [f"hello from pysignalr ({protocol})"]
        await session.client.send("Broadcast", arguments)
        assert await session.next_received() == arguments
        # The send got no Completion: pysignalr would have called on_error or failed
        # on a Completion for an invocation it never registered.
        after = await session.invoke("Add", 1, 1)
        assert after.result == 2, after
        assert session.received.empty(), "exactly one 'Receive' for one Broadcast"


async def server_stream(url: str, protocol: str) -> None:
    async with connected(url, protocol) as session:
        items, end = await session.stream("Counter", 5, 0)
        assert items == [0, 1, 2, 3, 4]
        assert (end.result, end.error) == (None, None), end
        empty, end = await session.stream("Counter", 0, 0)
        assert (empty, end.error) == ([], None), end


async def negotiate_v0_and_client_results(url: str, protocol: str) -> None:
    async with connected(url, protocol) as session:
        # Version 0: the connection id (no separate token) is the `id` of the socket URL.
        socket_url = session.client._transport._url
        (connection_id,) = parse_qs(urlsplit(socket_url).query)["id"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", connection_id), socket_url
        who = await session.invoke("WhoAmI")
        assert who.result == {
            "userId": None,
            "name": None,
            "roles": [],
            "connectionId": connection_id,
        }, who
        answer = await session.invoke("AskCaller", "getAnswer", 21)
        assert (answer.result, answer.error) == (42, None), answer
        missing = await session.invoke("AskCaller", "noSuchHandler", 1)
        assert missing.error == ASK_CALLER_NO_RESULT, missing


# -- against the demo (on each server: ``demo_server``) -----------------------------------


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_invoke(demo_server: DemoServer, protocol: str) -> None:
    run(invoke(demo_server.url("/hubs/echo"), protocol))


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_send_is_received_by_own_handler(demo_server: DemoServer, protocol: str) -> None:
    run(send_is_received_by_own_handler(demo_server.url("/hubs/echo"), protocol))


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_server_stream(demo_server: DemoServer, protocol: str) -> None:
    run(server_stream(demo_server.url("/hubs/echo"), protocol))


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_negotiate_v0_and_client_results(demo_server: DemoServer, protocol: str) -> None:
    run(negotiate_v0_and_client_results(demo_server.url("/hubs/echo"), protocol))
