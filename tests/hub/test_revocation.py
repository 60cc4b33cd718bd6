"""``HubServer.revoke``: matching connections close at once with a Close that does not
allow reconnecting ("Authentication revoked."), and matching credentials are refused
from then on (401 with the reason, on negotiate and every transport request)."""

from __future__ import annotations

import logging
import time

import pytest
import trio
from hub_support import (
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

KEY = "triohub-revocation-tests-secret-0123456789-abcdefghijkl"
REVOKED = Close(error="Authentication revoked.")


class ChatHub(Hub):
    async def hello(self) -> str:
        return f"hello {self.context.user_id}"


def user(name: str, *, iat: float | None = None, jti: str | None = None) -> Principal:
    claims: dict[str, object] = {"sub": name, "iat": time.time() - 10 if iat is None else iat}
    if jti is not None:
        claims["jti"] = jti
    return Principal(claims, scheme="Bearer")


async def test_revoking_a_user_closes_every_session_without_reconnect(
    start_server: StartServer,
) -> None:
    server = await start_server(ChatHub)
    async with (
        open_test_client(server, PATH, principal=user("bob")) as first,
        open_test_client(server, PATH, principal=user("bob", jti="b-2")) as second,
        open_test_client(server, PATH, principal=user("alice")) as alice,
    ):
        for client in (first, second, alice):
            assert (await client.invoke("Hello")).startswith("hello ")
        assert await server.revoke(user="bob") == 2
        for client in (first, second):
            await client.closed.wait()
            assert client.close_message == REVOKED  # no allowReconnect, its own reason
        assert await alice.invoke("Hello") == "hello alice"
    # A new sign-in (issued after the revocation) works.
    async with open_test_client(server, PATH, principal=user("bob", iat=time.time())) as bob:
        assert await bob.invoke("Hello") == "hello bob"
    assert len(server.revocations) == 1


async def test_revoking_one_token_id_leaves_the_users_other_sessions(
    start_server: StartServer,
) -> None:
    server = await start_server(ChatHub)
    async with (
        open_test_client(server, PATH, principal=user("bob", jti="stolen")) as stolen,
        open_test_client(server, PATH, principal=user("bob", jti="laptop")) as laptop,
    ):
        for client in (stolen, laptop):
            assert await client.invoke("Hello") == "hello bob"
        assert await server.revoke(token_id="stolen") == 1
        await stolen.closed.wait()
        assert stolen.close_message == REVOKED
        assert await laptop.invoke("Hello") == "hello bob"


async def test_issued_before_ends_older_credentials_of_everyone(
    start_server: StartServer,
) -> None:
    server = await start_server(ChatHub)
    cut = time.time()
    async with (
        open_test_client(server, PATH, principal=user("bob", iat=cut - 5)) as old,
        open_test_client(server, PATH, principal=user("alice", iat=cut + 1)) as new,
    ):
        for client in (old, new):
            assert (await client.invoke("Hello")).startswith("hello ")
        assert await server.revoke(issued_before=cut) == 1
        await old.closed.wait()
        assert await new.invoke("Hello") == "hello alice"


async def test_a_revoked_credential_is_closed_at_its_handshake(
    start_server: StartServer,
) -> None:
    """Past the HTTP checks before the revocation, handshake after it."""
    server = await start_server(ChatHub)
    await server.revoke(user="bob")
    async with open_raw_client(server, principal=user("bob")) as client:
        assert await client.rest() == [
            HANDSHAKE_OK,
            b'{"type":7,"error":"Authentication revoked."}\x1e',
        ]
        await client.ended.wait()
        assert client.reason is CloseReason.REVOKED


async def test_a_revocation_is_kept_until_the_credentials_it_matches_expire(
    start_server: StartServer,
) -> None:
    clock = [1_800_000_000.0]
    server = await start_server(ChatHub, clock=lambda: clock[0], credential_lifetime=600)
    await server.revoke(user="bob")
    (entry,) = server.revocations.entries
    assert entry.until == 1_800_000_600.0  # the newest matching credential's lifetime
    await server.revoke(token_id="t-1", expires_at=1_800_000_030.0)  # its own expiry
    clock[0] += 31
    old_bob = user("bob", iat=1_800_000_000.0 - 10)
    assert server.authorizer.revoked(old_bob, "bob") is not None
    assert server.authorizer.revoked(user("bob", jti="t-1", iat=clock[0]), "bob") is None
    clock[0] += 600
    assert server.authorizer.revoked(old_bob, "bob") is None
    await server.revoke(token_id="t-2")  # a change forgets what has lapsed
    assert [e.token_id for e in server.revocations.entries] == ["t-2"]
    # Credentials issued until a later time are refused until that time's lifetime.
    await server.revoke(issued_before=clock[0] + 100)
    assert server.revocations.entries[-1].until == clock[0] + 700
    await server.revoke(token_id="t-3", issued_before=clock[0] + 100)
    assert server.revocations.entries[-1].until == clock[0] + 600


async def test_revoke_needs_a_running_server_and_something_to_revoke(
    start_server: StartServer,
) -> None:
    with pytest.raises(RuntimeError, match="not running"):
        await HubServer().revoke(user="bob")
    server = await start_server(ChatHub)
    with pytest.raises(ValueError, match="revoke what"):
        await server.revoke()
    with pytest.raises(ValueError, match="non-empty string"):
        await server.revoke(user="")
    assert not server.revocations


# -- over HTTP: 401 with the reason ---------------------------------------------------------


@pytest.mark.parametrize("serve", [on_hypercorn, on_native], ids=["hypercorn", "native"])
async def test_negotiate_and_transport_requests_refuse_a_revoked_credential_with_401(
    nursery: trio.Nursery, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    server = HubServer(authenticator=bearer_authenticator(KEY, "revoke"))
    server.map_hub("/hubs/chat", ChatHub)
    await nursery.start(server.run)
    host, port = await serve(nursery, server)
    http = Http(f"http://{host}:{port}")
    now = time.time()

    def token(name: str, jti: str, iat: float) -> dict[str, str]:
        claims = {"sub": name, "iss": "tests", "aud": "revoke", "iat": iat, "exp": now + 600}
        return bearer(sign({**claims, "jti": jti}, KEY))

    negotiate = "/hubs/chat/negotiate?negotiateVersion=1"
    old, stolen = token("bob", "b-1", now - 5), token("carol", "c-1", now - 5)
    opened = await http.post(negotiate, headers=old)
    assert opened.status_code == 200
    connection_token = opened.json()["connectionToken"]
    caplog.set_level(logging.DEBUG, logger="triohub")
    await server.revoke(user="bob")
    await server.revoke(token_id="c-1")
    for credential in (old, stolen):
        refused = await http.post(negotiate, headers=credential)
        assert refused.status_code == 401
        assert refused.text == "The credential has been revoked."
        assert refused.headers["www-authenticate"] == (
            'Bearer error="invalid_token", error_description="The credential has been revoked"'
        )
    # The connection negotiated before: its transport requests are refused too.
    poll = await http.get(f"/hubs/chat?id={connection_token}", headers=old)
    assert poll.status_code == 401
    assert poll.text == "The credential has been revoked."
    # New sign-ins of bob, and carol's other tokens, work.
    assert (await http.post(negotiate, headers=token("bob", "b-2", time.time()))).status_code == 200
    assert (await http.post(negotiate, headers=token("carol", "c-2", now - 5))).status_code == 200
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("triohub"))
    assert "refused a revoked credential" in text
    for secret in (old["Authorization"], stolen["Authorization"], "b-1", "c-1", connection_token):
        assert secret.removeprefix("Bearer ") not in text
