"""``POST /account/renew``: what the demo page calls before its session expires. The
session keeps its id (so sign-out with any of its cookies ends it, connections
included) and gets a full lifetime ahead; the new cookie then refreshes a live hub
connection in place. Nothing that ended, was revoked or banned is renewed, and only
this site may ask."""

from __future__ import annotations

import trio
from trio_websocket import open_websocket_url

from demo.web import DemoWeb

from .conftest import Demo
from .support import HUB, HubSocket
from .test_sessions import NEGOTIATE, closed_record, jar, logout

RENEW = "/account/renew"


async def renew(demo: Demo, cookie: str, **headers: str) -> str:
    response = await demo.http.post(RENEW, headers={**jar(cookie), **headers})
    assert response.status_code == 200, response.text
    assert response.json() == {"expires_in": 8 * 3600}
    assert response.headers["cache-control"] == "no-store"
    set_cookie = response.headers["set-cookie"]
    assert "HttpOnly" in set_cookie
    assert f"Max-Age={8 * 3600}" in set_cookie
    return set_cookie.partition("=")[2].split(";", 1)[0]


async def test_a_renewed_cookie_is_the_same_session(demo: Demo) -> None:
    cookie = await demo.http.login_cookie("alice")
    renewed = await renew(demo, cookie, Origin=demo.base_url)
    assert renewed != cookie
    response = await demo.http.post(NEGOTIATE, headers=jar(renewed))
    assert response.status_code == 200
    # Signing out with the renewed cookie ends the session: the first cookie too.
    await logout(demo, renewed)
    assert (await demo.http.post(NEGOTIATE, headers=jar(cookie))).status_code == 401
    assert (await demo.http.post(RENEW, headers=jar(cookie))).status_code == 401
    assert (await demo.http.post(RENEW, headers=jar(renewed))).status_code == 401


async def test_what_is_not_renewed(demo: Demo) -> None:
    assert (await demo.http.post(RENEW)).status_code == 401  # no session
    assert (await demo.http.post(RENEW, headers=jar("forged"))).status_code == 401
    token = await demo.http.token("alice")  # a bearer token is not a session
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await demo.http.post(RENEW, headers=bearer)).status_code == 401
    cookie = await demo.http.login_cookie("alice")
    foreign = await demo.http.post(RENEW, headers={**jar(cookie), "Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert "set-cookie" not in foreign.headers

    bob = await demo.http.login_cookie("bob")
    await demo.app.server.revoke(user="bob@contoso.example")  # RevokeSessions("bob")
    refused = await demo.http.post(RENEW, headers=jar(bob))
    assert refused.status_code == 401
    assert "set-cookie" not in refused.headers
    assert refused.json()["error"] == "invalid_token"
    mallory = await demo.http.login_cookie("mallory")
    await demo.app.server.ban("mallory@fabrikam.example")
    assert (await demo.http.post(RENEW, headers=jar(mallory))).status_code == 401
    # Banned from the chat (BanUser keeps the demo's own list, not the server's).
    asdf42 = await demo.http.login_cookie("asdf42")
    assert isinstance(demo.app.fallback, DemoWeb)
    assert demo.app.fallback.bans is not None
    await demo.app.fallback.bans.add("asdf42")
    assert (await demo.http.post(RENEW, headers=jar(asdf42))).status_code == 401
    # alice was neither: her session renews.
    await renew(demo, cookie)


async def test_a_renewed_cookie_refreshes_a_live_connection_in_place(demo: Demo) -> None:
    cookie = await demo.http.login_cookie("alice")
    response = await demo.http.post(NEGOTIATE, headers=jar(cookie))
    token = response.json()["connectionToken"]
    extra = [(b"cookie", f"triohub_demo={cookie}".encode())]
    async with open_websocket_url(f"{demo.ws_url}{HUB}?id={token}", extra_headers=extra) as ws:
        hub = HubSocket(ws)
        await hub.handshake()
        renewed = await renew(demo, cookie)
        refreshed = await demo.http.post(f"{HUB}/refresh?id={token}", headers=jar(renewed))
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["tokenLifetimeSeconds"] > 8 * 3600 - 5
        assert (await hub.invoke("WhoAmI"))["result"]["name"] == "alice"
        # The connection now holds the renewed cookie's session: sign-out closes it.
        await logout(demo, renewed)
        with trio.fail_after(5):
            assert await closed_record(ws) == {"type": 7}
