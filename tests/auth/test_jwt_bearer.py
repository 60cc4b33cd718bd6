"""``JwtBearerAuthenticator``: where the token is read, the bad-credential matrix, leeway,
RS256 / ES256, and the options that must be refused at configuration time."""

from __future__ import annotations

import time

import pytest

from triohub.auth.authenticator import AmbiguousCredentials, AuthenticationFailed
from triohub.auth.jwt_bearer import JwtBearerAuthenticator, JwtBearerOptions
from triohub.auth.request import RequestInfo

from .support import (
    AUDIENCE,
    HUB,
    ISSUER,
    SECRET,
    bad_tokens,
    bearer,
    claims,
    ec_keys,
    hmac_token,
    request_info,
    rsa_keys,
    sign,
)


def hs256(**overrides: object) -> JwtBearerAuthenticator:
    """The demo's scheme: HS256, issuer, audience, zero leeway."""
    options: dict[str, object] = {
        "algorithms": ("HS256",),
        "key": SECRET,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "leeway": 0,
        **overrides,
    }
    return JwtBearerAuthenticator(JwtBearerOptions(**options))  # type: ignore[arg-type]


def rs256() -> JwtBearerAuthenticator:
    return JwtBearerAuthenticator(
        JwtBearerOptions(
            algorithms=("RS256",),
            key=rsa_keys().public_pem,
            issuer=ISSUER,
            audience=AUDIENCE,
        )
    )


# -- where the token comes from ---------------------------------------------------------


async def test_header_token() -> None:
    principal = await hs256().authenticate(request_info(headers=bearer(sign(claims()))))
    assert principal is not None
    assert principal.is_authenticated
    assert principal.scheme == "Bearer"
    assert principal.name_identifier == "alice"
    assert principal.email == "alice@contoso.example"
    assert principal.roles == {"Administrators"}


async def test_expiry_of_the_principal_is_the_tokens_exp() -> None:
    payload = claims(lifetime=90)
    principal = await hs256().authenticate(request_info(headers=bearer(sign(payload))))
    assert principal is not None
    assert principal.expires_at == payload["exp"]


async def test_bearer_scheme_name_is_case_insensitive() -> None:
    request = request_info(headers={"Authorization": f"bearer {sign(claims())}"})
    principal = await hs256().authenticate(request)
    assert principal is not None
    assert principal.name_identifier == "alice"


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cHc=", "Bearer", "Bearer   ", "Token abc"])
async def test_other_authorization_headers_are_not_bearer_tokens(header: str) -> None:
    assert await hs256().authenticate(request_info(headers={"Authorization": header})) is None


async def test_no_credential_is_none() -> None:
    assert await hs256().authenticate(request_info()) is None


async def test_query_token_on_a_hub_path() -> None:
    for path in (HUB, HUB + "/negotiate"):
        request = request_info(path=path, method="GET", query={"access_token": sign(claims())})
        principal = await hs256().authenticate(request)
        assert principal is not None, path
        assert principal.name_identifier == "alice"


async def test_query_token_on_a_non_hub_path_is_ignored() -> None:
    request = request_info(
        path="/api/anything", method="GET", hub_path=None, query={"access_token": sign(claims())}
    )
    assert await hs256().authenticate(request) is None


async def test_bad_query_token_on_a_non_hub_path_is_ignored_too() -> None:
    # Ignored means not even validated: no failure, no principal.
    request = request_info(path="/", method="GET", hub_path=None, query={"access_token": "junk"})
    assert await hs256().authenticate(request) is None


async def test_query_token_disabled_by_option() -> None:
    request = request_info(method="GET", path=HUB, query={"access_token": sign(claims())})
    assert await hs256(query_parameter=None).authenticate(request) is None


async def test_header_wins_over_query() -> None:
    request = request_info(
        headers=bearer(sign(claims("bob"))), query={"access_token": sign(claims("alice"))}
    )
    principal = await hs256().authenticate(request)
    assert principal is not None
    assert principal.name_identifier == "bob"


