"""``HubServer.ban``: a banned user's open connections close, new ones are refused
(in memory, and with a 403 on negotiate over real HTTP), until ``unban``."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing
from hub_support import (
    CLOSE,
    HANDSHAKE_OK,
    PATH,
    Serve,
    StartServer,
    bearer_authenticator,
    on_hypercorn,
    on_native,
    open_raw_client,
)

from tests.auth.support import Http, bearer, sign
from triohub import (
    HubServer,
    Principal,
)
from triohub.actors.supervisor import CloseReason
from triohub.hub.hub import Hub
from triohub.protocol import Close
from triohub.testing import open_test_client

KEY = "triohub-ban-tests-secret-0123456789-abcdefghijklmnop"


class ChatHub(Hub):
    async def hello(self) -> str:
        return f"hello {self.context.user_id}"


def user(name: str) -> Principal:
    return Principal(claims={"sub": name}, scheme="Bearer")


async def test_a_ban_closes_the_users_connections_and_no_others(
    start_server: StartServer,
) -> None:
    server = await start_server(ChatHub)
    async with (
        open_test_client(server, PATH, principal=user("mallory")) as first,
        open_test_client(server, PATH, principal=user("mallory")) as second,
        open_test_client(server, PATH, principal=user("alice")) as alice,
    ):
        for client in (first, second, alice):  # each past its handshake
            assert (await client.invoke("Hello")).startswith("hello ")
        assert await server.ban("mallory") == 2
        assert server.banned == {"mallory"}
        for client in (first, second):
            await client.closed.wait()
            # Told not to come back (as clients.user(...).abort()).
            assert client.close_message == Close()
        assert await alice.invoke("Hello") == "hello alice"
        assert not alice.closed.is_set()


async def test_a_banned_users_new_connection_is_closed_at_its_handshake(
    start_server: StartServer,
) -> None:
    """What passed the HTTP checks before the ban but completes its handshake after
    it: the session sees the ban itself."""
    server = await start_server(ChatHub)
    await server.ban("mallory")
    async with open_raw_client(server, principal=user("mallory")) as client:
        assert await client.rest() == [HANDSHAKE_OK, CLOSE]
        await client.ended.wait()
        assert client.reason is CloseReason.ABORTED
    async with open_test_client(server, PATH, principal=user("alice")) as alice:
        assert await alice.invoke("Hello") == "hello alice"


async def test_unban_lets_the_user_back(start_server: StartServer) -> None:
    server = await start_server(ChatHub)
    await server.ban("mallory")
    await server.ban("mallory")  # twice: still one ban
    await server.ban("eve")
    assert server.banned == {"mallory", "eve"}
    await server.unban("mallory")
    await server.unban("nobody")  # not banned: nothing happens
    assert server.banned == {"eve"}
    async with open_test_client(server, PATH, principal=user("mallory")) as client:
        assert await client.invoke("Hello") == "hello mallory"


async def test_the_user_id_is_the_hubs(start_server: StartServer) -> None:
    """A ban names a user id as the hub's user-id provider gives it (what
    ``clients.user(...)`` takes), not a claim of the ban's choosing."""

    def by_email(principal: Principal) -> str | None:
        return principal.email

    server = HubServer(user_id_provider=by_email)
    server.map_hub(PATH, ChatHub)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        mallory = Principal(claims={"sub": "mallory", "email": "m@x.example"}, scheme="Bearer")
        async with open_test_client(server, PATH, principal=mallory) as client:
            assert await server.ban("mallory") == 0
            assert await client.invoke("Hello") == "hello m@x.example"
            assert await server.ban("m@x.example") == 1
            await client.closed.wait()
        nursery.cancel_scope.cancel()


async def test_ban_needs_a_running_server_and_a_user_id(start_server: StartServer) -> None:
    idle = HubServer()
    with pytest.raises(RuntimeError, match="not running"):
        await idle.ban("mallory")
    with pytest.raises(RuntimeError, match="not running"):
        await idle.unban("mallory")
    server = await start_server(ChatHub)
    for wrong in ("", None):
        with pytest.raises(ValueError, match="non-empty string"):
            await server.ban(wrong)  # type: ignore[arg-type]
    assert server.banned == frozenset()


# -- over HTTP: negotiate answers 403 ------------------------------------------------------


@pytest.mark.parametrize("serve", [on_hypercorn, on_native], ids=["hypercorn", "native"])
async def test_negotiate_refuses_a_banned_user_with_403(
    nursery: trio.Nursery, serve: Serve
) -> None:
    server = HubServer(authenticator=bearer_authenticator(KEY, "bans"))
    server.map_hub("/hubs/chat", ChatHub)
    await nursery.start(server.run)
    host, port = await serve(nursery, server)
    http = Http(f"http://{host}:{port}")
    now = int(time.time())

    def token(name: str) -> dict[str, str]:
        return bearer(
            sign({"sub": name, "iss": "tests", "aud": "bans", "iat": now, "exp": now + 600}, KEY)
        )

    negotiate = "/hubs/chat/negotiate?negotiateVersion=1"
    assert (await http.post(negotiate, headers=token("mallory"))).status_code == 200
    await server.ban("mallory")
    refused = await http.post(negotiate, headers=token("mallory"))
    assert refused.status_code == 403
    assert "connectionToken" not in refused.text
    assert (await http.post(negotiate, headers=token("alice"))).status_code == 200
    await server.unban("mallory")
    assert (await http.post(negotiate, headers=token("mallory"))).status_code == 200
