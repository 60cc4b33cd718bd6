"""The standalone trio-websocket server (``serve_trio_websocket``, no HTTP, no negotiate)
must not be a way around authentication: a hub whose class requires an authenticated
user is protected there exactly as it is behind the ASGI app (``check_request`` on the
upgrade: 401 / 403), and the connection's principal is the upgrade request's."""

from __future__ import annotations

from typing import Any

import outcome
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from triohub import Hub, HubServer, authorize
from triohub.auth.jwt_bearer import JwtBearerAuthenticator, JwtBearerOptions
from triohub.transports.trio_websocket import serve_trio_websocket

from .support import AUDIENCE, ISSUER, SECRET, HubSocket, claims, sign


@authorize
class PrivateHub(Hub):
    async def who_am_i(self) -> str | None:
        return self.context.user_id


async def serve(nursery: trio.Nursery) -> str:
    server = HubServer(
        authenticator=JwtBearerAuthenticator(
            JwtBearerOptions(algorithms=("HS256",), key=SECRET, issuer=ISSUER, audience=AUDIENCE)
        )
    )
    server.map_hub("/hubs/private", PrivateHub)
    await nursery.start(server.run)
    host, port = await nursery.start(serve_trio_websocket, server)
    return f"ws://{host}:{port}/hubs/private"


async def who_am_i(url: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    async with open_websocket_url(url, extra_headers=headers) as ws:
        hub = HubSocket(ws)
        await hub.handshake()
        return await hub.invoke("WhoAmI")


async def test_anonymous_upgrade_to_a_protected_hub_is_refused(nursery: trio.Nursery) -> None:
    url = await serve(nursery)
    result = await outcome.acapture(who_am_i, url)
    if isinstance(result, outcome.Value):
        pytest.fail(f"an anonymous client connected and invoked WhoAmI: {result.value}")
    with pytest.raises(ConnectionRejected) as raised:
        result.unwrap()
    assert raised.value.status_code == 401


async def test_bearer_token_on_the_upgrade_sets_the_principal(nursery: trio.Nursery) -> None:
    url = await serve(nursery)
    header = [(b"authorization", f"Bearer {sign(claims('alice'))}".encode())]
    completion = await who_am_i(url, header)
    assert completion.get("result") == "alice", completion
