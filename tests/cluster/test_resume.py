"""Stateful reconnect across the nodes of a cluster (two nodes in one Trio run on a
real redis-server): negotiate grants it, a resume that lands on the node that does
not hold the connection is relayed to the holder (Sequence, replay, duplicates
dropped), the holder and the relaying node both check the user (403 another user,
401 expired, the connection intact), and a resume whose holder is gone gets 404."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
import trio

from triohub import Hub, HubOptions, Principal
from triohub.transports.asgi import SignalRApp
from triohub.transports.cluster import TokenSigner

from ..backplane.redis_server import RedisServer
from ..backplane.support import PATH, PREFIX
from ..transports.native_support import token_for
from .test_tokens import KEY, Node, auth, first_of, serving_nodes

HANDSHAKE_V2 = '{"protocol":"json","version":2}\x1e'


class ResumeHub(Hub):
    async def echo(self, value: Any) -> Any:
        return value

    async def who(self) -> str | None:
        return self.context.user_id


@pytest.fixture
async def nodes(redis: RedisServer, nursery: trio.Nursery) -> AsyncIterator[list[Node]]:
    options = HubOptions(allow_stateful_reconnect=True)
    async with serving_nodes(redis.url, nursery, ResumeHub, options=options) as made:
        yield made


async def negotiate(node: Node, user: str, *, stateful: bool = True) -> dict[str, Any]:
    query = "negotiateVersion=1" + ("&useStatefulReconnect=true" if stateful else "")
    response = await node.client.request(
        "POST", f"{PATH}/negotiate", query=query, headers=auth(user)
    )
    assert response.status == 200, response
    document: dict[str, Any] = json.loads(response.body)
    return document


async def websocket(node: Node, token: str, credential: str) -> Any:
    headers = [(b"authorization", f"Bearer {credential}".encode())]
    socket = node.client.websocket(PATH, query=f"id={token}", headers=headers)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for event in (socket.accepted, socket.closed):
                nursery.start_soon(first_of, event, nursery.cancel_scope)
    return socket


def invoke(invocation_id: str, target: str, *arguments: Any) -> str:
    record = {"type": 1, "invocationId": invocation_id, "target": target, "arguments": arguments}
    return json.dumps(record) + "\x1e"


async def records(socket: Any, count: int) -> list[dict[str, Any]]:
    """The next ``count`` records but Pings and Acks."""
    found: list[dict[str, Any]] = []
    with trio.fail_after(10):
        while len(found) < count:
            frame = await socket.frame()
            text = frame.decode() if isinstance(frame, bytes) else frame
            found += [
                record
                for part in text.split("\x1e")
                if part and (record := json.loads(part))["type"] not in (6, 8)
            ]
    return found


async def cut_connection(a: Node, user: str = "alice") -> str:
    """A resumable connection of ``user`` held by ``a``, which answered one call
    (unacknowledged) before its socket dropped; its token."""
    document = await negotiate(a, user)
    assert document["useStatefulReconnect"] is True
    token: str = document["connectionToken"]
    socket = await websocket(a, token, token_for(user))
    socket.send_text(HANDSHAKE_V2)
    with trio.fail_after(10):
        assert await socket.frame() == "{}\x1e"
    socket.send_text(invoke("1", "who"))
    (done,) = await records(socket, 1)
    assert done["result"] == user
    socket.disconnect(1006)
    await detached(link_of(a, token))
    return token


async def detached(link: Any) -> None:
    """Until the holder saw the socket drop (the relay's end travels through Redis)."""
    with trio.fail_after(10):
        while link.stream.attached:  # noqa: ASYNC110 - another node's state, over Redis
            await trio.sleep(0.01)


def link_of(node: Node, token: str) -> Any:
    app = node.client.app
    assert isinstance(app, SignalRApp)
    connection = app.endpoint.connections.get(token)
    assert connection is not None
    return connection.link


async def test_a_resume_on_another_node_is_relayed_to_the_holder(nodes: list[Node]) -> None:
    a, b = nodes
    token = await cut_connection(a)
    link = link_of(a, token)

    socket = await websocket(b, token, token_for("alice", lifetime=7200))
    assert socket.accepted.is_set(), socket.rejection
    # The holder's Sequence first, then what the client did not acknowledge.
    replay = await records(socket, 2)
    assert replay[0] == {"type": 9, "sequenceId": 1}
    assert (replay[1]["invocationId"], replay[1]["result"]) == ("1", "alice")
    # The resent call 1 is a duplicate (dropped); call 2 runs once, on the holder.
    socket.send_text('{"type":9,"sequenceId":1}\x1e' + invoke("1", "who"))
    socket.send_text('{"type":8,"sequenceId":1}\x1e' + invoke("2", "echo", "via b"))
    (second,) = await records(socket, 1)
    assert (second["invocationId"], second["result"]) == ("2", "via b")
    assert link.resumes == 1
    assert (a.server.live_connections, b.server.live_connections) == (1, 0)

    # Dropped again: this time the resume lands on the holder itself.
    socket.disconnect(1006)
    await detached(link)
    local = await websocket(a, token, token_for("alice"))
    assert (await records(local, 1))[0] == {"type": 9, "sequenceId": 2}
    local.send_text('{"type":9,"sequenceId":3}\x1e' + invoke("3", "echo", "on a"))
    (third,) = await records(local, 1)
    assert (third["invocationId"], third["result"]) == ("3", "on a")
    assert link.resumes == 2


async def test_another_user_or_an_expired_credential_is_refused_on_the_relaying_node(
    nodes: list[Node],
) -> None:
    a, b = nodes
    token = await cut_connection(a)
    link = link_of(a, token)
    bob = await websocket(b, token, token_for("bob"))
    assert bob.rejection.status == 403
    expired = await websocket(b, token, token_for("alice", lifetime=-120))
    assert expired.rejection.status == 401
    # Intact, still alice's, and it resumes for her.
    assert link.resumable
    assert link.resumes == 0
    socket = await websocket(b, token, token_for("alice"))
    assert (await records(socket, 2))[0] == {"type": 9, "sequenceId": 1}
    socket.send_text('{"type":9,"sequenceId":2}\x1e' + invoke("2", "who"))
    assert (await records(socket, 1))[0]["result"] == "alice"


async def test_the_holder_checks_the_user_again(nodes: list[Node]) -> None:
    """A forwarded resume whose user is not the connection's (a node that did
    not check, or a forged message on Redis) is refused by the holder."""
    a, b = nodes
    token = await cut_connection(a)
    cluster = b.client.app.endpoint.cluster  # type: ignore[attr-defined]
    claim = cluster.signer.verify(token, PATH)
    # A token for the same connection id but another user, validly signed:
    # only the holder's own check stands between it and alice's connection.
    bob = Principal(claims={"sub": "bob"}, scheme="Bearer")
    _, forged = TokenSigner(KEY).mint(claim.connection_id, PATH, bob, time.time(), 1, stateful=True)
    socket = await websocket(b, forged, token_for("bob"))
    assert socket.rejection.status == 403
    assert link_of(a, token).resumes == 0


async def test_a_resume_whose_holder_is_gone_gets_404(nodes: list[Node]) -> None:
    a, b = nodes
    token = await cut_connection(a)
    a.server.stop()
    await a.server.wait_stopped()
    socket = await websocket(b, token, token_for("alice"))
    assert socket.rejection.status == 404


async def test_a_client_that_did_not_ask_never_gets_it_on_any_node(nodes: list[Node]) -> None:
    a, b = nodes
    document = await negotiate(a, "alice", stateful=False)
    assert "useStatefulReconnect" not in document
    token = document["connectionToken"]
    socket = await websocket(b, token, token_for("alice"))
    socket.send_text(HANDSHAKE_V2)
    with trio.fail_after(10):
        assert await socket.frame() == "{}\x1e"
    assert link_of(b, token) is None
    socket.disconnect(1006)
    with trio.fail_after(10):
        await b.server.wait_idle()
    again = await websocket(a, token, token_for("alice"))
    assert again.rejection.status == 404


@pytest.mark.parametrize("side", [0, 1])
async def test_a_relay_that_loses_a_message_ends_like_a_dropped_socket(
    nodes: list[Node], redis: RedisServer, side: int
) -> None:
    """A gap in a relay's numbering (Redis lost a message), on either side's
    channel: the relay ends, the holder keeps the connection for a resume, and the
    client's next resume gets everything it did not acknowledge."""
    a, b = nodes
    token = await cut_connection(a)
    link = link_of(a, token)
    socket = await websocket(b, token, token_for("alice"))
    assert (await records(socket, 2))[0] == {"type": 9, "sequenceId": 1}
    channels = sorted(redis.channels(f"{PREFIX}:relay:*"))
    assert len(channels) == 2  # the holder's and the relaying node's
    backplane = b.server.backplane
    assert backplane is not None
    assert await backplane.publish(channels[side], msgpack.packb([99, 1, b"lost"])) == 1
    with trio.fail_after(10):
        await socket.closed.wait()
    await detached(link)
    assert link.resumable
    again = await websocket(b, token, token_for("alice"))
    replay = await records(again, 2)
    assert replay[0] == {"type": 9, "sequenceId": 1}
    assert replay[1]["invocationId"] == "1"
    assert link.resumes == 2
