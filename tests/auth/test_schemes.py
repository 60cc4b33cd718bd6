"""``TrustedHeaderAuthenticator``, ``FirstOf`` / ``authenticate_request``, user-id
providers, and what a ``RequestInfo`` shows of itself."""

from __future__ import annotations

import logging

import pytest

from triohub.auth.authenticator import (
    AmbiguousCredentials,
    AuthenticationFailed,
    AuthenticationRefused,
    FirstOf,
    authenticate_request,
)
from triohub.auth.cookie import CookieAuthenticator
from triohub.auth.jwt_bearer import JwtBearerAuthenticator, JwtBearerOptions
from triohub.auth.principal import ANONYMOUS, Principal
from triohub.auth.proxy import TrustedHeaderAuthenticator
from triohub.auth.request import RequestInfo
from triohub.auth.user_id import (
    claim_user_id,
    default_user_id,
    email_user_id,
    name_user_id,
    resolve_user_id,
)

from .support import AUDIENCE, ISSUER, SECRET, bad_tokens, bearer, claims, request_info, sign

# -- trusted proxy header ---------------------------------------------------------------


def proxy_scheme() -> TrustedHeaderAuthenticator:
    return TrustedHeaderAuthenticator(
        "X-Authenticated-User", ["10.0.0.0/8", "::1"], roles_header="X-Authenticated-Roles"
    )


async def test_trusted_proxy_address() -> None:
    request = request_info(
        headers={"X-Authenticated-User": " carol ", "X-Authenticated-Roles": "Ops, Admins,,"},
        client=("10.1.2.3", 40000),
    )
    principal = await proxy_scheme().authenticate(request)
    assert principal is not None
    assert principal.scheme == "TrustedHeader"
    assert principal.name_identifier == "carol"
    assert principal.roles == {"Ops", "Admins"}
    ipv6 = request_info(headers={"X-Authenticated-User": "dave"}, client=("::1", 40000))
    assert await proxy_scheme().authenticate(ipv6) is not None


@pytest.mark.parametrize(
    "client", [("192.168.1.5", 40000), ("11.0.0.1", 1), ("not-an-ip", 1), None]
)
async def test_untrusted_address_is_refused(client: tuple[str, int] | None) -> None:
    request = request_info(headers={"X-Authenticated-User": "alice"}, client=client)
    with pytest.raises(AuthenticationRefused):
        await proxy_scheme().authenticate(request)


async def test_no_header_is_none_from_anywhere() -> None:
    assert await proxy_scheme().authenticate(request_info(client=("192.168.1.5", 1))) is None
    assert await proxy_scheme().authenticate(request_info(client=("10.0.0.1", 1))) is None


def test_proxy_scheme_needs_a_trusted_address() -> None:
    with pytest.raises(ValueError, match="trusted proxy"):
        TrustedHeaderAuthenticator("X-User", [])


# -- FirstOf ----------------------------------------------------------------------------


def bearer_scheme() -> JwtBearerAuthenticator:
    return JwtBearerAuthenticator(
        JwtBearerOptions(algorithms=("HS256",), key=SECRET, issuer=ISSUER, audience=AUDIENCE)
    )


COOKIES = CookieAuthenticator(SECRET, cookie_name="session")


def session_cookie(sub: str = "carol") -> str:
    value = COOKIES.issue({"sub": sub, "email": f"{sub}@contoso.example"})
    return value.split(";", 1)[0]


async def test_first_of_invalid_bearer_then_valid_cookie_is_the_cookie_principal() -> None:
    expired, _ = bad_tokens()["expired"]
    request = request_info(headers={**bearer(expired), "Cookie": session_cookie()})
    principal = await FirstOf(bearer_scheme(), COOKIES).authenticate(request)
    assert principal is not None
    assert principal.scheme == "Cookies"
    assert principal.name_identifier == "carol"
    outcome = await authenticate_request(FirstOf(bearer_scheme(), COOKIES), request)
    assert outcome.principal == principal
    assert outcome.failure is None


async def test_first_of_both_missing_is_none() -> None:
    assert await FirstOf(bearer_scheme(), COOKIES).authenticate(request_info()) is None
    outcome = await authenticate_request(FirstOf(bearer_scheme(), COOKIES), request_info())
    assert outcome.principal is ANONYMOUS
    assert outcome.failure is None
    assert outcome.refused is None
    assert outcome.challenges == ("Bearer",)


async def test_first_of_the_first_valid_scheme_wins() -> None:
    request = request_info(headers={**bearer(sign(claims("alice"))), "Cookie": session_cookie()})
    principal = await FirstOf(bearer_scheme(), COOKIES).authenticate(request)
    assert principal is not None
    assert principal.name_identifier == "alice"


async def test_first_of_invalid_bearer_and_no_cookie_raises_the_bearer_failure() -> None:
    expired, description = bad_tokens()["expired"]
    with pytest.raises(AuthenticationFailed) as raised:
        await FirstOf(bearer_scheme(), COOKIES).authenticate(request_info(headers=bearer(expired)))
    assert raised.value.description == description


