"""Stateful reconnect across the nodes of a cluster: the official JavaScript client
(``withStatefulReconnect()``) through ``js/resume.mjs``'s cutting proxy, which sends
each TCP connection to the next of two real ``python -m demo --redis`` nodes, so the
resumes land alternately on the node that holds the connection (a local resume) and
on the other one (relayed to the holder through Redis). JSON and MessagePack: every
result, item and broadcast exactly once and in order, and the client never noticed.
Then the holder SIGKILLed: the resume fails (404) and the client falls back to a fresh
connection on the surviving node. And a raw client's resume on the other node with
another user's credential (403) or an expired one (401): the connection stays intact
and resumes for its own user. The nodes run on hypercorn and on triohub's own server."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from demo.users import USERS, issue_token
from tests.auth.support import invocation, refused_upgrade
from tests.auth.test_resume import HANDSHAKE_V2, CuttableProxy, next_records

from .conftest import SERVERS, NodeClient
from .test_cluster import SECRET, Cluster, running_cluster
from .test_js_resume import assert_healed, run_resume

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=SERVERS)
def two_nodes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Two nodes on hypercorn, then two on triohub's own server."""
    logs = tmp_path_factory.mktemp("resume-cluster")
    with running_cluster(logs, 2, request.param) as found:
        yield found


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
def test_cuts_heal_across_nodes_with_nothing_lost_or_repeated(
    two_nodes: Cluster, node_client: NodeClient, protocol: str
) -> None:
    results = run_resume(node_client, ",".join(two_nodes.bases(2)), protocol)
    assert_healed(results)
    for name, seen in results.items():
        # The first WebSocket and each resume went to the next node in turn:
        # every resume landed on another node than the socket it replaced. (A cut
        # made while the records before it are still being handled may find the
        # resume not started yet and cut nothing: at most one socket per cut.)
        nodes = seen["webSocketNodes"]
        assert 2 <= len(nodes) <= seen["cuts"] + 1, (name, nodes)
        assert all(x != y for x, y in itertools.pairwise(nodes)), (name, nodes)


def killing(tmp_path: Path, node_client: NodeClient, scenario: str) -> dict[str, Any]:
    """``scenario`` (it SIGKILLs a node) on a cluster of its own."""
    with running_cluster(tmp_path, 2) as cluster:
        pids = ",".join(str(node.process.pid) for node in cluster.nodes)
        results = run_resume(node_client, ",".join(cluster.bases(2)), "json", [scenario], pids)
    found: dict[str, Any] = results[scenario]
    assert found["after"] == 42
    return found


def test_holder_killed_the_client_falls_back_to_a_fresh_connection(
    tmp_path: Path, node_client: NodeClient
) -> None:
    seen = killing(tmp_path, node_client, "holderKilled")
    assert seen["fresh"] is True
    assert (seen["reconnecting"], seen["reconnected"], seen["closed"]) == (1, 1, 0)
    assert seen["nodeAfter"] != seen["holder"]


def test_relaying_node_killed_the_client_resumes_on_the_holder(
    tmp_path: Path, node_client: NodeClient
) -> None:
    seen = killing(tmp_path, node_client, "relayKilled")
    assert seen["items"] == list(range(150))
    assert seen["relay"] != seen["holder"]
    assert seen["webSocketNodes"][-1] == seen["holder"]
    assert (seen["reconnecting"], seen["reconnected"], seen["closed"]) == (0, 0, 0)


def token_for(user: str, lifetime: int = 3600, *, now: float | None = None) -> str:
    return issue_token(USERS[user], SECRET, lifetime, now=now)


async def test_a_resume_on_the_other_node_is_for_the_connections_own_user_only(
    two_nodes: Cluster, nursery: trio.Nursery
) -> None:
    base0, base1 = two_nodes.bases(2)
    alice = token_for("alice")
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base0}/hubs/chat/negotiate?negotiateVersion=1&useStatefulReconnect=true",
            headers={"Authorization": f"Bearer {alice}"},
        )
    assert response.json()["useStatefulReconnect"] is True
    token = response.json()["connectionToken"]
    proxy = CuttableProxy(urlsplit(base0).port or 0)
    await nursery.start(proxy.serve)
    async with open_websocket_url(
        f"ws://127.0.0.1:{proxy.port}/hubs/chat?id={token}&access_token={alice}"
    ) as ws:
        await ws.send_message(HANDSHAKE_V2)
        assert await ws.get_message() == "{}\x1e"
        await ws.send_message(invocation("1", "WhoAmI"))
        (answer,) = await next_records(ws)
        assert answer["result"]["userId"] == "alice@contoso.example"
        await proxy.cut()
        with pytest.raises(ConnectionClosed):
            await ws.get_message()

    other = "ws" + base1.removeprefix("http") + f"/hubs/chat?id={token}&access_token="
    refused = await refused_upgrade(other + token_for("bob"))
    assert refused.status_code == 403
    expired = token_for("alice", 60, now=time.time() - 3600)
    refused = await refused_upgrade(other + expired)
    assert refused.status_code == 401
    # Intact, still alice's: it resumes for her on the other node, replay first.
    async with open_websocket_url(other + token_for("alice")) as ws:
        replay = await next_records(ws)
        while len(replay) < 2:
            replay += await next_records(ws)
        assert replay[0] == {"type": 9, "sequenceId": 1}
        assert replay[1]["invocationId"] == "1"
        assert replay[1]["result"]["connectionId"] == answer["result"]["connectionId"]
        await ws.send_message('{"type":9,"sequenceId":2}\x1e' + invocation("2", "WhoAmI"))
        (again,) = await next_records(ws)
        assert again["result"] == answer["result"]
