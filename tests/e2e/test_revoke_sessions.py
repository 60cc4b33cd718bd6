"""The demo's ``RevokeSessions`` (``/hubs/chat``, policies ``Administrators`` and
``DomainRestricted`` like ``BanUser``) end to end with the official JavaScript client:
every session of bob closes, on every transport, with the Close that does not allow
reconnecting; his old token is refused on negotiate (401) while a new sign-in works."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import trio

from demo.app import build_app
from triohub import serve_hypercorn

from .conftest import E2E_DIR, NodeClient

pytestmark = pytest.mark.e2e

SCRIPT = E2E_DIR / "js" / "revoke_sessions.mjs"


async def revoke_sessions(nursery: trio.Nursery, node_client: NodeClient) -> Any:
    # Its own demo: a revocation is server state no other test should meet.
    app = build_app(secrets.token_urlsafe(48))
    await nursery.start(app.server.run)
    host, port = await nursery.start(serve_hypercorn, app, "127.0.0.1", 0)
    return await node_client.arun_script(SCRIPT, f"http://{host}:{port}")


async def test_revoke_sessions_ends_every_session_of_the_user(
    nursery: trio.Nursery, node_client: NodeClient
) -> None:
    observed = await revoke_sessions(nursery, node_client)
    assert observed["bobDenied"] == {
        "error": "Failed to invoke 'RevokeSessions' because user is unauthorized"
    }
    assert observed["revoked"] == {"value": 3}
    closed = {
        "error": "Server returned an error on close: Authentication revoked.",
        "reconnecting": False,
    }
    assert observed["closes"] == {
        "WebSockets": closed,
        "ServerSentEvents": closed,
        "LongPolling": closed,
    }
    error = observed["oldToken"]["error"]
    assert error.startswith("Failed to complete negotiation with the server"), error
    assert "Status code '401'" in error, error
    assert observed["newSignIn"]["value"]["userId"] == "bob@contoso.example"
    assert observed["aliceStill"] == {"value": "alice@contoso.example"}
