"""``HubServer.refresh_authentication``: a fresh credential of the connection's own
user replaces its principal and its expiry deadline in place; anything else is
refused and changes nothing.

Virtual time (``autojump_clock``); the server's wall clock is tied to it, as in
tests/auth/test_expiry.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from hub_support import Serve, bearer_authenticator, on_hypercorn, on_native

from tests.auth.support import Http, bearer, sign
from triohub import Hub, HubOptions, HubServer, Principal
from triohub.hub.credentials import RefreshRefused
from triohub.protocol import Close
from triohub.testing import HubTestClient, open_test_client

PATH = "/hub"
EPOCH = 1_900_000_000.0
LIFETIME = 60.0
EXPIRED = Close(error="Authentication expired.", allow_reconnect=True)


def wall_clock() -> float:
    return EPOCH + trio.current_time()


class RefreshingHub(Hub):
    def __init__(self, refreshed: list[object] | None = None) -> None:
        self.refreshed = refreshed if refreshed is not None else []

    async def roles(self) -> list[str]:
        return sorted(self.context.principal.roles)

    async def on_authentication_refreshed(self) -> None:
        self.refreshed.append((self.context.connection_id, self.context.principal.claim("n")))


def credential(sub: str, n: int, lifetime: float = LIFETIME, **claims: object) -> Principal:
    return Principal(
        {"sub": sub, "n": n, **claims}, scheme="Bearer", expires_at=wall_clock() + lifetime
    )


async def start(nursery: trio.Nursery, *, allow: bool = True) -> tuple[HubServer, list[object]]:
    refreshed: list[object] = []

    server = HubServer(clock=wall_clock)
    server.map_hub(
        PATH,
        RefreshingHub,
        factory=lambda: RefreshingHub(refreshed),
        options=HubOptions(
            close_on_authentication_expiration=True, allow_authentication_refresh=allow
        ),
    )
    await nursery.start(server.run)
    return server, refreshed


@asynccontextmanager
async def connected(server: HubServer, principal: Principal | None) -> AsyncIterator[HubTestClient]:
    """A client on connection ``c-1``, past its handshake on the server's side too."""
    async with open_test_client(
        server, PATH, principal=principal or Principal(), connection_id="c-1"
    ) as client:
        await client.invoke("Roles")
        yield client


