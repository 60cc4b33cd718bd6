"""Thousands of clients dropping at once: every router entry goes, and
``on_disconnected`` runs once for each of them.

Real sockets against the native server, in this process: the failure this
guards against came from the scheduler and the router's mailbox being swamped
(15,000-19,000 clients dropped at once left dead router entries behind for good
and skipped their ``on_disconnected``: the unregistering shared the close
budget with the hooks and was dropped when it ran out). Two cores shared with
other work cannot hold that crowd, so the budget is cut instead
(``close_timeout`` = 50 ms): with 5,000 clients it runs out just as surely
when any step of the close shares it.
"""

from __future__ import annotations

import resource
import socket
import struct

import trio

from triohub import Hub, HubOptions, HubServer
from triohub.transports.native import serve_native

PATH = "/hubs/crowd"
CLIENTS = 5_000
UPGRADE = (
    f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()
HANDSHAKE = b'{"protocol":"json","version":1}\x1e'
# A masked text frame; an all-zero mask leaves the payload as it is.
HANDSHAKE_FRAME = bytes((0x81, 0x80 | len(HANDSHAKE))) + b"\0\0\0\0" + HANDSHAKE
LINGER_RESET = struct.pack("ii", 1, 0)


class Tally:
    def __init__(self) -> None:
        self.connected = 0
        self.disconnected = 0
        self.all_connected = trio.Event()


class CrowdHub(Hub):
    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    async def on_connected(self) -> None:
        await self.groups.add(self.context.connection_id, "crowd")
        self.tally.connected += 1
        if self.tally.connected == CLIENTS:
            self.tally.all_connected.set()

    async def on_disconnected(self, error: BaseException | None) -> None:
        self.tally.disconnected += 1


async def open_client(port: int, sockets: list[trio.socket.SocketType]) -> None:
    """Upgrade, complete the SignalR handshake, and leave the socket open."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await sock.connect(("127.0.0.1", port))
    await sock.send(UPGRADE)
    received = b""
    while b"\r\n\r\n" not in received:
        received += await sock.recv(4096)
    assert received.startswith(b"HTTP/1.1 101"), received
    await sock.send(HANDSHAKE_FRAME)
    while b"{}\x1e" not in received:
        chunk = await sock.recv(4096)
        assert chunk, "the server closed during the handshake"
        received += chunk
    sockets.append(sock)


async def test_five_thousand_clients_dropping_at_once_leave_nothing_behind() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    assert hard >= 2 * CLIENTS + 100, f"needs {2 * CLIENTS + 100} file descriptors, has {hard}"

    tally = Tally()
    server = HubServer(options=HubOptions(close_timeout=0.05))
    server.map_hub(PATH, CrowdHub, factory=lambda: CrowdHub(tally))
    sockets: list[trio.socket.SocketType] = []
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            _, port = await nursery.start(serve_native, server)
            limiter = trio.CapacityLimiter(256)  # stay inside the listen backlog

            async def connect_one() -> None:
                async with limiter:
                    await open_client(port, sockets)

            async with trio.open_nursery() as clients:
                for _ in range(CLIENTS):
                    clients.start_soon(connect_one)
            # The handshake reply goes out before ``on_connected`` runs.
            await tally.all_connected.wait()
            before = await server.stats(PATH)
            assert (before.connections, before.groups) == (CLIENTS, 1)

            # Everyone drops at once, with a reset: no close handshake, no goodbye.
            for sock in sockets:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                sock.close()
            await server.wait_idle()  # every connection's close has run to its end

            after = await server.stats(PATH)
            assert (after.connections, after.users, after.groups) == (0, 0, 0), after
            assert tally.disconnected == CLIENTS
            nursery.cancel_scope.cancel()
