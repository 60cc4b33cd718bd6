"""``ResumableLink`` with a real ``HubServer`` over in-memory sockets, in virtual time
(autojump_clock): the disconnect timeout, Ack pacing, a full replay buffer that stalls
the sender (never drops, never grows), and a resume's credential deadline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import trio

from triohub import Hub, HubOptions, HubServer
from triohub.actors.supervisor import CloseReason
from triohub.protocol import HubProtocol
from triohub.transports.memory import MemoryTransport
from triohub.transports.resumable import ResumableLink

HANDSHAKE_V2 = b'{"protocol":"json","version":2}\x1e'


class Socket(MemoryTransport):
    """An in-memory WebSocket (the link tells it the protocol's frame type)."""

    def use_protocol(self, protocol: HubProtocol) -> None:
        pass


def socket_pair() -> tuple[Socket, Socket]:
    to_client_send, to_client_receive = trio.open_memory_channel[bytes](1000)
    to_server_send, to_server_receive = trio.open_memory_channel[bytes](1000)
    return Socket(to_client_send, to_server_receive), Socket(to_server_send, to_client_receive)


class Counting(Hub):
    disconnected: list[BaseException | None] = []

    async def echo(self, value: Any) -> Any:
        return value

    async def counter(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def on_disconnected(self, error: BaseException | None) -> None:
        Counting.disconnected.append(error)


class Connection:
    """One resumable connection: the server side runs in ``nursery``."""

    def __init__(self, server: HubServer, client: Socket, link: ResumableLink) -> None:
        self.server = server
        self.client = client
        self.link = link
        self.reason: CloseReason | None = None
        self.ended = trio.Event()
        self._pending: list[dict[str, Any]] = []

    async def run(self, registration: Any) -> None:
        self.reason = await self.server.connect(
            registration,
            self.link,
            connection_id="c1",
            on_protocol=self.link.use_protocol,
            resumable=self.link,
        )
        self.ended.set()

    async def record(self, *, acks: bool = True) -> dict[str, Any]:
        """The next record from the server other than a Ping (and an Ack, unless ``acks``)."""
        while True:
            while not self._pending:
                chunk = await self.client.receive()
                assert chunk is not None, "the server closed the socket"
                self._pending += [json.loads(p) for p in chunk.decode()[:-1].split("\x1e")]
            record = self._pending.pop(0)
            if record.get("type") != 6 and (acks or record.get("type") != 8):
                return record

    async def send(self, *records: dict[str, Any]) -> None:
        await self.client.send([b"".join(json.dumps(r).encode() + b"\x1e" for r in records)])


async def open_connection(nursery: trio.Nursery, **options: Any) -> tuple[HubServer, Connection]:
    Counting.disconnected = []
    server = HubServer(options=HubOptions(allow_stateful_reconnect=True, **options))
    server.map_hub("/hub", Counting)
    await nursery.start(server.run)
    registration = server.hubs["/hub"]
    inner, client = socket_pair()
    link = ResumableLink(
        inner,
        connection_id="c1",
        disconnect_timeout=registration.options.disconnect_timeout,
        send_timeout=registration.options.send_timeout,
    )
    connection = Connection(server, client, link)
    nursery.start_soon(connection.run, registration)
    await client.send([HANDSHAKE_V2])
    assert await client.receive() == b"{}\x1e"
    return server, connection


async def resume(
    connection: Connection, nursery: trio.Nursery, deadline: float | None = None
) -> None:
    inner, client = socket_pair()
    connection.client = client
    connection._pending = []
    nursery.start_soon(connection.link.resume, inner, deadline)


async def test_on_disconnected_runs_once_when_the_timeout_passes(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    server, connection = await open_connection(nursery)
    await connection.client.aclose()  # dropped without a Close
    await trio.sleep(14.9)
    assert server.live_connections == 1
    assert Counting.disconnected == []
    assert connection.link.resumable
    await connection.ended.wait()
    assert trio.current_time() >= 15.0
    assert connection.reason is CloseReason.TRANSPORT_CLOSED
    assert len(Counting.disconnected) == 1
    assert not connection.link.resumable


async def test_a_resume_within_the_timeout_keeps_the_connection(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    server, connection = await open_connection(nursery)
    await connection.send({"type": 1, "invocationId": "1", "target": "Echo", "arguments": [1]})
    assert (await connection.record())["result"] == 1
    await connection.client.aclose()
    await trio.sleep(14)
    await resume(connection, nursery)
    assert await connection.record() == {"type": 9, "sequenceId": 1}
    assert (await connection.record())["result"] == 1  # unacknowledged: resent
    await trio.sleep(60)  # long past the timeout: still there
    assert server.live_connections == 1
    assert Counting.disconnected == []


async def test_acks_about_once_a_second(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    _, connection = await open_connection(nursery, keep_alive_interval=1000, client_timeout=2000)
    start = trio.current_time()
    await connection.send(
        {"type": 1, "invocationId": "1", "target": "Echo", "arguments": [1]},
        {"type": 1, "invocationId": "2", "target": "Echo", "arguments": [2]},
    )
    assert (await connection.record())["invocationId"] == "1"
    assert (await connection.record())["invocationId"] == "2"
    assert await connection.record() == {"type": 8, "sequenceId": 2}
    assert trio.current_time() - start == 1.0
    # Nothing new arrived: no more Acks.
    with trio.move_on_after(30):
        await connection.record()
        raise AssertionError("an Ack for nothing new")


async def test_a_full_buffer_stalls_the_stream_until_acks_come(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    _, connection = await open_connection(
        nursery, stateful_reconnect_buffer_size=300, keep_alive_interval=1000
    )
    await connection.send({"type": 4, "invocationId": "s", "target": "Counter", "arguments": [100]})
    items: list[int] = []
    with trio.move_on_after(60):  # a minute of silence from the client: no Acks
        while True:
            items.append((await connection.record(acks=False))["item"])
    stream = connection.link.stream
    assert stream is not None
    # Stalled, not dropped and not growing: at most the limit plus one record.
    assert 0 < len(items) < 100
    assert items == list(range(len(items)))
    assert 300 <= stream.buffered_bytes <= 300 + 40
    assert stream.buffered_count == len(items)
    assert connection.reason is None
    # Acknowledging lets the rest through, in order; each Ack when the stream stalls.
    acks = 0
    while True:
        with trio.move_on_after(5) as stalled:
            record = await connection.record(acks=False)
        if stalled.cancelled_caught:
            await connection.send({"type": 8, "sequenceId": stream.sent_count})
            acks += 1
            continue
        if record["type"] == 3:
            break
        items.append(record["item"])
    assert items == list(range(100))
    assert acks > 1


async def test_a_resume_takes_the_fresh_credentials_deadline(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    _, connection = await open_connection(nursery, keep_alive_interval=1000)
    await connection.client.aclose()
    await resume(connection, nursery, deadline=trio.current_time() + 5)
    assert await connection.record() == {"type": 9, "sequenceId": 1}
    await connection.ended.wait()
    assert connection.reason is CloseReason.EXPIRED
    assert trio.current_time() >= 5