def raw_request(
    headers: dict[str, tuple[str, ...]], query: dict[str, tuple[str, ...]] | None = None
) -> RequestInfo:
    """Headers and query as multi-maps: the same name more than once."""
    return RequestInfo("GET", HUB, query=query or {}, headers=headers, hub_path=HUB)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(("alice", "bob"), id="two-users"),
        pytest.param(("alice", "alice"), id="the-same-token-twice"),
        pytest.param(("alice", "Basic YWxpY2U6cHc="), id="bearer-and-basic"),
        pytest.param(("Basic YWxpY2U6cHc=", "alice"), id="basic-then-bearer"),
        pytest.param(("expired", "alice"), id="bad-then-good"),
    ],
)
async def test_two_authorization_headers_are_ambiguous(values: tuple[str, str]) -> None:
    """Which copy counts depends on who reads the request (a proxy, a log, this server);
    none does: the request is not authenticated, and the challenge says why."""
    tokens = {
        "alice": f"Bearer {sign(claims('alice'))}",
        "bob": f"Bearer {sign(claims('bob'))}",
        "expired": f"Bearer {MATRIX['expired'][0]}",
    }
    headers = {"authorization": tuple(tokens.get(v, v) for v in values)}
    with pytest.raises(AmbiguousCredentials) as raised:
        await hs256().authenticate(raw_request(headers))
    assert raised.value.error == "invalid_request"
    assert raised.value.description == "The request has more than one Authorization header."
    assert all(token not in str(raised.value) for token in headers["authorization"])


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"access_token": ("A", "B")}, id="twice"),
        pytest.param({"access_token": ("A",), "ACCESS_TOKEN": ("B",)}, id="two-spellings"),
        pytest.param({"access_token": ("A", "")}, id="second-empty"),
    ],
)
async def test_two_access_token_parameters_are_ambiguous(
    query: dict[str, tuple[str, ...]],
) -> None:
    token = sign(claims("alice"))
    query = {
        key: tuple(token if v == "A" else sign(claims("bob")) if v == "B" else v for v in values)
        for key, values in query.items()
    }
    with pytest.raises(AmbiguousCredentials) as raised:
        await hs256().authenticate(raw_request({}, query))
    assert raised.value.description == "The request has more than one 'access_token' parameter."


async def test_one_header_and_one_query_token_is_not_ambiguous() -> None:
    # The header wins, as in ASP.NET (test_header_wins_over_query); one of each is
    # what a client that sets both sends, not a duplicated credential.
    request = raw_request(
        {"authorization": (f"Bearer {sign(claims('bob'))}",)},
        {"access_token": (sign(claims("alice")),)},
    )
    principal = await hs256().authenticate(request)
    assert principal is not None
    assert principal.name_identifier == "bob"


# -- the bad-credential matrix ----------------------------------------------------------

MATRIX = bad_tokens()


@pytest.mark.parametrize("case", list(MATRIX))
async def test_bad_token_in_header(case: str) -> None:
    token, description = MATRIX[case]
    with pytest.raises(AuthenticationFailed) as raised:
        await hs256().authenticate(request_info(headers=bearer(token)))
    assert raised.value.description == description
    assert raised.value.error == "invalid_token"
    assert token not in str(raised.value)


@pytest.mark.parametrize("case", ["expired", "alg-none", "wrong-signature", "garbage"])
async def test_bad_token_in_query(case: str) -> None:
    token, description = MATRIX[case]
    request = request_info(method="GET", path=HUB, query={"access_token": token})
    with pytest.raises(AuthenticationFailed) as raised:
        await hs256().authenticate(request)
    assert raised.value.description == description


async def test_alg_none_refused_even_if_the_scheme_lists_every_real_algorithm() -> None:
    token, _ = MATRIX["alg-none"]
    with pytest.raises(AuthenticationFailed, match="algorithm is not allowed"):
        await hs256(algorithms=("HS256", "HS384", "HS512")).validate(token)


