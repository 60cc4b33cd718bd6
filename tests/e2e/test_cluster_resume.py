"""Stateful reconnect across the nodes of a cluster: the official JavaScript client
(``withStatefulReconnect()``) through ``js/resume.mjs``'s cutting proxy, which sends
each TCP connection to the next of two real ``python -m demo --redis`` nodes, so the
resumes land alternately on the node that holds the connection (a local resume) and
on the other one (relayed to the holder through Redis). JSON and MessagePack: every
result, item and broadcast exactly once and in order, and the client never noticed.
Then the holder SIGKILLed: the resume fails (404) and the client falls back to a fresh
connection on the surviving node."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import NodeClient
from .test_cluster import Cluster, running_cluster
from .test_js_resume import assert_healed, run_resume

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("resume-cluster"), 2) as found:
        yield found


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
def test_cuts_heal_across_nodes_with_nothing_lost_or_repeated(
    two_nodes: Cluster, node_client: NodeClient, protocol: str
) -> None:
    results = run_resume(node_client, ",".join(two_nodes.bases(2)), protocol)
    assert_healed(results)
    for name, seen in results.items():
        # The first WebSocket and each resume went to the next node in turn:
        # every resume landed on another node than the socket it replaced.
        nodes = seen["webSocketNodes"]
        assert len(nodes) == seen["cuts"] + 1, name
        assert all(x != y for x, y in itertools.pairwise(nodes)), (name, nodes)


def test_holder_killed_the_client_falls_back_to_a_fresh_connection(
    tmp_path: Path, node_client: NodeClient
) -> None:
    with running_cluster(tmp_path, 2) as cluster:
        pids = ",".join(str(node.process.pid) for node in cluster.nodes)
        results = run_resume(
            node_client, ",".join(cluster.bases(2)), "json", ["holderKilled"], pids
        )
    seen = results["holderKilled"]
    assert seen["fresh"] is True
    assert (seen["reconnecting"], seen["reconnected"], seen["closed"]) == (1, 1, 0)
    assert seen["nodeAfter"] != seen["holder"]
    assert seen["after"] == 42
