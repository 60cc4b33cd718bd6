"""Shared pieces of the transport tests: the hub under test, exact bytes, and
small SignalR steps (negotiate, long-poll, SSE) over the in-process ASGI client."""

from __future__ import annotations

import re
from typing import Any

import attrs
import orjson
import trio

from demo.echo import EchoHub
from triohub import HubServer
from triohub.transports.asgi import SignalRApp

from .asgi_client import AsgiClient, HttpExchange, Response

HUB = "/hubs/echo"

JSON_HANDSHAKE = b'{"protocol":"json","version":1}\x1e'
MSGPACK_HANDSHAKE = b'{"protocol":"messagepack","version":1}\x1e'
HANDSHAKE_OK = b"{}\x1e"
PING = b'{"type":6}\x1e'
CLOSE_RECONNECT = b'{"type":7,"allowReconnect":true}\x1e'

EVENT_STREAM = (b"accept", b"text/event-stream")

NO_CACHE = {
    "cache-control": "no-cache, no-store",
    "pragma": "no-cache",
    "expires": "Thu, 01 Jan 1970 00:00:00 GMT",
}

ID = re.compile(r"[A-Za-z0-9_-]{22}")


async def stop_gracefully(server: HubServer, within: float = 10) -> None:
    """Stop ``server`` and wait up to ``within`` seconds for its connections to end."""
    server.stop()
    with trio.move_on_after(within):
        await server.wait_stopped()


"""16 random bytes, Base64Url without padding."""


def invocation(target: str, *arguments: Any, invocation_id: str | None = None) -> bytes:
    """A JSON Invocation as the JS client writes it (section 13 vector 6)."""
    message: dict[str, Any] = {"target": target, "arguments": list(arguments)}
    if invocation_id is not None:
        message["invocationId"] = invocation_id
    message["type"] = 1
    return orjson.dumps(message) + b"\x1e"


def completion(invocation_id: str, result: Any) -> bytes:
    return orjson.dumps({"type": 3, "invocationId": invocation_id, "result": result}) + b"\x1e"


def records(data: bytes) -> list[bytes]:
    """The JSON records of a body, each with its 0x1E."""
    assert data.endswith(b"\x1e"), data
    return [part + b"\x1e" for part in data[:-1].split(b"\x1e")]


# -- the hub under test -----------------------------------------------------------


class Journal:
    """What the hub saw: connects and disconnects, with their (virtual) times."""

    def __init__(self) -> None:
        self.connected: dict[str, float] = {}
        self.disconnected: dict[str, tuple[float, BaseException | None]] = {}
        self._changed = trio.Event()

    def note(self, connection_id: str, *, error: BaseException | None, connected: bool) -> None:
        if connected:
            self.connected[connection_id] = trio.current_time()
        else:
            self.disconnected[connection_id] = (trio.current_time(), error)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_count(self, count: int) -> None:
        """Until ``count`` connections have disconnected."""
        while len(self.disconnected) < count:
            await self._changed.wait()

    async def wait_disconnected(self, connection_id: str) -> float:
        """When ``on_disconnected`` ran for ``connection_id``."""
        while connection_id not in self.disconnected:
            await self._changed.wait()
        return self.disconnected[connection_id][0]


class JournalHub(EchoHub):
    """The demo's EchoHub, recording its connections' lifetime events."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def on_connected(self) -> None:
        self.journal.note(self.context.connection_id, error=None, connected=True)

    async def on_disconnected(self, error: BaseException | None) -> None:
        self.journal.note(self.context.connection_id, error=error, connected=False)


@attrs.define
class Harness:
    """One ``HubServer`` with the journaling echo hub at ``HUB``, its ``SignalRApp``
    and an in-process client."""

    server: HubServer
    app: SignalRApp
    client: AsgiClient
    journal: Journal

    async def negotiate(self, query: str = "negotiateVersion=1") -> dict[str, Any]:
        response = await self.client.request("POST", HUB + "/negotiate", query=query)
        assert response.status == 200, response
        body: dict[str, Any] = orjson.loads(response.body)
        return body

    async def router_counts(self) -> tuple[int, int, int]:
        stats = await self.server.stats(HUB)
        return stats.connections, stats.users, stats.groups

    # -- long polling

    async def long_polling(self, handshake: bytes = JSON_HANDSHAKE) -> LongPoller:
        """Negotiate, first poll, handshake, and collect ``{}\\x1e``."""
        body = await self.negotiate()
        poller = LongPoller(self, body["connectionToken"], body["connectionId"])
        first = await poller.poll()
        assert (first.status, first.body) == (200, b""), first
        assert (await poller.post(handshake)).status == 200
        reply = await poller.poll()
        assert (reply.status, reply.body) == (200, HANDSHAKE_OK), reply
        return poller

    # -- SSE

    async def sse(self) -> SseStream:
        """Negotiate, open the event stream, handshake, and read ``data: {}\\x1e``."""
        body = await self.negotiate()
        token = body["connectionToken"]
        stream = self.client.open("GET", HUB, query=f"id={token}", headers=[EVENT_STREAM])
        assert await stream.read(3) == b":\r\n"
        sse = SseStream(self, token, body["connectionId"], stream)
        assert (await sse.post(JSON_HANDSHAKE)).status == 200
        assert await sse.event() == HANDSHAKE_OK
        return sse


@attrs.define
class LongPoller:
    harness: Harness
    token: str
    connection_id: str
    polls: int = 0

    def open_poll(self) -> HttpExchange:
        self.polls += 1
        return self.harness.client.open("GET", HUB, query=f"id={self.token}&_={self.polls}")

    async def poll(self) -> Response:
        return await self.open_poll().response()

    async def post(self, body: bytes) -> Response:
        return await self.harness.client.request(
            "POST",
            HUB,
            query=f"id={self.token}",
            headers=[(b"content-type", b"text/plain;charset=UTF-8")],
            body=body,
        )

    async def delete(self) -> Response:
        return await self.harness.client.request("DELETE", HUB, query=f"id={self.token}")

    async def collect(self, count: int) -> list[bytes]:
        """Poll until ``count`` JSON records arrived."""
        got: list[bytes] = []
        while len(got) < count:
            response = await self.poll()
            assert response.status == 200, response
            if response.body:
                got.extend(records(response.body))
        return got


@attrs.define
class SseStream:
    harness: Harness
    token: str
    connection_id: str
    stream: HttpExchange

    async def post(self, body: bytes) -> Response:
        return await self.harness.client.request("POST", HUB, query=f"id={self.token}", body=body)

    async def event(self) -> bytes:
        """The payload of the next ``data: ...\\r\\n\\r\\n`` event."""
        head = await self.stream.read(6)
        assert head == b"data: ", head + self.stream.unread
        payload = bytearray()
        while not payload.endswith(b"\r\n\r\n"):
            byte = await self.stream.read(1)
            assert byte, f"the stream ended inside an event: {bytes(payload)!r}"
            payload += byte
        return bytes(payload[:-4])


class Watch:
    """Another task: the most units of work (``done``) between two of its runs."""

    def __init__(self) -> None:
        self.done = 0
        self.worst = 0

    async def run(self) -> None:
        last = self.done
        while True:
            await trio.lowlevel.checkpoint()
            self.worst = max(self.worst, self.done - last)
            last = self.done
