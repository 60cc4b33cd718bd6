"""Stateful reconnect over real sockets (the demo in-process on hypercorn): a raw
WebSocket client through a TCP proxy the test cuts, and the security rules of a
resume: the connection's own user only (403 for another, 401 expired), 404 once the
disconnect timeout passed, and nothing for a client that did not ask.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from .conftest import Demo, serve_demo
from .support import bearer, records, refused_upgrade
from .test_http_auth import expired_token, token_for

CHAT = "/hubs/chat"
HANDSHAKE_V2 = '{"protocol":"json","version":2}\x1e'


class CuttableProxy:
    """A TCP proxy in front of the demo whose connections the test can cut (both
    sides closed at once: the server sees its WebSocket end without a Close)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self._pairs: list[tuple[trio.SocketStream, trio.SocketStream]] = []

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", self.target)
        self._pairs.append((client, server))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, server)
            nursery.start_soon(_pump, server, client)

    async def cut(self) -> None:
        pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            await client.aclose()
            await server.aclose()


async def _pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    try:
        while data := await source.receive_some():
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        with trio.move_on_after(1):
            await sink.aclose()


@pytest.fixture
async def short_demo(nursery: trio.Nursery) -> AsyncIterator[Demo]:
    """The demo with a 2 s disconnect timeout (the after-the-timeout test waits it out)."""
    async with serve_demo(nursery, disconnect_timeout=2.0) as demo:
        yield demo


async def negotiate(demo: Demo, token: str, *, stateful: bool = True) -> dict[str, Any]:
    query = "negotiateVersion=1" + ("&useStatefulReconnect=true" if stateful else "")
    response = await demo.http.post(f"{CHAT}/negotiate?{query}", headers=bearer(token))
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def next_records(ws: WebSocketConnection) -> list[dict[str, Any]]:
    """The next message's records, Pings left out."""
    while True:
        found = [r for r in records(await ws.get_message()) if r["type"] != 6]
        if found:
            return found


async def through_proxy(
    demo: Demo, nursery: trio.Nursery, user: str = "alice", *, stateful: bool = True
) -> tuple[CuttableProxy, str, str]:
    """A proxy in front of ``demo``, a connection negotiated by ``user``, and the
    WebSocket URL of that connection through the proxy."""
    proxy = CuttableProxy(demo.port)
    await nursery.start(proxy.serve)
    credential = token_for(user)
    token = (await negotiate(demo, credential, stateful=stateful))["connectionToken"]
    return proxy, token, f"ws://127.0.0.1:{proxy.port}{CHAT}?id={token}&access_token={credential}"


def invoke(invocation_id: str, target: str, *arguments: Any) -> str:
    record = {"type": 1, "invocationId": invocation_id, "target": target, "arguments": arguments}
    return json.dumps(record) + "\x1e"


async def test_negotiate_grants_it_only_to_a_client_that_asks(demo: Demo) -> None:
    alice = token_for("alice")
    assert (await negotiate(demo, alice))["useStatefulReconnect"] is True
    assert "useStatefulReconnect" not in await negotiate(demo, alice, stateful=False)


