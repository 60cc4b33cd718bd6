"""Cluster connection tokens (no sticky sessions), on two nodes in one Trio run
sharing a real redis-server: negotiate on one node, connect on the other; one
live transport per token across the cluster (409), used / expired / forged
tokens (404), another user's token (403), and one node unchanged."""

from __future__ import annotations

import json

import trio

from triohub import HubServer
from triohub.backplane.redis import RedisBackplane
from triohub.transports.asgi import SignalRApp
from triohub.transports.cluster import TokenSigner, derive_key
from triohub.transports.forwarding import HOLDER_CHECK

from ..backplane.redis_server import RedisServer
from ..backplane.support import PATH, PREFIX, ClusterHub
from ..transports.asgi_client import AsgiClient
from ..transports.native_support import authenticator
from .support import HANDSHAKE, KEY, Clock, Node, auth, negotiate, open_websocket


async def test_negotiate_on_one_node_connect_on_the_other(nodes: list[Node]) -> None:
    a, b = nodes
    document = await negotiate(a)
    token = document["connectionToken"]
    socket = await open_websocket(b, token)
    assert socket.accepted.is_set()
    assert b.server.live_connections == 1
    assert a.server.live_connections == 0
    # The token is held across the cluster: a second socket gets 409 on either node.
    for node in (a, b):
        second = await open_websocket(node, token)
        assert second.rejection.status == 409
    socket.disconnect()
    with trio.fail_after(10):
        await b.server.wait_idle()
    # Used: 404 everywhere, as on one node.
    for node in (a, b):
        again = await open_websocket(node, token)
        assert again.rejection.status == 404
        assert again.rejection.body == b"No Connection with that ID"


async def test_version_zero_token_is_the_connection_id_on_any_node(nodes: list[Node]) -> None:
    a, b = nodes
    document = await negotiate(a, version=0)
    assert "connectionToken" not in document
    socket = await open_websocket(b, document["connectionId"])
    assert socket.accepted.is_set()
    socket.disconnect()


async def test_an_unused_token_expires_on_every_node(nodes: list[Node], clock: Clock) -> None:
    a, b = nodes
    token = (await negotiate(a))["connectionToken"]
    clock.now += 15.0  # the hub's disconnect_timeout
    for node in (a, b):
        socket = await open_websocket(node, token)
        assert socket.rejection.status == 404
    poll = await b.client.request("GET", PATH, query=f"id={token}")
    assert (poll.status, poll.body) == (404, b"No Connection with that ID")


async def test_forged_and_foreign_tokens_are_404(nodes: list[Node], clock: Clock) -> None:
    a, b = nodes
    token = (await negotiate(a))["connectionToken"]
    connection_id, issued, user, version, mac = token.split(".")
    later = f"{connection_id}.{int(issued) + 60_000}.{user}.{version}.{mac}"
    other_key = TokenSigner(derive_key("another cluster"))
    from triohub import Principal

    _, foreign = other_key.mint(connection_id, PATH, Principal(), clock.now, 1)
    for forged in (later, foreign, "not-a-token", token + "x"):
        socket = await open_websocket(b, forged)
        assert socket.rejection.status == 404, forged


async def test_another_users_token_is_refused_on_the_other_node(nodes: list[Node]) -> None:
    a, b = nodes
    token = (await negotiate(a, "alice"))["connectionToken"]
    socket = await open_websocket(b, token, "mallory")
    assert (socket.rejection.status, socket.rejection.body) == (403, b"")
    anonymous = await open_websocket(b, token)
    assert anonymous.rejection.status == 401
    sse = await b.client.request(
        "GET",
        PATH,
        query=f"id={token}",
        headers=[*auth("mallory"), (b"accept", b"text/event-stream")],
    )
    assert sse.status == 403
    # Nothing was claimed: alice still connects, on either node.
    mine = await open_websocket(b, token, "alice")
    assert mine.accepted.is_set()
    mine.disconnect()