async def test_a_refreshed_connection_outlives_its_first_token_and_closes_at_the_new_expiry(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    server, refreshed = await start(nursery)
    async with connected(server, credential("alice", 1)) as client:
        connection_id = "c-1"
        await trio.sleep(LIFETIME - 10)
        refreshed_at = trio.current_time()
        result = await server.refresh_authentication(
            connection_id, credential("alice", 2, role="Editors")
        )
        assert result.connection_id == connection_id
        assert result.token_lifetime == LIFETIME
        assert result.refreshed_at == wall_clock()
        assert refreshed == [(connection_id, 2)]
        # Hub code sees the new principal at once.
        assert await client.invoke("Roles") == ["Editors"]
        await trio.sleep(20)  # past the first token's expiry
        assert not client.closed.is_set()
        assert await client.invoke("Roles") == ["Editors"]
        await client.closed.wait()
        # At the second token's expiry, to the tick.
        assert trio.current_time() == refreshed_at + LIFETIME
        assert client.close_message == EXPIRED


async def test_another_users_credential_is_refused_and_the_connection_is_unchanged(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    server, refreshed = await start(nursery)
    async with connected(server, credential("alice", 1)) as client:
        with pytest.raises(RefreshRefused) as refused:
            await server.refresh_authentication(
                "c-1", credential("bob", 2, LIFETIME * 10, role="Admins")
            )
        assert (refused.value.status, refused.value.error) == (403, "forbidden")
        assert str(refused.value) == "The credential is of another user."
        assert await client.invoke("Roles") == []
        assert refreshed == []
        await client.closed.wait()  # still at the first token's expiry
        assert trio.current_time() == LIFETIME


@pytest.mark.parametrize(
    ("principal", "status", "error", "text"),
    [
        (Principal(), 401, "invalid_token", "A valid credential is required."),
        (None, 404, "connection_not_found", "No such connection."),
    ],
    ids=["anonymous", "unknown-connection"],
)
async def test_what_a_refresh_refuses(
    nursery: trio.Nursery, principal: Principal | None, status: int, error: str, text: str
) -> None:
    server, _ = await start(nursery)
    async with connected(server, credential("alice", 1)):
        connection_id = "c-1" if principal is not None else "nobody"
        with pytest.raises(RefreshRefused) as refused:
            await server.refresh_authentication(connection_id, principal or credential("alice", 2))
        assert (refused.value.status, refused.value.error, str(refused.value)) == (
            status,
            error,
            text,
        )


async def test_a_revoked_or_banned_credential_is_refused(nursery: trio.Nursery) -> None:
    server, _ = await start(nursery)
    async with connected(server, credential("alice", 1)) as client:
        await server.revoke(token_id="stolen-jti")
        with pytest.raises(RefreshRefused, match="has been revoked") as refused:
            await server.refresh_authentication("c-1", credential("alice", 2, jti="stolen-jti"))
        assert refused.value.status == 401
    async with connected(server, credential("carol", 1)) as client:
        await server.ban("eve")  # not carol: carol stays, then carol is banned
        await server.refresh_authentication("c-1", credential("carol", 2))
        await server.ban("carol")
        await client.closed.wait()
        with pytest.raises(RefreshRefused) as refused:
            await server.refresh_authentication("c-1", credential("carol", 3))
        assert refused.value.status == 404  # closed: nothing left to refresh


async def test_an_anonymous_connection_has_no_user_to_refresh(nursery: trio.Nursery) -> None:
    server, _ = await start(nursery)
    async with connected(server, None):
        with pytest.raises(RefreshRefused, match="no user to refresh") as refused:
            await server.refresh_authentication("c-1", credential("alice", 1))
        assert refused.value.status == 403


async def test_refresh_is_off_unless_the_hub_allows_it(nursery: trio.Nursery) -> None:
    server, refreshed = await start(nursery, allow=False)
    async with connected(server, credential("alice", 1)):
        with pytest.raises(RefreshRefused, match="not enabled") as refused:
            await server.refresh_authentication("c-1", credential("alice", 2))
        assert (refused.value.status, refused.value.error) == (404, "refresh_disabled")
        assert refreshed == []


async def test_the_token_lifetime_negotiate_reports(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    server, _ = await start(nursery)
    credentials = server.credentials
    assert credentials.token_lifetime(credential("alice", 1, 299.5), True) == 299
    assert credentials.token_lifetime(credential("alice", 1, 299.5), False) is None
    assert credentials.token_lifetime(Principal({"sub": "alice"}, scheme="Bearer"), True) is None
    assert credentials.token_lifetime(credential("alice", 1, -5), True) == 0


# -- over HTTP, on both servers: POST {hub}/refresh?id={token} ---------------------------

KEY = "triohub-refresh-tests-secret-0123456789-abcdefghijklmn"


@pytest.mark.parametrize("serve", [on_hypercorn, on_native], ids=["hypercorn", "native"])
async def test_the_refresh_route_on_a_long_polling_connection(
    nursery: trio.Nursery, serve: Serve
) -> None:
    server = HubServer(authenticator=bearer_authenticator(KEY, "refresh"))
    server.map_hub(
        "/hubs/chat",
        RefreshingHub,
        options=HubOptions(
            close_on_authentication_expiration=True, allow_authentication_refresh=True
        ),
    )
    await nursery.start(server.run)
    host, port = await serve(nursery, server)
    http = Http(f"http://{host}:{port}")
    now = time.time()

    def token(name: str, lifetime: float) -> dict[str, str]:
        claims = {"sub": name, "iss": "tests", "aud": "refresh", "iat": now, "exp": now + lifetime}
        return bearer(sign(claims, KEY))

    first = token("alice", 60)
    negotiated = await http.post("/hubs/chat/negotiate?negotiateVersion=1", headers=first)
    assert 58 <= negotiated.json()["tokenLifetimeSeconds"] <= 60
    connection_token = negotiated.json()["connectionToken"]
    hub = f"/hubs/chat?id={connection_token}"
    assert (await http.get(hub, headers=first)).status_code == 200  # starts the connection
    handshake = b'{"protocol":"json","version":1}\x1e'
    assert (await http.post(hub, content=handshake, headers=first)).status_code == 200
    assert (await http.get(hub, headers=first)).content == b"{}\x1e"

    refresh = f"/hubs/chat/refresh?id={connection_token}"
    answer = await http.post(refresh, headers=token("alice", 600))
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"connectionId", "refreshedAt", "tokenLifetimeSeconds"}
    assert body["connectionId"] == negotiated.json()["connectionId"]
    assert body["refreshedAt"].endswith("Z")
    assert 598 <= body["tokenLifetimeSeconds"] <= 600
    assert answer.headers["content-type"] == "application/json"
    other = await http.post(refresh, headers=token("bob", 600))
    assert (other.status_code, other.json()) == (
        403,
        {"error": "forbidden", "error_description": "The credential is of another user."},
    )
    assert (await http.get(refresh, headers=token("alice", 600))).status_code == 405