async def test_key_confusion_hs256_signed_with_the_rsa_public_key() -> None:
    """The classic attack: the server's RSA public key is public, so an attacker signs an
    HS256 token with the PEM bytes as the HMAC secret. An RS256 scheme must refuse it."""
    forged = hmac_token(claims("mallory"), rsa_keys().public_pem)
    with pytest.raises(AuthenticationFailed) as raised:
        await rs256().authenticate(request_info(headers=bearer(forged)))
    assert raised.value.description == "The token's signing algorithm is not allowed."


async def test_rs256_signed_by_another_key() -> None:
    token = sign(claims(), rsa_keys("attacker").private, "RS256")
    with pytest.raises(AuthenticationFailed) as raised:
        await rs256().validate(token)
    assert raised.value.description == "The token's signature is invalid."


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_a_numeric_date_may_be_a_fraction(claim: str) -> None:
    t = time.time()
    document = claims(now=t)
    document[claim] = {"exp": t + 60.5, "nbf": t - 0.5, "iat": t - 0.5}[claim]
    principal = await hs256().authenticate(request_info(headers=bearer(sign(document))))
    assert principal is not None
    assert principal.expires_at == float(document["exp"])


async def test_a_string_exp_never_becomes_a_connection_without_expiry() -> None:
    """The finding: ``"exp": "<digits>"`` passed pyjwt's validation, and the principal got
    no ``expires_at``, so close-on-expiration never fired. Refused."""
    document = {**claims(), "exp": str(int(time.time()) + 3600)}
    with pytest.raises(AuthenticationFailed) as raised:
        await hs256().authenticate(request_info(headers=bearer(sign(document))))
    assert raised.value.description == "The token's 'exp' claim is not a NumericDate."
    # A string of a past time is refused too (pyjwt reads it as a number first).
    document = {**claims(), "exp": str(int(time.time()) - 3600)}
    with pytest.raises(AuthenticationFailed, match="expired"):
        await hs256().authenticate(request_info(headers=bearer(sign(document))))


async def test_a_bad_numeric_date_is_reported_after_the_signature() -> None:
    # A forger learns nothing about claim checks: the signature is checked first.
    forged = sign({**claims(), "exp": "soon"}, "another-secret-of-the-right-length-0123456789")
    with pytest.raises(AuthenticationFailed) as raised:
        await hs256().validate(forged)
    assert raised.value.description == "The token's signature is invalid."


async def test_iat_in_the_future() -> None:
    token = sign({**claims(), "iat": int(time.time()) + 600})
    with pytest.raises(AuthenticationFailed) as raised:
        await hs256().validate(token)
    assert raised.value.description == "The token is not valid yet."


async def test_no_issuer_or_audience_claim_when_required() -> None:
    for omitted, description in (
        ("iss", "The token has no 'iss' claim."),
        ("aud", "The token has no 'aud' claim."),
    ):
        token = sign(claims(omit=(omitted,)))
        with pytest.raises(AuthenticationFailed) as raised:
            await hs256().validate(token)
        assert raised.value.description == description, omitted


async def test_exp_not_required_when_configured() -> None:
    token = sign(claims(omit=("exp",)))
    principal = await hs256(require=()).authenticate(request_info(headers=bearer(token)))
    assert principal is not None
    assert principal.expires_at is None


# -- leeway -----------------------------------------------------------------------------


async def test_leeway_accepts_a_recently_expired_token() -> None:
    token = sign(claims(now=time.time() - 70, lifetime=60))  # expired ~10 s ago
    with pytest.raises(AuthenticationFailed, match="expired"):
        await hs256().validate(token)
    assert (await hs256(leeway=60).validate(token))["sub"] == "alice"
    with pytest.raises(AuthenticationFailed, match="expired"):
        await hs256(leeway=5).validate(token)


