"""The sign-in and sign-out forms against cross-site posts (login CSRF), ``Secure``
cookies over TLS, and what a trusted reverse proxy may say (``TrustedProxies``)."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from triohub.auth.authenticator import AuthenticationRefused
from triohub.auth.cookie import CookieAuthenticator
from triohub.auth.origin import check_form_origin, normalize_origin
from triohub.auth.proxy import TrustedProxies
from triohub.auth.request import RequestInfo

from .conftest import Demo, serve_demo
from .support import HUB, SECRET, HubSocket, request_info

HOST = "chat.example:8000"


def post(scheme: str = "http", **headers: str) -> RequestInfo:
    return request_info(
        path="/account/login",
        hub_path=None,
        scheme=scheme,
        headers={"Host": HOST, **{k.replace("_", "-"): v for k, v in headers.items()}},
    )


# -- check_form_origin ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://chat.example:8000"},
        {"Origin": "HTTP://Chat.Example:8000"},
        {"Referer": "http://chat.example:8000/some/page?x=1"},
        {},  # not a browser: browsers send Origin on every POST
    ],
)
def test_this_sites_form_posts_are_allowed(headers: dict[str, str]) -> None:
    assert check_form_origin(post(**headers)) is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Origin": "https://evil.example"}, "the Origin is another site"),
        ({"Origin": "http://chat.example:9999"}, "the Origin is another site"),
        ({"Origin": "https://chat.example:8000"}, "the Origin is another site"),
        (
            {"Origin": "http://chat.example:8000.evil.example"},
            "the Origin is not an http(s) origin",
        ),
        ({"Origin": "null"}, "the Origin is not an http(s) origin"),
        ({"Referer": "https://evil.example/attack.html"}, "the Referer is another site"),
        # Origin decides when both are sent.
        (
            {"Origin": "https://evil.example", "Referer": "http://chat.example:8000/"},
            "the Origin is another site",
        ),
    ],
)
def test_cross_site_form_posts_are_refused(headers: dict[str, str], reason: str) -> None:
    assert check_form_origin(post(**headers)) == reason


def test_two_origin_headers_are_refused() -> None:
    request = RequestInfo(
        "POST",
        "/account/login",
        headers={"host": (HOST,), "origin": ("http://chat.example:8000", "https://evil.example")},
    )
    assert check_form_origin(request) == "more than one Origin or Referer header"


def test_the_browsers_scheme_and_allowed_origins() -> None:
    # Behind a TLS-terminating proxy the request is http, the page https.
    request = post(Origin="https://chat.example:8000")
    assert check_form_origin(request) is not None
    assert check_form_origin(request, scheme="https") is None
    other = post(Origin="https://app.example")
    assert check_form_origin(other, allowed_origins=["https://app.example/"]) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://Chat.Example:443/", "https://chat.example"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("http://user:pw@chat.example", None),
        ("ftp://chat.example", None),
        ("chat.example", None),
    ],
)
def test_normalize_origin(value: str, expected: str | None) -> None:
    assert normalize_origin(value) == expected


# -- TrustedProxies ---------------------------------------------------------------------


def via(peer: str, scheme: str = "http", **headers: str) -> RequestInfo:
    return request_info(
        client=(peer, 5000),
        scheme=scheme,
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )


def test_forwarded_headers_count_only_from_a_trusted_proxy() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.scheme(via("10.1.1.1", X_Forwarded_Proto="https")) == "https"
    assert proxies.scheme(via("203.0.113.5", X_Forwarded_Proto="https")) == "http"
    assert TrustedProxies().scheme(via("10.1.1.1", X_Forwarded_Proto="https")) == "http"
    assert proxies.scheme(via("10.1.1.1", X_Forwarded_Proto="https, http")) == "http"
    assert proxies.scheme(via("10.1.1.1", X_Forwarded_Proto="gopher")) == "http"
    assert proxies.scheme(via("203.0.113.5", scheme="wss")) == "https"


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("10.1.1.1", "198.51.100.7", "198.51.100.7"),
        # The client wrote the left-most entries itself: only the right-most untrusted hop
        # counts.
        ("10.1.1.1", "1.2.3.4, 198.51.100.7", "198.51.100.7"),
        ("10.1.1.1", "198.51.100.7, 10.2.2.2", "198.51.100.7"),
        ("10.1.1.1", "1.2.3.4, not-an-ip", "10.1.1.1"),
        ("10.1.1.1", "", "10.1.1.1"),
        # From an untrusted peer the header is the client's word: ignored.
        ("203.0.113.5", "198.51.100.7", "203.0.113.5"),
    ],
)
def test_client_address(peer: str, forwarded_for: str, client: str) -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    headers = {"X_Forwarded_For": forwarded_for} if forwarded_for else {}
    assert proxies.client_address(via(peer, **headers)) == client


async def test_cookie_origin_check_behind_a_tls_proxy() -> None:
    """The page is https (the proxy terminated TLS), the request to us is http."""
    cookies = CookieAuthenticator(SECRET, proxies=TrustedProxies(["10.0.0.1"]))
    value = cookies.issue({"sub": "alice"}).split(";", 1)[0].split("=", 1)[1]

    def upgrade(peer: str) -> RequestInfo:
        return request_info(
            method="GET",
            path=HUB,
            client=(peer, 5000),
            headers={
                "Cookie": f"triohub_session={value}",
                "Host": "chat.example",
                "Origin": "https://chat.example",
                "X-Forwarded-Proto": "https",
            },
        )

    assert await cookies.authenticate(upgrade("10.0.0.1")) is not None
    with pytest.raises(AuthenticationRefused, match="foreign origin"):
        await cookies.authenticate(upgrade("203.0.113.5"))


# -- on the wire: the demo --------------------------------------------------------------


async def login(demo: Demo, username: str = "bob", **headers: str) -> tuple[int, str | None]:
    response = await demo.http.post(
        "/account/login",
        data={"username": username, "password": f"{username}-password"},
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )
    return response.status_code, response.headers.get("set-cookie")


async def test_a_cross_site_form_cannot_sign_a_visitor_in(demo: Demo) -> None:
    """The finding: a form on another site posting the attacker's credentials signed the
    victim's browser in as the attacker."""
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/attack.html"},
    ):
        status, cookie = await login(demo, "mallory", **headers)
        assert (status, cookie) == (403, None)
    # This site's own form works, as does a client that sends neither header.
    status, cookie = await login(demo, Origin=demo.base_url)
    assert status == 303
    assert cookie is not None
    status, _ = await login(demo, Referer=f"{demo.base_url}/")
    assert status == 303
    status, _ = await login(demo)
    assert status == 303


