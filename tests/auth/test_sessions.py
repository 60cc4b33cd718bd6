"""Sessions that end: the revocation store, the cookie's session id, and sign-out on the
wire (the old cookie gets 401 on negotiate and on every transport request, and the
session's live connections are closed; the user's other sessions are left alone)."""

from __future__ import annotations

import time
from typing import Any

import itsdangerous
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from demo.app import EndedSessions
from triohub.auth.authenticator import AuthenticationFailed
from triohub.auth.cookie import SESSION_ID_CLAIM, CookieAuthenticator
from triohub.auth.principal import Principal
from triohub.auth.sessions import MemoryRevocationStore, RevocationStore
from triohub.hub.context import HubCallerContext

from .conftest import Demo
from .support import HUB, SECRET, HubSocket, records, request_info

NAME = "triohub_session"
CLAIMS = {"sub": "alice", "name": "alice", "email": "alice@contoso.example"}
NEGOTIATE = HUB + "/negotiate?negotiateVersion=1"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the memory store -------------------------------------------------------------------


async def test_a_revoked_id_is_revoked_until_its_expiry() -> None:
    clock = Clock()
    store = MemoryRevocationStore(clock=clock)
    assert isinstance(store, RevocationStore)
    assert not await store.is_revoked("s1")
    await store.revoke("s1", until=clock.now + 60)
    assert await store.is_revoked("s1")
    assert not await store.is_revoked("s2")
    clock.now += 59.9
    assert await store.is_revoked("s1")
    clock.now += 0.1
    assert not await store.is_revoked("s1")


async def test_memory_is_bounded_by_the_expiries() -> None:
    clock = Clock()
    store = MemoryRevocationStore(clock=clock)
    for n in range(1000):
        await store.revoke(f"s{n}", until=clock.now + 10 + n % 10)
    assert len(store) == 1000
    clock.now += 15
    await store.revoke("late", until=clock.now + 100)
    # Those that expired by now (until <= +15: n % 10 <= 5) are gone.
    assert len(store) == 1 + 1000 - 600
    clock.now += 10
    await store.revoke("later", until=clock.now + 100)
    assert len(store) == 2
    assert await store.is_revoked("late")


async def test_revoking_again_keeps_the_later_expiry() -> None:
    clock = Clock()
    store = MemoryRevocationStore(clock=clock)
    await store.revoke("s", until=clock.now + 100)
    await store.revoke("s", until=clock.now + 10)  # an earlier one changes nothing
    clock.now += 50
    await store.revoke("other", until=clock.now + 1)  # runs the purge
    assert await store.is_revoked("s")
    await store.revoke("s", until=clock.now + 500)
    clock.now += 100
    await store.revoke("other", until=clock.now + 1)
    assert await store.is_revoked("s")


async def test_an_already_expired_revocation_is_not_kept() -> None:
    clock = Clock()
    store = MemoryRevocationStore(clock=clock)
    await store.revoke("s", until=clock.now - 1)
    assert len(store) == 0
    assert not await store.is_revoked("s")


# -- the cookie's session id ------------------------------------------------------------


def cookie_value(set_cookie: str) -> str:
    name, _, value = set_cookie.split(";", 1)[0].partition("=")
    assert name == NAME
    return value


def with_cookie(value: str) -> Any:
    return request_info(method="GET", path=HUB, headers={"Cookie": f"{NAME}={value}"})


async def test_every_cookie_gets_a_new_random_session_id() -> None:
    cookies = CookieAuthenticator(SECRET)
    seen = set()
    for _ in range(3):
        # A session id in the claims given is replaced: the caller cannot pick one.
        value = cookie_value(cookies.issue({**CLAIMS, SESSION_ID_CLAIM: "chosen"}))
        principal = await cookies.authenticate(with_cookie(value))
        assert principal is not None
        session = cookies.session_of(principal)
        assert session is not None
        assert session != "chosen"
        assert len(session) >= 32
        seen.add(session)
    assert len(seen) == 3


async def test_end_session_revokes_only_that_session() -> None:
    cookies = CookieAuthenticator(SECRET)
    first = cookie_value(cookies.issue(CLAIMS))
    second = cookie_value(cookies.issue(CLAIMS))
    ended = await cookies.end_session(with_cookie(first))
    assert ended is not None
    assert ended.name_identifier == "alice"
    with pytest.raises(AuthenticationFailed) as raised:
        await cookies.authenticate(with_cookie(first))
    assert raised.value.description == "The session has ended."
    assert await cookies.authenticate(with_cookie(second)) is not None
    # Ending it again, or with no or a bad cookie, is nothing to end.
    assert await cookies.end_session(with_cookie(first)) is None
    assert await cookies.end_session(request_info()) is None
    assert await cookies.end_session(with_cookie("garbage")) is None


