"""Credential expiry: with ``close_on_authentication_expiration`` the connection is
cancelled at the credential's ``exp`` (a Trio deadline, no polling timer); without it
the connection outlives its token.

Virtual time throughout (``autojump_clock``). ``HubServer(clock=...)`` is the wall clock
the server converts a principal's ``expires_at`` (Unix time) with; it is tied to
``trio.current_time()`` so wall time and virtual time move together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

from triohub import Hub, HubOptions, HubServer, Principal
from triohub.protocol import Close, Completion, Invocation, StreamInvocation, StreamItem
from triohub.testing import HubTestClient, open_test_client

PATH = "/hub"
EPOCH = 1_900_000_000.0
LIFETIME = 60.0
STREAM_PERIOD = 7.0  # items at 0, 7, ..., 56: none due exactly at the 60 s deadline
CLOSE_EXPIRED = b'{"type":7,"error":"Authentication expired.","allowReconnect":true}\x1e'


def wall_clock() -> float:
    return EPOCH + trio.current_time()


class Probe:
    """What the hub's methods did, seen from the test."""

    def __init__(self) -> None:
        self.waiting = trio.Event()
        self.release = trio.Event()  # never set: the invocation only ends by cancellation
        self.wait_cancelled = trio.Event()
        self.stream_finally = trio.Event()
        self.items_sent = 0


class ExpiringHub(Hub):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def ticks(self) -> AsyncIterator[int]:
        try:
            while True:
                yield self.probe.items_sent
                self.probe.items_sent += 1
                await trio.sleep(STREAM_PERIOD)
        finally:
            self.probe.stream_finally.set()

    async def wait_for_release(self) -> str:
        self.probe.waiting.set()
        try:
            await self.probe.release.wait()
        except trio.Cancelled:
            self.probe.wait_cancelled.set()
            raise
        return "released"

    async def who_am_i(self) -> str | None:
        return self.context.user_id


Start = Callable[[bool], Awaitable[tuple[HubServer, Probe]]]


@pytest.fixture
def start(nursery: trio.Nursery) -> Start:
    async def start(close_on_expiration: bool) -> tuple[HubServer, Probe]:
        probe = Probe()
        server = HubServer(clock=wall_clock)
        server.map_hub(
            PATH,
            ExpiringHub,
            factory=lambda: ExpiringHub(probe),
            options=HubOptions(close_on_authentication_expiration=close_on_expiration),
        )
        await nursery.start(server.run)
        return server, probe

    return start


def alice(lifetime: float = LIFETIME) -> Principal:
    return Principal({"sub": "alice"}, scheme="Bearer", expires_at=wall_clock() + lifetime)


def record_chunks(client: HubTestClient) -> list[bytes]:
    """Every chunk the client receives from now on, as raw bytes.

    ``open_test_client`` starts the client's reader just before it yields and the reader
    looks ``receive`` up on each call, so wrapping it here (before the first checkpoint)
    sees every byte after the handshake reply.
    """
    chunks: list[bytes] = []
    transport: Any = client._transport
    original = transport.receive

    async def receive() -> bytes | None:
        data: bytes | None = await original()
        if data is not None:
            chunks.append(data)
        return data

    transport.receive = receive
    return chunks


async def drain(client: HubTestClient) -> list[Any]:
    messages: list[Any] = []
    async for message in client.inbox:
        messages.append(message)
    return messages