async def test_the_first_long_poll_and_event_stream_land_anywhere(nodes: list[Node]) -> None:
    a, b = nodes
    token = (await negotiate(a))["connectionToken"]
    first = await b.client.request("GET", PATH, query=f"id={token}")
    assert first.status == 200
    # b holds it: an event stream on a for the same token is refused, as b
    # refuses it (the connection uses long polling).
    other = await a.client.request(
        "GET", PATH, query=f"id={token}", headers=[(b"accept", b"text/event-stream")]
    )
    assert (other.status, other.body) == (400, b"Cannot change transports mid-connection")
    ended = await b.client.request("DELETE", PATH, query=f"id={token}")
    assert ended.status == 202

    token = (await negotiate(b))["connectionToken"]
    stream = a.client.open(
        "GET", PATH, query=f"id={token}", headers=[(b"accept", b"text/event-stream")]
    )
    await stream.started.wait()
    assert stream.status == 200
    second = await b.client.request(
        "GET", PATH, query=f"id={token}", headers=[(b"accept", b"text/event-stream")]
    )
    assert second.status == 409
    stream.disconnect()


async def test_one_node_without_a_key_keeps_its_own_tokens(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    server = HubServer(backplane=RedisBackplane(redis.url))
    server.map_hub(PATH, ClusterHub, channel_prefix=PREFIX)
    node = Node(server, AsgiClient(SignalRApp(server), nursery))
    await nursery.start(server.run)
    token = (await negotiate(node))["connectionToken"]
    assert "." not in token
    socket = await open_websocket(node, token)
    assert socket.accepted.is_set()
    socket.disconnect()
    server.stop()
    await server.wait_stopped()


INVOKE = '{"type":1,"invocationId":"1","target":"Join","arguments":["g"]}\x1e'


async def test_long_polling_requests_are_forwarded_to_the_holder(nodes: list[Node]) -> None:
    a, b = nodes
    token = (await negotiate(a, "alice"))["connectionToken"]
    alice = auth("alice")
    query = f"id={token}"
    first = await b.client.request("GET", PATH, query=query, headers=alice)
    assert first.status == 200  # b holds it now
    # Every later request lands on a: forwarded to b, answered as b would.
    sent = await a.client.request("POST", PATH, query=query, headers=alice, body=HANDSHAKE.encode())
    assert sent.status == 200
    poll = await a.client.request("GET", PATH, query=query, headers=alice)
    assert (poll.status, poll.body) == (200, b"{}\x1e")
    sent = await a.client.request("POST", PATH, query=query, headers=alice, body=INVOKE.encode())
    assert sent.status == 200
    poll = await a.client.request("GET", PATH, query=query, headers=alice)
    assert poll.status == 200
    assert json.loads(poll.body.rstrip(b"\x1e")) == {"type": 3, "invocationId": "1", "result": None}
    # Another user, or nobody, on the forwarding node: refused there, nothing forwarded.
    before = b.server.hubs[PATH].node
    assert before is not None
    for headers, status in ((auth("mallory"), 403), ([], 401)):
        refused = await a.client.request(
            "POST", PATH, query=query, headers=headers, body=INVOKE.encode()
        )
        assert refused.status == status
        refused = await a.client.request("GET", PATH, query=query, headers=headers)
        assert refused.status == status
    # A poll held on a is superseded by a newer one on b: 204, as on one node.
    held = a.client.open("GET", PATH, query=query, headers=alice)
    await trio.sleep(0.2)
    newer = b.client.open("GET", PATH, query=query, headers=alice)
    assert (await held.response()).status == 204
    ended = await a.client.request("DELETE", PATH, query=query, headers=alice)
    assert ended.status == 202
    assert (await newer.response()).status == 204
    with trio.fail_after(10):
        await b.server.wait_idle()
    # Ended: 404 on every node, for every method.
    for node in (a, b):
        for method in ("GET", "POST", "DELETE"):
            gone = await node.client.request(method, PATH, query=query, headers=alice)
            assert gone.status == 404, (node, method)


async def test_event_stream_sends_are_forwarded_to_the_holder(nodes: list[Node]) -> None:
    a, b = nodes
    token = (await negotiate(a))["connectionToken"]
    query = f"id={token}"
    stream = b.client.open("GET", PATH, query=query, headers=[(b"accept", b"text/event-stream")])
    await stream.started.wait()
    assert stream.status == 200
    sent = await a.client.request("POST", PATH, query=query, body=HANDSHAKE.encode())
    assert sent.status == 200
    with trio.fail_after(10):
        received = b""
        while b"data: {}" not in received:
            received += await stream.read(1)
    stream.disconnect()
    with trio.fail_after(10):
        await b.server.wait_idle()
    gone = await a.client.request("POST", PATH, query=query, body=HANDSHAKE.encode())
    assert gone.status == 404


async def test_the_holder_checks_the_user_again(nodes: list[Node]) -> None:
    from triohub.transports.forwarding import ForwardedRequest

    a, b = nodes
    token = (await negotiate(a, "alice"))["connectionToken"]
    assert (
        await b.client.request("GET", PATH, query=f"id={token}", headers=auth("alice"))
    ).status == 200
    cluster = a.client.app.endpoint.cluster
    assert cluster is not None
    claim = cluster.signer.verify(token, PATH)
    assert claim is not None
    channel = f"{PREFIX}:forward:{claim.connection_id}"
    # A node that (wrongly) let mallory through: the holder refuses it.
    forged = ForwardedRequest("POST", token, False, "not-alice", HANDSHAKE.encode())
    answer = await cluster.forwarder.forward(channel, forged, 0)
    assert answer.status == 403
    ended = await a.client.request("DELETE", PATH, query=f"id={token}", headers=auth("alice"))
    assert ended.status == 202


async def test_a_poll_forwarded_to_a_holder_that_dies_is_answered_404(
    redis: RedisServer, nodes: list[Node], nursery: trio.Nursery
) -> None:
    a, _ = nodes
    # A third node, killed abruptly below (its Redis link dies with it).
    link = RedisBackplane(redis.url)
    doomed = HubServer(backplane=link, connection_token_key=KEY, authenticator=authenticator())
    doomed.map_hub(PATH, ClusterHub, channel_prefix=PREFIX)
    with trio.CancelScope() as kill:
        async with trio.open_nursery() as inner:
            await inner.start(doomed.run)
            await link.wait_connected()
            client = AsgiClient(SignalRApp(doomed), inner)
            token = (await negotiate(a))["connectionToken"]
            assert (await client.request("GET", PATH, query=f"id={token}")).status == 200
            held = a.client.open("GET", PATH, query=f"id={token}")
            await trio.sleep(0.5)  # forwarded and held on the doomed node
            kill.cancel()
    response = await held.response()
    assert (response.status, response.body) == (404, b"No Connection with that ID")


async def test_a_forwarded_poll_whose_redis_goes_away_is_answered_404(
    redis: RedisServer, nodes: list[Node]
) -> None:
    """The holder cannot be asked for (Redis is gone, and with it the subscription its
    answer would come on): the poll is answered 404 at the next holder check, as a
    relayed resume ends then (``forwarding.holder_gone``), not held for its 90 s."""
    a, b = nodes
    token = (await negotiate(a))["connectionToken"]
    assert (await b.client.request("GET", PATH, query=f"id={token}")).status == 200  # B holds it
    held = a.client.open("GET", PATH, query=f"id={token}")
    await trio.sleep(0.5)  # forwarded and held on B
    redis.kill()
    with trio.fail_after(2 * HOLDER_CHECK + 2):
        response = await held.response()
    assert (response.status, response.body) == (404, b"No Connection with that ID")
