"""Stateful reconnect with the official JavaScript client (``withStatefulReconnect()``)
over WebSockets, on each demo server, JSON and MessagePack: ``js/resume.mjs`` runs the
client through a TCP proxy that cuts the connection mid server stream, mid upload, with
invocations pending, during a broadcast burst (twice) and twice in a row; this module
asserts that every result, item and broadcast arrived exactly once, in order, and that
the client never noticed (no ``onreconnecting``, no close)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

import pytest

from tests.demo_process import DemoServer

from .conftest import E2E_DIR, NODE_TIMEOUT, REPO_ROOT, NodeClient, _describe, _results

pytestmark = pytest.mark.e2e

SCRIPT = E2E_DIR / "js" / "resume.mjs"
SCENARIOS = ["serverStream", "uploadStream", "pendingInvocations", "broadcastBurst", "twiceInARow"]


def run_resume(
    node_client: NodeClient,
    base_url: str,
    protocol: str,
    scenarios: Sequence[str] = SCENARIOS,
    *extra: str,
) -> dict[str, Any]:
    """``js/resume.mjs`` (``base_url``: one URL, or a cluster's, comma-separated)."""
    command = [node_client.node, str(SCRIPT), ",".join(scenarios), base_url, protocol, *extra]
    try:
        done = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, timeout=NODE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            _describe(command, None, expired.stdout or b"", expired.stderr or b"", NODE_TIMEOUT),
            pytrace=False,
        )
    return _results(command, done.returncode, done.stdout, done.stderr)


def assert_healed(results: dict[str, Any]) -> None:
    """Every scenario's cuts happened and healed: nothing lost or repeated, and the
    client never knew (no reconnect, no close)."""
    assert set(results) == set(SCENARIOS)
    for name, seen in results.items():
        assert seen["cuts"] >= 1, name
        assert (seen["reconnecting"], seen["reconnected"], seen["closed"]) == (0, 0, 0), name
        assert seen["state"] == "Connected", name
        assert seen["after"] == 42, name
    assert results["serverStream"]["items"] == list(range(300))
    assert results["uploadStream"]["sum"] == sum(range(1, 201))
    assert results["pendingInvocations"]["results"] == list(range(100))
    assert results["broadcastBurst"]["received"] == list(range(300))
    assert results["broadcastBurst"]["cuts"] == 2
    assert results["twiceInARow"]["items"] == list(range(200))
    assert results["twiceInARow"]["cuts"] == 2
    assert results["twiceInARow"]["echo"] == "after"


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
def test_cuts_heal_with_nothing_lost_or_repeated(
    demo_server: DemoServer, node_client: NodeClient, protocol: str
) -> None:
    assert_healed(run_resume(node_client, demo_server.base_url, protocol))