async def test_a_cut_websocket_resumes_with_nothing_lost_or_repeated(
    demo: Demo, nursery: trio.Nursery
) -> None:
    proxy, token, url = await through_proxy(demo, nursery)
    async with open_websocket_url(url) as ws:
        await ws.send_message(HANDSHAKE_V2)
        assert await ws.get_message() == "{}\x1e"
        await ws.send_message(invoke("1", "WhoAmI"))
        (first,) = await next_records(ws)
        assert first["invocationId"] == "1"
        await proxy.cut()
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
    connection = demo.app.connections.get(token)
    assert connection is not None
    link = connection.link
    assert link is not None

    # The server keeps the connection; the client resumes on a new socket.
    fresh = token_for("alice", lifetime=7200)
    url = f"ws://127.0.0.1:{proxy.port}{CHAT}?id={token}&access_token={fresh}"
    async with open_websocket_url(url) as ws:
        # Sequence first, then what we did not acknowledge: the completion of call 1.
        replay = await next_records(ws)
        while len(replay) < 2:
            replay += await next_records(ws)
        assert replay[0] == {"type": 9, "sequenceId": 1}
        assert replay[1]["invocationId"] == "1"
        assert replay[1]["result"]["userId"] == "alice@contoso.example"
        # Our resend of call 1 (id 1) is a duplicate: dropped, only acknowledged.
        await ws.send_message('{"type":9,"sequenceId":1}\x1e' + invoke("1", "WhoAmI"))
        await ws.send_message('{"type":8,"sequenceId":1}\x1e' + invoke("2", "WhoAmI"))
        seen = await next_records(ws)
        while not any(r.get("invocationId") == "2" for r in seen):
            seen += await next_records(ws)
        assert [r.get("invocationId") for r in seen if r["type"] == 3] == ["2"]
        assert link.resumes == 1
        assert link.stream is not None
        assert link.stream.latest_received == 2


async def cut_connection(demo: Demo, nursery: trio.Nursery, user: str) -> tuple[str, Any]:
    """A resumable chat connection of ``user`` whose socket was cut; its token and link."""
    proxy, token, url = await through_proxy(demo, nursery, user)
    async with open_websocket_url(url) as ws:
        await ws.send_message(HANDSHAKE_V2)
        assert await ws.get_message() == "{}\x1e"
        await proxy.cut()
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
    connection = demo.app.connections.get(token)
    assert connection is not None
    return token, connection.link


async def test_a_resume_by_another_user_or_with_an_expired_token_is_refused(
    demo: Demo, nursery: trio.Nursery
) -> None:
    token, link = await cut_connection(demo, nursery, "alice")
    url = f"{demo.ws_url}{CHAT}?id={token}"
    refused = await refused_upgrade(f"{url}&access_token={token_for('bob')}")
    assert refused.status_code == 403
    refused = await refused_upgrade(f"{url}&access_token={expired_token('alice')}")
    assert refused.status_code == 401
    # The connection is intact, still alice's, and resumes for her.
    assert link.resumable
    assert link.resumes == 0
    async with open_websocket_url(f"{url}&access_token={token_for('alice')}") as ws:
        assert (await next_records(ws))[0] == {"type": 9, "sequenceId": 1}
        await ws.send_message('{"type":9,"sequenceId":1}\x1e' + invoke("1", "WhoAmI"))
        seen = await next_records(ws)
        assert seen[-1]["result"]["userId"] == "alice@contoso.example"


async def test_after_the_disconnect_timeout_the_connection_is_gone(
    short_demo: Demo, nursery: trio.Nursery
) -> None:
    demo = short_demo
    token, link = await cut_connection(demo, nursery, "alice")
    assert demo.app.server.live_connections == 1
    await demo.app.server.wait_idle()  # the timeout passed: the connection ended
    assert not link.resumable
    refused = await refused_upgrade(
        f"{demo.ws_url}{CHAT}?id={token}&access_token={token_for('alice')}"
    )
    assert refused.status_code == 404


async def test_a_client_that_did_not_ask_is_not_resumable(
    demo: Demo, nursery: trio.Nursery
) -> None:
    proxy, token, url = await through_proxy(demo, nursery, stateful=False)
    alice = token_for("alice")
    async with open_websocket_url(url) as ws:
        await ws.send_message(HANDSHAKE_V2)  # version 2 without the grant: runs as 1
        assert await ws.get_message() == "{}\x1e"
        await ws.send_message(invoke("1", "WhoAmI"))
        (completion,) = await next_records(ws)
        assert completion["invocationId"] == "1"  # no Ack, no Sequence around it
        await proxy.cut()
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
    await demo.app.server.wait_idle()  # ended at once, no waiting for a resume
    refused = await refused_upgrade(f"{demo.ws_url}{CHAT}?id={token}&access_token={alice}")
    assert refused.status_code == 404
