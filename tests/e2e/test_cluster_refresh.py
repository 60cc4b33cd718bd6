"""Authentication refresh in place across nodes: the official JavaScript client
on two demo node processes (``python -m demo --redis URL``) behind a round-robin
balancer whose every refresh request goes to the node that does NOT hold its
connection; that node checks it and forwards it to the holder, which applies it.

Over WebSockets, SSE and long polling, a 5 s token refreshed three times keeps
one connection alive with no reconnect and no lost message; bob's credential
on alice's connection is 403 and alice stays alice; the other refusals keep
their exact answers.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from .balancer import RoundRobin
from .conftest import NodeClient
from .test_cluster import SECRET, Cluster, _port, running_cluster
from .test_refresh import LIFETIME, SCRIPT, check_refreshes, check_refusals, mint

pytestmark = pytest.mark.e2e

REFRESHES = 3


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, 2) as found:
        yield found


def test_refresh_landing_on_the_node_that_does_not_hold_the_connection(
    node_client: NodeClient, two_nodes: Cluster
) -> None:
    balancer = RoundRobin([_port(node) for node in two_nodes.nodes], elsewhere=("/refresh",))
    now = time.time()
    minted = {
        "expired": mint(SECRET, iat=now - 120, exp=now - 60),
        "wrongSignature": mint(secrets.token_urlsafe(48), iat=now, exp=now + 600),
    }
    try:
        observed = trio.run(
            node_client.arun_script,
            SCRIPT,
            balancer.base_url,
            str(LIFETIME),
            str(REFRESHES),
            json.dumps(minted),
        )
    finally:
        balancer.close()
    check_refreshes(observed, REFRESHES)
    check_refusals(observed, tuple(minted))
    # Every refresh of a live connection went to the other node: three per
    # transport, and the refusals' on alice's WebSocket (bob's, none, minted).
    refreshes = [r for r in balancer.routed if r[2] == "/hubs/chat/refresh"]
    assert len({ident for _, _, ident in balancer.diverted}) == 4  # the four connections
    assert len(balancer.diverted) == 3 * REFRESHES + 2 + len(minted), balancer.diverted
    assert all(holder != node for holder, node, _ in balancer.diverted)
    assert len(refreshes) == len(balancer.diverted) + 2  # no id, an unknown id: no holder
    # Forwarded with their credentials, which no node logged.
    assert "eyJ" not in "\n".join(node.log_path.read_text() for node in two_nodes.nodes)