class Recording:
    """A store that records what it is told (to see the ``until`` it gets)."""

    def __init__(self) -> None:
        self.revoked: dict[str, float] = {}

    async def revoke(self, session_id: str, *, until: float) -> None:
        await trio.lowlevel.checkpoint()
        self.revoked[session_id] = until

    async def is_revoked(self, session_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return session_id in self.revoked


async def test_a_revocation_lasts_as_long_as_the_cookie_could() -> None:
    """itsdangerous accepts a cookie while ``int(now) - signed_at <= max_age``, i.e. until
    ``signed_at + max_age + 1``: the store must remember the id at least that long."""
    store = Recording()
    cookies = CookieAuthenticator(SECRET, max_age=600, revocations=store)
    value = cookie_value(cookies.issue(CLAIMS))
    principal = await cookies.end_session(with_cookie(value))
    assert principal is not None
    session = cookies.session_of(principal)
    assert session is not None
    assert principal.expires_at is not None
    assert store.revoked == {session: principal.expires_at + 1}
    assert int(time.time()) + 600 <= store.revoked[session] <= time.time() + 601


async def test_a_cookie_without_a_session_id_is_invalid() -> None:
    """Signed with the right key but without ``sid`` (issued before sessions could end):
    it could never be revoked, so it is not accepted."""
    signer = itsdangerous.URLSafeTimedSerializer(SECRET, salt="triohub.session")
    for claims in (CLAIMS, {**CLAIMS, SESSION_ID_CLAIM: ""}, {**CLAIMS, SESSION_ID_CLAIM: 7}):
        with pytest.raises(AuthenticationFailed) as raised:
            await CookieAuthenticator(SECRET).authenticate(with_cookie(signer.dumps(claims)))
        assert raised.value.description == "The session cookie is invalid."


async def test_session_of_only_reads_this_schemes_principals() -> None:
    cookies = CookieAuthenticator(SECRET)
    assert cookies.session_of(Principal({"sid": "x"}, scheme="Bearer")) is None
    assert cookies.session_of(Principal({"sid": "x"}, scheme="Cookies")) == "x"
    assert cookies.session_of(Principal({"sid": 1}, scheme="Cookies")) is None


async def test_issue_and_clear_add_secure_when_asked() -> None:
    cookies = CookieAuthenticator(SECRET)
    assert "Secure" not in cookies.issue(CLAIMS).split("; ")
    assert cookies.issue(CLAIMS, secure=True).endswith("; Secure")
    assert cookies.clear(secure=True) == (
        f"{NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
    )
    assert CookieAuthenticator(SECRET, secure=True).clear().endswith("; Secure")


# -- the hub filter for a connection that registers after the sign-out sweep -------------


async def test_a_connection_of_an_ended_session_is_aborted_at_connect() -> None:
    cookies = CookieAuthenticator(SECRET)
    value = cookie_value(cookies.issue(CLAIMS))
    principal = await cookies.authenticate(with_cookie(value))
    assert principal is not None
    aborted: list[str] = []
    context = HubCallerContext(
        "c1", principal, "alice@contoso.example", abort=lambda: aborted.append("c1")
    )
    passed: list[str] = []

    async def next_(ctx: HubCallerContext) -> None:
        await trio.lowlevel.checkpoint()
        passed.append(ctx.connection_id)

    session_filter = EndedSessions(cookies)
    await session_filter.on_connected(context, next_)
    assert (aborted, passed) == ([], ["c1"])
    await cookies.end_session(with_cookie(value))
    await session_filter.on_connected(context, next_)
    assert (aborted, passed) == (["c1"], ["c1"])
    # Bearer principals carry no session of this scheme: never aborted here.
    bearer = HubCallerContext(
        "c2", Principal({"sid": "x"}, scheme="Bearer"), "x", abort=lambda: aborted.append("c2")
    )
    await session_filter.on_connected(bearer, next_)
    assert (aborted, passed) == (["c1"], ["c1", "c2"])


# -- sign-out on the wire ---------------------------------------------------------------


def jar(cookie: str) -> dict[str, str]:
    return {"Cookie": f"triohub_demo={cookie}"}


async def logout(demo: Demo, cookie: str, **headers: str) -> None:
    response = await demo.http.post("/account/logout", headers={**jar(cookie), **headers})
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert response.headers["set-cookie"].startswith("triohub_demo=; ")
    assert "Max-Age=0" in response.headers["set-cookie"]


async def read_until_closed(ws: Any) -> None:
    while True:
        await ws.get_message()


async def closed_record(ws: Any) -> dict[str, Any]:
    """Reads until the Close record (Pings skipped), then expects the socket to end."""
    while not (found := [r for r in records(await ws.get_message()) if r["type"] == 7]):
        pass
    with pytest.raises(ConnectionClosed):
        await read_until_closed(ws)
    return found[0]


async def test_sign_out_ends_the_session_everywhere(demo: Demo) -> None:
    """The finding: logout only cleared the browser's cookie; a copy kept working for its
    8 hours and a connection opened before the logout kept running."""
    cookie = await demo.http.login_cookie("alice")
    other = await demo.http.login_cookie("alice")  # alice in another browser
    extra = [(b"cookie", f"triohub_demo={cookie}".encode())]
    other_extra = [(b"cookie", f"triohub_demo={other}".encode())]
    # Negotiated before the sign-out, used after it.
    response = await demo.http.post(NEGOTIATE, headers=jar(cookie))
    assert response.status_code == 200
    later = response.json()["connectionToken"]

    async with (
        open_websocket_url(f"{demo.ws_url}{HUB}", extra_headers=extra) as ws,
        open_websocket_url(f"{demo.ws_url}{HUB}", extra_headers=other_extra) as kept,
    ):
        hub, kept_hub = HubSocket(ws), HubSocket(kept)
        await hub.handshake()
        await kept_hub.handshake()
        assert (await hub.invoke("WhoAmI"))["result"]["name"] == "alice"

        await logout(demo, cookie)
        with trio.fail_after(5):
            assert await closed_record(ws) == {"type": 7}
        # The other session of the same user is untouched.
        assert (await kept_hub.invoke("WhoAmI"))["result"]["name"] == "alice"

    # The old cookie: 401 on negotiate and on every transport request.
    response = await demo.http.post(NEGOTIATE, headers=jar(cookie))
    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == ["Bearer"]
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(f"{demo.ws_url}{HUB}", extra_headers=extra):
            pass
    assert rejected.value.status_code == 401
    sse = await demo.http.get(
        f"{HUB}?id={later}", headers={**jar(cookie), "Accept": "text/event-stream"}
    )
    assert sse.status_code == 401
    poll = await demo.http.get(f"{HUB}?id={later}", headers=jar(cookie))
    assert poll.status_code == 401
    assert (await demo.http.post(f"{HUB}?id={later}", headers=jar(cookie))).status_code == 401
    # Signing out again with the dead cookie is harmless; signing in again works.
    await logout(demo, cookie)
    fresh = await demo.http.login_cookie("alice")
    assert (await demo.http.post(NEGOTIATE, headers=jar(fresh))).status_code == 200
    assert (await demo.http.post(NEGOTIATE, headers=jar(other))).status_code == 200


async def test_sign_out_closes_a_long_polling_connection(demo: Demo) -> None:
    cookie = await demo.http.login_cookie("bob")
    response = await demo.http.post(NEGOTIATE, headers=jar(cookie))
    token = response.json()["connectionToken"]
    first = await demo.http.get(f"{HUB}?id={token}", headers=jar(cookie))
    assert first.status_code == 200  # the first poll opens the connection
    sent = await demo.http.post(
        f"{HUB}?id={token}", headers=jar(cookie), content=b'{"protocol":"json","version":1}\x1e'
    )
    assert sent.status_code == 200
    assert (await demo.http.get(f"{HUB}?id={token}", headers=jar(cookie))).content == b"{}\x1e"
    await logout(demo, cookie)
    # The connection is closed: the next poll is refused (the cookie is dead) and, with
    # a valid credential of the same user, the server has nothing for it any more.
    assert (await demo.http.get(f"{HUB}?id={token}", headers=jar(cookie))).status_code == 401
    fresh = await demo.http.login_cookie("bob")
    with trio.fail_after(5):
        while True:
            poll = await demo.http.get(f"{HUB}?id={token}", headers=jar(fresh))
            if poll.status_code != 200 or b'"type":7' in poll.content:
                break
    assert poll.status_code in (200, 204, 404)
    if poll.status_code == 200:
        assert records(poll.content)[-1] == {"type": 7}


async def test_sign_out_closes_a_connection_still_in_its_handshake(demo: Demo) -> None:
    cookie = await demo.http.login_cookie("alice")
    extra = [(b"cookie", f"triohub_demo={cookie}".encode())]
    async with open_websocket_url(f"{demo.ws_url}{HUB}", extra_headers=extra) as ws:
        await trio.testing.wait_all_tasks_blocked()  # the server awaits the handshake
        assert demo.app.server.live_connections == 1
        await logout(demo, cookie)
        with trio.fail_after(5), pytest.raises(ConnectionClosed):
            await ws.get_message()
        await trio.testing.wait_all_tasks_blocked()
        assert demo.app.server.live_connections == 0


async def test_a_bearer_tokens_connection_survives_a_cookie_sign_out(demo: Demo) -> None:
    cookie = await demo.http.login_cookie("alice")
    token = await demo.http.token("alice")
    async with open_websocket_url(f"{demo.ws_url}{HUB}?access_token={token}") as ws:
        hub = HubSocket(ws)
        await hub.handshake()
        await logout(demo, cookie)
        assert (await hub.invoke("WhoAmI"))["result"]["name"] == "alice"