async def test_a_cross_site_form_cannot_sign_a_visitor_out(demo: Demo) -> None:
    cookie = await demo.http.login_cookie("alice")
    jar = {"Cookie": f"triohub_demo={cookie}"}
    refused = await demo.http.post(
        "/account/logout", headers={**jar, "Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
    assert "set-cookie" not in refused.headers
    negotiate = HUB + "/negotiate?negotiateVersion=1"
    assert (await demo.http.post(negotiate, headers=jar)).status_code == 200
    done = await demo.http.post("/account/logout", headers={**jar, "Origin": demo.base_url})
    assert done.status_code == 303
    assert (await demo.http.post(negotiate, headers=jar)).status_code == 401


async def test_cross_site_posts_are_logged_without_credentials(
    demo: Demo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="demo")
    await login(demo, "mallory", Referer="https://evil.example/a?token=SECRET-IN-REFERER")
    assert "POST /account/login refused: the Referer is another site" in caplog.text
    assert "SECRET-IN-REFERER" not in caplog.text
    assert "mallory-password" not in caplog.text


async def test_cookies_are_secure_only_over_tls(nursery: trio.Nursery) -> None:
    async with serve_demo(nursery, proxies=["127.0.0.1"]) as demo:
        _, plain = await login(demo)
        assert plain is not None
        assert "Secure" not in plain.split("; ")
        status, secure = await login(
            demo, X_Forwarded_Proto="https", Origin=f"https://{demo.host}:{demo.port}"
        )
        assert status == 303
        assert secure is not None
        assert secure.endswith("; Secure")
        cleared = await demo.http.post("/account/logout", headers={"X-Forwarded-Proto": "https"})
        assert cleared.headers["set-cookie"].endswith("; Secure")
        # Through the TLS proxy the page is https: the cookie's WebSocket works from it.
        value = secure.split(";", 1)[0].split("=", 1)[1]
        async with open_websocket_url(
            f"{demo.ws_url}{HUB}",
            extra_headers=[
                (b"cookie", f"triohub_demo={value}".encode()),
                (b"origin", f"https://{demo.host}:{demo.port}".encode()),
                (b"x-forwarded-proto", b"https"),
            ],
        ) as ws:
            hub = HubSocket(ws)
            await hub.handshake()
            assert (await hub.invoke("WhoAmI"))["result"]["name"] == "bob"


async def test_an_untrusted_client_cannot_claim_tls(demo: Demo) -> None:
    # No trusted proxies: X-Forwarded-Proto from the client is ignored, so an https
    # Origin is another site and the cookie is not marked Secure.
    status, _ = await login(
        demo, X_Forwarded_Proto="https", Origin=f"https://{demo.host}:{demo.port}"
    )
    assert status == 403
    _, cookie = await login(demo, X_Forwarded_Proto="https")
    assert cookie is not None
    assert "Secure" not in cookie.split("; ")
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(
            f"{demo.ws_url}{HUB}",
            extra_headers=[
                (b"cookie", f"triohub_demo={cookie.split(';')[0].split('=', 1)[1]}".encode()),
                (b"origin", f"https://{demo.host}:{demo.port}".encode()),
                (b"x-forwarded-proto", b"https"),
            ],
        ):
            pass
    assert rejected.value.status_code == 403