async def test_expiry_cancels_streams_and_invocations_and_closes(
    autojump_clock: trio.abc.Clock, start: Start
) -> None:
    server, probe = await start(True)
    principal = alice()
    async with open_test_client(server, PATH, principal=principal) as client:
        chunks = record_chunks(client)
        connected_at = trio.current_time()
        # Raw messages (no client-side bookkeeping): anything answering them lands in the
        # inbox, so the test sees whether a completion was ever sent.
        await client.send_message(StreamInvocation("stream-1", "Ticks", ()))
        await client.send_message(Invocation("WaitForRelease", (), "wait-1"))
        await probe.waiting.wait()
        first = await client.next_message()
        assert first == StreamItem("stream-1", 0)
        assert (await server.stats(PATH)).connections == 1
        assert (await server.stats(PATH)).users == 1

        with trio.fail_after(LIFETIME + 10):
            await client.closed.wait()
        closed_at = trio.current_time()
        messages = [first, *await drain(client)]

    assert closed_at - connected_at == pytest.approx(LIFETIME, abs=1e-6), (
        "the connection must end at the credential's expiry, not later or earlier"
    )
    assert wall_clock() >= principal.expires_at  # type: ignore[operator]

    # Exactly the expiry close record, last on the wire, once.
    assert client.close_message == Close(error="Authentication expired.", allow_reconnect=True)
    wire = b"".join(chunks)
    assert wire.endswith(CLOSE_EXPIRED), wire[-200:]
    assert wire.count(b'"type":7') == 1

    # The stream ran until the deadline and its generator's finally ran; the pending
    # invocation was cancelled and got no completion; nothing answered the stream either.
    assert messages[-1] == Close(error="Authentication expired.", allow_reconnect=True)
    items = [m for m in messages if isinstance(m, StreamItem)]
    assert [m.item for m in items] == list(range(int(LIFETIME // STREAM_PERIOD) + 1))
    assert not [m for m in messages if isinstance(m, Completion)], messages
    assert probe.stream_finally.is_set()
    assert probe.wait_cancelled.is_set()

    stats = await server.stats(PATH)
    assert (stats.connections, stats.users, stats.groups) == (0, 0, 0)
    assert server.live_connections == 0


async def test_without_the_option_the_connection_outlives_its_token(
    autojump_clock: trio.abc.Clock, start: Start
) -> None:
    server, probe = await start(False)
    principal = alice()
    async with open_test_client(server, PATH, principal=principal) as client:
        await client.send_message(StreamInvocation("stream-1", "Ticks", ()))
        await client.send_message(Invocation("WaitForRelease", (), "wait-1"))
        await probe.waiting.wait()
        await trio.sleep(LIFETIME * 3)
        assert wall_clock() > principal.expires_at  # type: ignore[operator]
        assert not client.closed.is_set()
        assert client.close_message is None
        assert not probe.stream_finally.is_set()
        assert not probe.wait_cancelled.is_set()
        assert probe.items_sent > LIFETIME * 3 // STREAM_PERIOD
        # One plain invocation runs at a time (max_parallel_invocations=1): release it.
        probe.release.set()
        assert await client.invoke("WhoAmI") == "alice"
        assert (await server.stats(PATH)).connections == 1


async def test_a_principal_without_expiry_is_never_closed(
    autojump_clock: trio.abc.Clock, start: Start
) -> None:
    server, _ = await start(True)
    forever = Principal({"sub": "alice"}, scheme="Cookies", expires_at=None)
    async with open_test_client(server, PATH, principal=forever) as client:
        # (about 240 pings pile up in the client inbox; it holds 1000)
        await trio.sleep(3600)
        assert await client.invoke("WhoAmI") == "alice"
        assert client.close_message is None


async def test_each_connection_has_its_own_deadline(
    autojump_clock: trio.abc.Clock, start: Start
) -> None:
    server, _ = await start(True)
    async with (
        open_test_client(server, PATH, principal=alice(30)) as short,
        open_test_client(server, PATH, principal=alice(90)) as long,
    ):
        began = trio.current_time()
        await short.closed.wait()
        assert trio.current_time() - began == pytest.approx(30, abs=1e-6)
        assert short.close_message == Close(error="Authentication expired.", allow_reconnect=True)
        assert not long.closed.is_set()
        assert await long.invoke("WhoAmI") == "alice"
        assert (await server.stats(PATH)).connections == 1
        await long.closed.wait()
        assert trio.current_time() - began == pytest.approx(90, abs=1e-6)
