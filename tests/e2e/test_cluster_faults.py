"""Redis killed and restarted under real node processes (``python -m demo --redis``).

Node 0 reaches Redis over TCP, node 1 over a unix socket; Redis comes back on
its unix socket first, so node 1 has resubscribed before node 0 sends what it
held during the outage (otherwise which node reconnects first would decide).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backplane.redis_server import RedisServer
from tests.demo_process import DemoServer, interrupt_demo, start_demo

from .test_cluster import ECHO, SECRET
from .test_pysignalr import connected, run

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[RedisServer, DemoServer, DemoServer]]:
    redis = RedisServer(unix_socket=str(tmp_path / "redis.sock"))
    redis.start()
    env = {"DEMO_JWT_SECRET": SECRET}
    nodes = []
    try:
        nodes.append(start_demo(tmp_path / "node0.log", args=("--redis", redis.url), env=env))
        nodes.append(start_demo(tmp_path / "node1.log", args=("--redis", redis.unix_url), env=env))
        yield redis, nodes[0], nodes[1]
    finally:
        for node in nodes:
            interrupt_demo(node)
        redis.kill()


def until(condition: object, what: str) -> None:
    """Wait (at most 15 s) for an outside process's state, asked through Redis."""
    deadline = time.monotonic() + 15
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_redis_killed_and_restarted_under_real_nodes(
    two_nodes: tuple[RedisServer, DemoServer, DemoServer],
) -> None:
    redis, node0, node1 = two_nodes

    async def scenario() -> None:
        async with (
            connected(f"{node0.base_url}/hubs/echo", "json") as near,
            connected(f"{node1.base_url}/hubs/echo", "messagepack") as far,
        ):
            far_id = (await far.invoke("WhoAmI")).result["connectionId"]  # type: ignore[attr-defined]
            await near.invoke("JoinGroup", "room")
            await far.invoke("JoinGroup", "room")
            await near.invoke("SendToGroup", "room", "before")
            assert await near.next_received() == ["before"]
            assert await far.next_received() == ["before"]

            redis.kill()
            # Local delivery goes on while Redis is away; the send is held for far.
            await near.invoke("SendToGroup", "room", "during")
            assert await near.next_received() == ["during"]

            redis.start(tcp=False)  # node 1 (unix socket) first
            channel = f"{ECHO}:connection:{far_id}"
            until(lambda: redis.numsub(channel)[channel] == 1, "node 1 to resubscribe")
            until(lambda: redis.numsub(f"{ECHO}:group:room")[f"{ECHO}:group:room"] == 1, "room")
            redis.listen_tcp()  # then node 0, which sends what it held
            assert await far.next_received() == ["during"]
            await far.invoke("SendToGroup", "room", "after")
            assert await near.next_received() == ["after"]
            assert await far.next_received() == ["after"]

    run(scenario())
    for node in (node0, node1):
        log = node.log_path.read_text()
        assert "Redis link lost" in log
        assert "Redis link restored" in log
