"""What a node answers for a connection another node holds, on two nodes in one
Trio run sharing a real redis-server: a refresh (``POST {hub}/refresh``) is
checked on the node that got it and applied by the holder; a second transport
request, a POST or a DELETE get the holder's own answer (what one node
answers), before and after the token's unused window; once the connection
ended, 404 everywhere."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from triohub import HubOptions
from triohub.protocol import Texts
from triohub.transports.forwarding import ForwardedRequest

from ..backplane.redis_server import RedisServer
from ..backplane.support import PATH, PREFIX, ClusterHub
from .support import HANDSHAKE, Clock, Node, auth, negotiate, open_nodes, open_websocket

REFRESH = f"{PATH}/refresh"
SSE = [(b"accept", b"text/event-stream")]


class RefreshableHub(ClusterHub):
    async def who(self) -> dict[str, Any]:
        """Who the connection is now, and the seconds left before it expires
        (its expiry scope's deadline, which a refresh moves)."""
        principal = self.context.principal
        left = trio.current_effective_deadline() - trio.current_time()
        return {"user": principal.name_identifier, "exp": principal.expires_at, "left": left}


@pytest.fixture
async def refreshable(redis: RedisServer, nursery: trio.Nursery) -> AsyncIterator[list[Node]]:
    options = HubOptions(close_on_authentication_expiration=True, allow_authentication_refresh=True)
    async with open_nodes(redis.url, nursery, hub=RefreshableHub, options=options) as made:
        yield made


async def who(socket: Any, number: int) -> dict[str, Any]:
    socket.send_text(
        json.dumps({"type": 1, "invocationId": str(number), "target": "Who", "arguments": []})
        + "\x1e"
    )
    with trio.fail_after(10):
        while True:
            record = json.loads(str(await socket.frame()).rstrip("\x1e"))
            if record["type"] == 3:
                assert record["invocationId"] == str(number), record
                result: dict[str, Any] = record["result"]
                return result


async def refresh(node: Node, token: str, headers: list[tuple[bytes, bytes]]) -> Any:
    response = await node.client.request("POST", REFRESH, query=f"id={token}", headers=headers)
    assert response.header("content-type") == "application/json", response
    return response.status, json.loads(response.body), response


def error(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}


async def test_a_refresh_on_another_node_is_applied_by_the_holder(
    refreshable: list[Node],
) -> None:
    a, b = refreshable
    document = await negotiate(b, "alice")
    token = document["connectionToken"]
    socket = await open_websocket(a, token, "alice", lifetime=60)  # a holds it
    before = await who(socket, 1)
    assert before["user"] == "alice"
    assert 0 < before["left"] <= 60

    status, body, _ = await refresh(b, token, auth("alice", 7200))
    assert status == 200, body
    assert sorted(body) == ["connectionId", "refreshedAt", "tokenLifetimeSeconds"]
    assert body["connectionId"] == document["connectionId"]
    assert 7190 <= body["tokenLifetimeSeconds"] <= 7200
    after = await who(socket, 2)
    assert after["user"] == "alice"
    assert after["exp"] > before["exp"]
    assert 3600 < after["left"] <= 7200  # the holder's expiry scope moved

    # Bob's credential through b: refused there, alice's connection unchanged.
    status, body, _ = await refresh(b, token, auth("bob"))
    assert (status, body) == (403, error("forbidden", "The credential is of another user."))
    assert (await who(socket, 3))["exp"] == after["exp"]
    # No credential: 401 with the challenge; a token that is not ours: 404.
    status, body, response = await refresh(b, token, [])
    assert (status, body) == (401, error("invalid_token", "A valid credential is required."))
    assert (response.header("www-authenticate") or "").startswith("Bearer")
    status, body, _ = await refresh(b, token + "x", auth("alice"))
    assert (status, body) == (404, error("connection_not_found", "No such connection."))

    # The holder authenticates what it is forwarded again: a node that (wrongly)
    # let bob's credential through with alice's digest is refused by a.
    cluster = b.client.app.endpoint.cluster
    assert cluster is not None
    forwarded = ForwardedRequest(
        "POST",
        token,
        False,
        token.split(".")[2],  # the negotiating user's digest: alice's
        b"",
        route="/refresh",
        query=f"id={token}",
        headers=tuple((k.decode(), v.decode()) for k, v in auth("bob")),
    )
    assert "eyJ" not in repr(forwarded)  # the credential never shows in a log line
    answer = await cluster.forwarder.forward(
        f"{PREFIX}:forward:{document['connectionId']}", forwarded, 0
    )
    assert (answer.status, json.loads(answer.body)) == (
        403,
        error("forbidden", "The credential is of another user."),
    )
    assert (await who(socket, 4))["exp"] == after["exp"]

    # The connection ended: nobody holds it, 404 at once on either node.
    socket.disconnect()
    with trio.fail_after(10):
        await a.server.wait_idle()
    for node in (a, b):
        status, body, _ = await refresh(node, token, auth("alice"))
        assert (status, body) == (404, error("connection_not_found", "No such connection.")), node


async def test_a_refresh_of_a_long_polling_connection_on_another_node(
    refreshable: list[Node],
) -> None:
    a, b = refreshable
    token = (await negotiate(a, "alice"))["connectionToken"]
    query = f"id={token}"
    alice = auth("alice")
    assert (await a.client.request("GET", PATH, query=query, headers=alice)).status == 200
    sent = await b.client.request("POST", PATH, query=query, headers=alice, body=HANDSHAKE.encode())
    assert sent.status == 200
    poll = await b.client.request("GET", PATH, query=query, headers=alice)
    assert (poll.status, poll.body) == (200, b"{}\x1e")
    status, body, _ = await refresh(b, token, auth("alice", 7200))
    assert status == 200, body
    assert 7190 <= body["tokenLifetimeSeconds"] <= 7200
    # Later requests with the new credential go on, on either node.
    fresh = auth("alice", 7200)
    invoke = '{"type":1,"invocationId":"1","target":"Who","arguments":[]}\x1e'
    sent = await b.client.request("POST", PATH, query=query, headers=fresh, body=invoke.encode())
    assert sent.status == 200
    poll = await b.client.request("GET", PATH, query=query, headers=fresh)
    assert poll.status == 200
    result = json.loads(poll.body.rstrip(b"\x1e"))["result"]
    assert result["user"] == "alice"
    assert 3600 < result["left"] <= 7200
    assert (await a.client.request("DELETE", PATH, query=query, headers=fresh)).status == 202


CANNOT_CHANGE = (400, Texts.CANNOT_CHANGE_TRANSPORT.encode())
NOT_BY_DELETE = (400, Texts.DELETE_NOT_ALLOWED.encode())
# What one node answers to a request of a live connection with the transport of
# the row (None: the request would be served, not refused: left out).
EXPECTED: dict[str, dict[str, tuple[int, bytes] | None]] = {
    "websocket": {
        "websocket": (409, b""),
        "sse": CANNOT_CHANGE,
        "poll": CANNOT_CHANGE,
        "post": (405, Texts.POST_NOT_ALLOWED_FOR_WEBSOCKETS.encode()),
        "delete": NOT_BY_DELETE,
    },
    "sse": {
        "websocket": CANNOT_CHANGE,
        "sse": (409, b""),
        "poll": CANNOT_CHANGE,
        "post": None,
        "delete": NOT_BY_DELETE,
    },
    "longpolling": {
        "websocket": CANNOT_CHANGE,
        "sse": CANNOT_CHANGE,
        "poll": None,
        "post": None,
        "delete": None,
    },
}


async def ask(node: Node, token: str, kind: str) -> tuple[int, bytes]:
    query = f"id={token}"
    if kind == "websocket":
        socket = await open_websocket(node, token)
        assert not socket.accepted.is_set()
        return socket.rejection.status, socket.rejection.body
    method, headers, body = {
        "sse": ("GET", SSE, b""),
        "poll": ("GET", [], b""),
        "post": ("POST", [], HANDSHAKE.encode()),
        "delete": ("DELETE", [], b""),
    }[kind]
    response = await node.client.request(method, PATH, query=query, headers=headers, body=body)
    return response.status, response.body


@pytest.mark.parametrize("elapsed", [0.0, 16.0], ids=["unused-window", "past-it"])
@pytest.mark.parametrize("held", list(EXPECTED))
async def test_requests_elsewhere_get_the_holders_answer(
    nodes: list[Node], clock: Clock, held: str, elapsed: float
) -> None:
    a, b = nodes
    token = (await negotiate(a))["connectionToken"]
    query = f"id={token}"
    # b holds the connection, over the transport of the row.
    if held == "websocket":
        socket = await open_websocket(b, token)
        assert socket.accepted.is_set()
        end = socket.disconnect
    elif held == "sse":
        stream = b.client.open("GET", PATH, query=query, headers=SSE)
        await stream.started.wait()
        assert stream.status == 200
        end = stream.disconnect
    else:
        assert (await b.client.request("GET", PATH, query=query)).status == 200

        def end() -> None:
            b.client.open("DELETE", PATH, query=query)

    # Past the token's unused window (15 s) the connection is as live as before.
    clock.now += elapsed
    for kind, expected in EXPECTED[held].items():
        if expected is None:
            continue
        for node in (b, a):  # the holder (one node's rules), then forwarded
            assert await ask(node, token, kind) == expected, (kind, node is a)
    end()
    with trio.fail_after(10):
        await b.server.wait_idle()
    # Ended: 404 on every node, whatever the request.
    gone = (404, Texts.NO_CONNECTION.encode())
    for node in (a, b):
        for kind in ("websocket", "sse", "poll", "post", "delete"):
            assert await ask(node, token, kind) == gone, (kind, node is a)


INVOKE = '{"type":1,"invocationId":"%s","target":"Join","arguments":["g"]}\x1e'


async def long_polling(negotiator: Node, holder: Node) -> tuple[str, Any, str]:
    """A long-polling connection of alice that ``holder`` holds, past its
    handshake: its token, alice's credential and the transport's query."""
    token = (await negotiate(negotiator, "alice"))["connectionToken"]
    alice, query = auth("alice"), f"id={token}"
    assert (await holder.client.request("GET", PATH, query=query, headers=alice)).status == 200
    sent = await holder.client.request(
        "POST", PATH, query=query, headers=alice, body=HANDSHAKE.encode()
    )
    assert sent.status == 200
    poll = await holder.client.request("GET", PATH, query=query, headers=alice)
    assert poll.body == b"{}\x1e"
    return token, alice, query


async def held_on(node: Node, token: str) -> None:
    """Returns once ``node``'s long-polling transport of ``token`` holds a poll."""
    connection = node.client.app.endpoint.connections.get(token)
    assert connection is not None
    with trio.fail_after(10):
        while not connection.channel.polling:
            await connection.channel.wait_change()


@pytest.mark.parametrize("where", ["holder", "forwarded"])
async def test_records_wait_for_the_next_poll_when_a_polls_client_leaves(
    nodes: list[Node], where: str
) -> None:
    """One node keeps the records of a poll whose client left for the next
    poll; a poll forwarded to that node does the same (the holder stops
    holding it). Records the holder took before it heard: the next test."""
    a, b = nodes
    token, alice, query = await long_polling(a, b)
    poller = a if where == "forwarded" else b
    for number in range(1, 3):
        leaving = poller.client.open("GET", PATH, query=query, headers=alice)
        await held_on(b, token)
        leaving.disconnect()
        invoke = (INVOKE % number).encode()
        sent = await b.client.request("POST", PATH, query=query, headers=alice, body=invoke)
        assert sent.status == 200
        with trio.fail_after(10):
            poll = await poller.client.request("GET", PATH, query=query, headers=alice)
        assert poll.status == 200
        completion = json.loads(poll.body.rstrip(b"\x1e"))
        assert completion == {"type": 3, "invocationId": str(number), "result": None}
    assert (await a.client.request("DELETE", PATH, query=query, headers=alice)).status == 202


async def test_records_a_forwarded_poll_took_go_back_unless_a_later_poll_took_some(
    nodes: list[Node],
) -> None:
    from triohub.transports.forwarding import PUT_BACK

    a, b = nodes
    token, alice, query = await long_polling(a, b)
    invoke = (INVOKE % 1).encode()
    assert (
        await b.client.request("POST", PATH, query=query, headers=alice, body=invoke)
    ).status == 200
    cluster = a.client.app.endpoint.cluster
    assert cluster is not None
    channel = f"{PREFIX}:forward:{token.split('.')[0]}"
    poll = ForwardedRequest("GET", token, False, token.split(".")[2], b"")
    taken = await cluster.forwarder.forward(channel, poll, 10)
    assert taken.status == 200
    assert json.loads(taken.body.rstrip(b"\x1e"))["invocationId"] == "1"
    assert taken.taken > 0
    # What the asking node sends when the poll's client had left: back in the buffer.
    back = ForwardedRequest(
        PUT_BACK, token, False, token.split(".")[2], taken.body, taken=taken.taken
    )
    assert (await cluster.forwarder.forward(channel, back, 0)).status == 202
    again = await a.client.request("GET", PATH, query=query, headers=alice)
    assert (again.status, again.body) == (200, taken.body)
    # A later poll took records since: putting these back would reorder them.
    assert (await cluster.forwarder.forward(channel, back, 0)).status == 409
    assert (await a.client.request("DELETE", PATH, query=query, headers=alice)).status == 202
