"""``CookieAuthenticator``: issue and read back, tampering, expiry, and the origin check
against cross-site WebSocket hijacking."""

from __future__ import annotations

import time

import itsdangerous
import pytest

from triohub.auth.authenticator import AuthenticationFailed, AuthenticationRefused
from triohub.auth.cookie import CookieAuthenticator
from triohub.auth.request import RequestInfo

from .support import SECRET, request_info

NAME = "triohub_session"
CLAIMS = {"sub": "alice", "name": "alice", "email": "alice@contoso.example", "role": ["Admins"]}


def cookie_value(set_cookie: str) -> str:
    pair = set_cookie.split(";", 1)[0]
    name, _, value = pair.partition("=")
    assert name == NAME
    return value


def with_cookie(value: str, **headers: str) -> object:
    return request_info(
        method="GET", path="/hubs/chat", headers={"Cookie": f"{NAME}={value}", **headers}
    )


def test_issue_sets_the_safe_attributes() -> None:
    attributes = CookieAuthenticator(SECRET, max_age=600).issue(CLAIMS).split("; ")[1:]
    assert set(attributes) == {"Path=/", "Max-Age=600", "HttpOnly", "SameSite=Lax"}
    secure = CookieAuthenticator(SECRET, secure=True).issue(CLAIMS)
    assert secure.endswith("; Secure")


def test_clear_ends_the_session() -> None:
    assert CookieAuthenticator(SECRET).clear() == (
        f"{NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
    )


async def test_round_trip() -> None:
    cookies = CookieAuthenticator(SECRET, max_age=600)
    before = time.time()
    value = cookie_value(cookies.issue(CLAIMS))
    principal = await cookies.authenticate(with_cookie(value))
    assert principal is not None
    assert principal.scheme == "Cookies"
    assert principal.name_identifier == "alice"
    assert principal.roles == {"Admins"}
    assert principal.expires_at is not None
    assert int(before) + 600 <= principal.expires_at <= time.time() + 600


async def test_round_trip_among_other_cookies() -> None:
    cookies = CookieAuthenticator(SECRET)
    value = cookie_value(cookies.issue(CLAIMS))
    request = request_info(headers={"Cookie": f"theme=dark; {NAME}={value}; lang=en"})
    principal = await cookies.authenticate(request)
    assert principal is not None
    assert principal.name_identifier == "alice"


async def test_no_cookie_is_none() -> None:
    cookies = CookieAuthenticator(SECRET)
    assert await cookies.authenticate(request_info()) is None
    assert await cookies.authenticate(request_info(headers={"Cookie": "other=1"})) is None


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"), id="signature"),
        pytest.param(lambda v: "e" + v[1:], id="payload"),
        pytest.param(lambda v: v.rsplit(".", 2)[0], id="unsigned"),
        pytest.param(lambda v: "garbage", id="garbage"),
    ],
)
async def test_tampered_cookie(tamper: object) -> None:
    cookies = CookieAuthenticator(SECRET)
    value = cookie_value(cookies.issue(CLAIMS))
    with pytest.raises(AuthenticationFailed) as raised:
        await cookies.authenticate(with_cookie(tamper(value)))  # type: ignore[operator]
    assert raised.value.description == "The session cookie is invalid."


async def test_cookie_signed_with_another_secret_or_salt() -> None:
    value = cookie_value(CookieAuthenticator("another-secret-0123456789abcdef").issue(CLAIMS))
    with pytest.raises(AuthenticationFailed, match="invalid"):
        await CookieAuthenticator(SECRET).authenticate(with_cookie(value))
    value = cookie_value(CookieAuthenticator(SECRET, salt="other").issue(CLAIMS))
    with pytest.raises(AuthenticationFailed, match="invalid"):
        await CookieAuthenticator(SECRET).authenticate(with_cookie(value))


async def test_signed_value_that_is_not_a_claims_object() -> None:
    forged = itsdangerous.URLSafeTimedSerializer(SECRET, salt="triohub.session").dumps(["alice"])
    with pytest.raises(AuthenticationFailed, match="invalid"):
        await CookieAuthenticator(SECRET).authenticate(with_cookie(forged))


