"""Authentication refresh in place (``POST {hub}/refresh?id={connectionToken}``) end to
end with the official JavaScript client against the demo's ``/hubs/chat`` (which
closes connections at their token's expiry and accepts refresh):

* over WebSockets, SSE and long polling, a short token refreshed before it expires,
  several times, keeps one connection: no reconnect, no lost message, and it closes
  at the last token's expiry with ``Authentication expired.``;
* the refusals, each with its exact status and error text: another user's token (403,
  the connection stays alice's), no credential, an expired token, a token signed with
  another key, a revoked ``jti``, a token issued before a revocation (401), no id
  (400), an unknown id (404).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

import jwt
import pytest
import trio

from demo.app import build_app
from demo.users import AUDIENCE, ISSUER, USERS
from triohub import serve_hypercorn

from .conftest import E2E_DIR, NodeClient

pytestmark = pytest.mark.e2e

SCRIPT = E2E_DIR / "js" / "refresh.mjs"
LIFETIME = 5  # seconds: each token the script gets
REFRESHES = 7  # at 45 % of each 5 s token: the connection lives about 20 s
TRANSPORTS = ["WebSockets", "ServerSentEvents", "LongPolling"]
ALICE = "alice@contoso.example"


def mint(secret: str, *, iat: float, exp: float, jti: str | None = None) -> str:
    claims: dict[str, Any] = {
        **USERS["alice"].claims(),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": iat,
        "exp": int(exp),
        "jti": jti or secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def error(status: int, code: str, description: str) -> dict[str, Any]:
    return {"status": status, "body": {"error": code, "error_description": description}}


async def run_script(nursery: trio.Nursery, node_client: NodeClient) -> Any:
    secret = secrets.token_urlsafe(48)
    app = build_app(secret)
    await nursery.start(app.server.run)
    host, port = await nursery.start(serve_hypercorn, app, "127.0.0.1", 0)
    now = time.time()
    await app.server.revoke(token_id="revoked-jti")
    # Every token of alice issued before this instant is refused; the script's come later.
    await app.server.revoke(user=ALICE, issued_before=now)
    minted = {
        "expired": mint(secret, iat=now - 120, exp=now - 60),
        "wrongSignature": mint(secrets.token_urlsafe(48), iat=now + 1, exp=now + 600),
        "revokedJti": mint(secret, iat=now + 1, exp=now + 600, jti="revoked-jti"),
        "issuedBefore": mint(secret, iat=now - 10, exp=now + 600),
    }
    return await node_client.arun_script(
        SCRIPT, f"http://{host}:{port}", str(LIFETIME), str(REFRESHES), json.dumps(minted)
    )


async def test_refresh_in_place_and_what_it_refuses(
    nursery: trio.Nursery, node_client: NodeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="triohub")
    observed = await run_script(nursery, node_client)
    check_refreshes(observed)
    check_refusals(observed)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("triohub")]
    assert any("refused a refresh with another user's credential" in line for line in logged)
    # No credential in the logs (every JWT starts with the base64 of '{"').
    assert not [line for line in logged if "eyJ" in line]


def check_refreshes(observed: Any, refreshes: int = REFRESHES) -> None:
    for seen in observed["transports"]:
        transport = seen["transport"]
        assert 1 <= seen["negotiatedLifetime"] <= LIFETIME, seen
        assert len(seen["refreshes"]) == refreshes, seen
        for answer in seen["refreshes"]:
            assert answer == {
                "status": 200,
                "keys": ["connectionId", "refreshedAt", "tokenLifetimeSeconds"],
                "lifetime": answer["lifetime"],
                "connectionId": True,
            }, (transport, answer)
            assert 1 <= answer["lifetime"] <= LIFETIME
        # One connection outlived every token but the last (alive, from the first
        # token's minting to the last refresh, longer than that token's lifetime) ...
        assert seen["aliveAfterMs"] >= refreshes * 0.45 * LIFETIME * 1000 > LIFETIME * 1000
        assert seen["whoami"] == {"value": ALICE}
        # ... never reconnected, lost nothing, and closed at the last token's expiry.
        assert seen["reconnectsWhileRefreshed"] == 0, seen
        assert seen["received"] == seen["sent"] == refreshes + 1, seen
        assert seen["closed"] == "Server returned an error on close: Authentication expired."
        # Not before the last token's expiry (at least a second after it was issued).
        assert seen["closedAfterLastRefreshMs"] >= 1000, seen


MINTED = {
    "expired": "The token expired.",
    "wrongSignature": "The token's signature is invalid.",
    "revokedJti": "The credential has been revoked.",
    "issuedBefore": "The credential has been revoked.",
}
"""The credentials the test mints for the refusals, and why each is refused."""


def check_refusals(observed: Any, minted: tuple[str, ...] = tuple(MINTED)) -> None:
    refused = observed["refusals"]
    assert refused["anotherUser"] == error(403, "forbidden", "The credential is of another user.")
    assert refused["stillAlice"] == {"value": ALICE}
    assert refused["noCredential"] == error(401, "invalid_token", "A valid credential is required.")
    assert refused["missingId"] == error(
        400, "missing_connection_token", "The id query parameter is required."
    )
    assert refused["unknownId"] == error(404, "connection_not_found", "No such connection.")
    for name in minted:
        description = MINTED[name]
        seen = refused[name]
        assert (seen["status"], seen["body"]) == (
            401,
            {"error": "invalid_token", "error_description": description},
        ), name
        assert seen["challenge"].startswith('Bearer error="invalid_token"'), (name, seen)
    assert refused["stillAliceAtTheEnd"] == {"value": ALICE}
