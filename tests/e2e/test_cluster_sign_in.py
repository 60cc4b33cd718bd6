"""The demo's browser sign-in state across real node processes (``python -m demo
--redis URL``, two nodes on one redis-server): a sign-out on node A refuses the
cookie on node B (negotiate, renewal) and closes the session's connection that B
holds, mid-poll; failed sign-ins on both nodes count against one limit. And a node
whose Redis is gone lets nobody in."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import trio

from tests.auth.conftest import serve_demo
from tests.auth.test_sessions import NEGOTIATE, jar
from tests.backplane.redis_server import redis_server
from triohub.backplane.redis import RedisBackplane

from .test_cluster import Cluster, running_cluster

pytestmark = pytest.mark.e2e

COOKIE = "triohub_demo"
HANDSHAKE = b'{"protocol":"json","version":1}\x1e'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("sign-in"), 2) as found:
        yield found


def sign_in(base: str, username: str, password: str | None = None) -> httpx.Response:
    form = {"username": username, "password": password or f"{username}-password"}
    return httpx.post(f"{base}/account/login", data=form, timeout=10)


async def test_sign_out_on_one_node_ends_the_session_on_the_other(cluster: Cluster) -> None:
    a, b = cluster.bases(2)
    signed_in = sign_in(a, "bob")
    assert signed_in.status_code == 303, signed_in.text
    cookies = {COOKIE: signed_in.cookies[COOKIE]}
    async with httpx.AsyncClient(cookies=cookies, timeout=10) as client:
        # A long-polling connection held by B, its handshake done.
        negotiated = await client.post(f"{b}/hubs/chat/negotiate?negotiateVersion=1")
        assert negotiated.status_code == 200, negotiated.text
        token = negotiated.json()["connectionToken"]
        hub = f"{b}/hubs/chat?id={token}"
        assert (await client.get(hub)).status_code == 200  # the first poll opens it
        assert (await client.post(hub, content=HANDSHAKE)).status_code == 200
        assert (await client.get(hub)).content.startswith(b"{}\x1e")
        polled: list[httpx.Response] = []

        async def poll() -> None:
            polled.append(await client.get(hub))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.sleep(0.5)  # the poll is held on B
            signed_out = await client.post(f"{a}/account/logout")
            assert signed_out.status_code == 303
        # B closed its connection: the held poll came back with the Close record that
        # does not allow reconnecting (without the news from A it would be held 90 s).
        assert polled[0].status_code == 200
        assert b'"type":7' in polled[0].content
        assert b"allowReconnect" not in polled[0].content

    # A copy of the cookie is refused by B: negotiate and renewal.
    async with httpx.AsyncClient(cookies=cookies, timeout=10) as thief:
        refused = await thief.post(f"{b}/hubs/chat/negotiate?negotiateVersion=1")
        assert refused.status_code == 401
        assert (await thief.post(f"{b}/account/renew")).status_code == 401


def test_failed_sign_ins_on_both_nodes_count_together(cluster: Cluster) -> None:
    """The demo allows 5 failures per account (``DEMO_SIGNIN_ACCOUNT_FAILURES``)."""
    a, b = cluster.bases(2)
    for base in (a, b, a, b, a):
        assert sign_in(base, "alice", "wrong").status_code == 401
    for base in (b, a):
        # Refused before the password is looked at: the right one waits too.
        throttled = sign_in(base, "alice")
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) == 60
    assert sign_in(b, "bob").status_code == 303  # another account is not held up


async def test_without_redis_nothing_is_let_in(nursery: trio.Nursery) -> None:
    """A node whose Redis went away cannot check a session or count a sign-in: sign-in
    and renewal answer 503, and the cookie gets 401 on the hub (fail closed)."""
    with redis_server() as redis:
        async with serve_demo(nursery, redis_url=redis.url) as demo:
            backplane = demo.app.server.backplane
            assert isinstance(backplane, RedisBackplane)
            with trio.fail_after(10):
                await backplane.wait_connected()
            cookie = await demo.http.login_cookie("alice")
            assert (await demo.http.post(NEGOTIATE, headers=jar(cookie))).status_code == 200
            redis.kill()
            with trio.fail_after(10):
                await backplane.wait_disconnected()
            form = {"username": "alice", "password": "alice-password"}
            assert (await demo.http.post("/account/login", data=form)).status_code == 503
            assert (await demo.http.post("/account/renew", headers=jar(cookie))).status_code == 503
            assert (await demo.http.post(NEGOTIATE, headers=jar(cookie))).status_code == 401