async def test_expired_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """How the old timestamp is made: itsdangerous' ``TimestampSigner.get_timestamp``
    (``int(time.time())``) is what ``dumps`` stamps into the value, so it is patched to
    return a time 2 hours ago while the cookie is issued, and restored before reading."""
    cookies = CookieAuthenticator(SECRET, max_age=3600)
    with monkeypatch.context() as patch:
        patch.setattr(
            itsdangerous.TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 7200
        )
        value = cookie_value(cookies.issue(CLAIMS))
    with pytest.raises(AuthenticationFailed) as raised:
        await cookies.authenticate(with_cookie(value))
    assert raised.value.description == "The session expired."

    # Signed 10 minutes ago: still valid, and the expiry counts from the signing time.
    with monkeypatch.context() as patch:
        signed_at = int(time.time()) - 600
        patch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: signed_at)
        value = cookie_value(cookies.issue(CLAIMS))
    principal = await cookies.authenticate(with_cookie(value))
    assert principal is not None
    assert principal.expires_at == signed_at + 3600


async def test_expired_session_is_reported_before_the_origin() -> None:
    # A foreign page replaying an expired cookie gets the failure (401), not a 403.
    cookies = CookieAuthenticator(SECRET, max_age=3600)
    stamp = int(time.time()) - 7200
    signer = itsdangerous.URLSafeTimedSerializer(SECRET, salt="triohub.session")
    original = itsdangerous.TimestampSigner.get_timestamp
    itsdangerous.TimestampSigner.get_timestamp = lambda self: stamp  # type: ignore[method-assign]
    try:
        value = signer.dumps(CLAIMS)
    finally:
        itsdangerous.TimestampSigner.get_timestamp = original  # type: ignore[method-assign]
    with pytest.raises(AuthenticationFailed, match="expired"):
        await cookies.authenticate(with_cookie(value, Origin="https://evil.example"))


# -- origin -----------------------------------------------------------------------------


async def valid(cookies: CookieAuthenticator, **headers: str) -> object:
    value = cookie_value(cookies.issue(CLAIMS))
    return await cookies.authenticate(with_cookie(value, **headers))


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://127.0.0.1:9999",  # same host, another port
        "https://127.0.0.1:8000",  # same host and port, another scheme
        "http://127.0.0.1:8000.evil.example",
        "null",  # sandboxed iframes, file: pages
    ],
)
async def test_foreign_origin_is_refused(origin: str) -> None:
    with pytest.raises(AuthenticationRefused):
        await valid(CookieAuthenticator(SECRET), Host="127.0.0.1:8000", Origin=origin)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("HTTP://127.0.0.1:8000/", "127.0.0.1:8000"),
        ("http://chat.example", "chat.example:80"),
        ("http://chat.example", "chat.example"),
    ],
)
async def test_same_origin_is_allowed(origin: str, host: str) -> None:
    principal = await valid(CookieAuthenticator(SECRET), Host=host, Origin=origin)
    assert principal is not None


async def test_same_origin_websocket_scheme() -> None:
    cookies = CookieAuthenticator(SECRET)
    value = cookie_value(cookies.issue(CLAIMS))
    request = request_info(
        method="GET",
        path="/hubs/chat",
        scheme="wss",
        headers={
            "Cookie": f"{NAME}={value}",
            "Host": "chat.example",
            "Origin": "https://chat.example",
        },
    )
    assert await cookies.authenticate(request) is not None
    evil = request_info(
        method="GET",
        path="/hubs/chat",
        scheme="wss",
        headers={
            "Cookie": f"{NAME}={value}",
            "Host": "chat.example",
            "Origin": "https://x.example",
        },
    )
    with pytest.raises(AuthenticationRefused):
        await cookies.authenticate(evil)


async def test_two_origin_headers_are_refused() -> None:
    cookies = CookieAuthenticator(SECRET)
    value = cookie_value(cookies.issue(CLAIMS))
    request = RequestInfo(
        "GET",
        "/hubs/chat",
        headers={
            "cookie": (f"{NAME}={value}",),
            "host": ("127.0.0.1:8000",),
            "origin": ("http://127.0.0.1:8000", "https://evil.example"),
        },
    )
    with pytest.raises(AuthenticationRefused):
        await cookies.authenticate(request)


async def test_allowed_origin() -> None:
    cookies = CookieAuthenticator(SECRET, allowed_origins=["https://app.example/"])
    principal = await valid(cookies, Host="api.example", Origin="https://APP.example")
    assert principal is not None
    with pytest.raises(AuthenticationRefused):
        await valid(cookies, Host="api.example", Origin="https://app.example.evil")


async def test_no_origin_is_allowed() -> None:
    # Non-browser clients send no Origin; browsers always send one on WebSocket upgrades.
    assert await valid(CookieAuthenticator(SECRET), Host="127.0.0.1:8000") is not None
    assert await valid(CookieAuthenticator(SECRET)) is not None


def test_empty_secret_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        CookieAuthenticator("")