async def test_first_of_ambiguous_bearer_is_not_rescued_by_a_valid_cookie() -> None:
    """Two Authorization headers: the request is not authenticated at all, even though a
    later scheme (the cookie) would accept it."""
    request = RequestInfo(
        "POST",
        "/hubs/chat/negotiate",
        headers={
            "authorization": (f"Bearer {sign(claims('alice'))}", f"Bearer {sign(claims('bob'))}"),
            "cookie": (session_cookie(),),
        },
        hub_path="/hubs/chat",
    )
    with pytest.raises(AmbiguousCredentials):
        await FirstOf(bearer_scheme(), COOKIES).authenticate(request)
    outcome = await authenticate_request(FirstOf(bearer_scheme(), COOKIES), request)
    assert outcome.principal is ANONYMOUS
    assert isinstance(outcome.failure, AmbiguousCredentials)
    assert outcome.failure_challenge == "Bearer"


async def test_first_of_refusal_stops_everything() -> None:
    # A valid bearer token after a refusing scheme does not rescue the request.
    request = request_info(
        headers={"X-Authenticated-User": "alice", **bearer(sign(claims()))},
        client=("192.168.1.5", 1),
    )
    with pytest.raises(AuthenticationRefused):
        await FirstOf(proxy_scheme(), bearer_scheme()).authenticate(request)
    outcome = await authenticate_request(FirstOf(proxy_scheme(), bearer_scheme()), request)
    assert outcome.refused is not None
    assert not outcome.principal.is_authenticated


async def test_first_of_nests() -> None:
    request = request_info(headers={"Cookie": session_cookie()})
    nested = FirstOf(FirstOf(bearer_scheme()), FirstOf(COOKIES))
    principal = await nested.authenticate(request)
    assert principal is not None
    assert principal.scheme == "Cookies"


def test_first_of_needs_a_scheme() -> None:
    with pytest.raises(ValueError, match="at least one"):
        FirstOf()


class Exploding:
    challenge = None

    async def authenticate(self, request: RequestInfo) -> Principal | None:
        raise RuntimeError("bug in a custom scheme")


async def test_a_scheme_bug_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="triohub.auth")
    outcome = await authenticate_request(FirstOf(Exploding()), request_info())
    assert not outcome.principal.is_authenticated
    assert outcome.failure is not None
    assert outcome.failure.description == "authentication error"
    assert "Exploding" in caplog.text
    # ... and does not stop a later scheme from recognising the caller.
    request = request_info(headers={"Cookie": session_cookie()})
    outcome = await authenticate_request(FirstOf(Exploding(), COOKIES), request)
    assert outcome.principal.name_identifier == "carol"


async def test_no_authenticator_is_anonymous() -> None:
    outcome = await authenticate_request(None, request_info(headers=bearer(sign(claims()))))
    assert outcome.principal is ANONYMOUS


# -- user-id providers ------------------------------------------------------------------

PRINCIPAL = Principal(
    {"sub": "u-42", "name": "Alice", "email": "alice@contoso.example", "tenant": 7},
    scheme="Bearer",
)


async def test_default_user_id_is_sub() -> None:
    assert await resolve_user_id(default_user_id, PRINCIPAL) == "u-42"


async def test_email_and_name_user_ids() -> None:
    assert await resolve_user_id(email_user_id, PRINCIPAL) == "alice@contoso.example"
    assert await resolve_user_id(name_user_id, PRINCIPAL) == "Alice"


async def test_missing_or_non_string_claims_are_no_user_id() -> None:
    assert await resolve_user_id(default_user_id, ANONYMOUS) is None
    assert await resolve_user_id(claim_user_id("tenant"), PRINCIPAL) is None
    assert await resolve_user_id(claim_user_id("nope"), PRINCIPAL) is None
    empty = Principal({"sub": ""}, scheme="Bearer")
    assert await resolve_user_id(default_user_id, empty) is None


async def test_async_custom_provider() -> None:
    async def tenant_user(principal: Principal) -> str | None:
        return f"{principal.claim('tenant')}/{principal.name_identifier}"

    assert await resolve_user_id(tenant_user, PRINCIPAL) == "7/u-42"


@pytest.mark.parametrize("value", [42, b"u-42", ["u-42"]])
async def test_provider_returning_a_non_string_raises_type_error(value: object) -> None:
    def bad(principal: Principal) -> object:
        return value

    async def bad_async(principal: Principal) -> object:
        return value

    for provider in (bad, bad_async):
        with pytest.raises(TypeError, match="must return a string or None"):
            await resolve_user_id(provider, PRINCIPAL)  # type: ignore[arg-type]


# -- RequestInfo never shows credentials ------------------------------------------------


def test_request_info_repr_and_redacted_hide_credentials() -> None:
    token = sign(claims())
    request = request_info(
        headers={**bearer(token), "Cookie": "session=secret-cookie-value"},
        query={"id": "abc", "ACCESS_TOKEN": token},
    )
    shown = repr(request) + str(request) + repr(request.redacted())
    assert token not in shown
    assert "secret-cookie-value" not in shown
    assert request.redacted()["query"] == ["id"]