async def test_leeway_accepts_a_slightly_early_nbf() -> None:
    now = int(time.time())
    token = sign({**claims(now=now), "nbf": now + 10})
    with pytest.raises(AuthenticationFailed, match="not valid yet"):
        await hs256().validate(token)
    assert (await hs256(leeway=60).validate(token))["sub"] == "alice"


# -- asymmetric algorithms --------------------------------------------------------------


async def test_rs256() -> None:
    token = sign(claims(), rsa_keys().private, "RS256")
    principal = await rs256().authenticate(request_info(headers=bearer(token)))
    assert principal is not None
    assert principal.name_identifier == "alice"


async def test_es256_with_a_key_object() -> None:
    scheme = JwtBearerAuthenticator(
        JwtBearerOptions(
            algorithms=("ES256",), key=ec_keys().public, audience=AUDIENCE, allow_any_issuer=True
        )
    )
    token = sign(claims(), ec_keys().private, "ES256")
    principal = await scheme.authenticate(request_info(headers=bearer(token)))
    assert principal is not None
    assert principal.name_identifier == "alice"
    with pytest.raises(AuthenticationFailed, match="signature is invalid"):
        await scheme.validate(sign(claims(), ec_keys("other").private, "ES256"))
    with pytest.raises(AuthenticationFailed, match="algorithm is not allowed"):
        await scheme.validate(sign(claims(), rsa_keys().private, "RS256"))


# -- options ----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithms", [("none",), ("NONE",), ("HS256", "none")])
def test_options_refuse_none(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="none"):
        JwtBearerOptions(algorithms=algorithms, key=SECRET)


def test_options_refuse_no_algorithm_and_unknown_ones() -> None:
    with pytest.raises(ValueError, match="at least one"):
        JwtBearerOptions(algorithms=(), key=SECRET)
    with pytest.raises(ValueError, match="unknown JWT algorithm"):
        JwtBearerOptions(algorithms=("HS1",), key=SECRET)


@pytest.mark.parametrize(
    "key", [SECRET, rsa_keys().public_pem], ids=["shared-secret", "public-pem"]
)
def test_options_refuse_hs_mixed_with_rs(key: object) -> None:
    with pytest.raises(ValueError, match="do not mix"):
        JwtBearerOptions(algorithms=("HS256", "RS256"), key=key)


@pytest.mark.parametrize(
    "key",
    [rsa_keys().public_pem, rsa_keys().public_pem.decode(), rsa_keys().public, ec_keys().public],
    ids=["pem-bytes", "pem-str", "rsa-key-object", "ec-key-object"],
)
def test_options_refuse_an_asymmetric_key_with_hs(key: object) -> None:
    with pytest.raises(ValueError, match="asymmetric key cannot verify HS"):
        JwtBearerOptions(algorithms=("HS256",), key=key)


def test_options_need_an_issuer_and_an_audience_or_an_explicit_waiver() -> None:
    with pytest.raises(ValueError, match="needs issuer="):
        JwtBearerOptions(algorithms=("HS256",), key=SECRET, audience=AUDIENCE)
    with pytest.raises(ValueError, match="needs audience="):
        JwtBearerOptions(algorithms=("HS256",), key=SECRET, issuer=ISSUER)
    waived = JwtBearerOptions(
        algorithms=("HS256",), key=SECRET, allow_any_issuer=True, allow_any_audience=True
    )
    assert waived.issuer is None
    assert waived.audience is None


def test_options_refuse_a_shared_secret_with_rs() -> None:
    with pytest.raises(ValueError, match="shared secret only works with HS"):
        JwtBearerOptions(algorithms=("RS256",), key=SECRET)


def test_options_need_exactly_one_key_source() -> None:
    with pytest.raises(ValueError, match="exactly one of key= and jwks="):
        JwtBearerOptions(algorithms=("HS256",))
