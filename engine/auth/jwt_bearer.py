"""JWT bearer authentication on pyjwt.

The token comes from ``Authorization: Bearer <token>`` or, on hub paths only,
from the ``access_token`` query parameter (browsers cannot set headers on
WebSocket and EventSource requests). Algorithms are allow-listed; ``none`` is
never accepted, and a symmetric algorithm is never paired with an asymmetric
key (which would let a public key act as an HMAC secret). ``exp``, ``nbf``,
``iss`` and ``aud`` are checked with a configurable leeway; ``exp``, ``nbf``
and ``iat`` must be JSON numbers (pyjwt takes ``"exp": "1999999999"``, which
would leave the principal without an expiry). A request with two
``Authorization`` headers or two ``access_token`` parameters is refused
(``AmbiguousCredentials``), never read as whichever comes first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import jwt
from jwt.algorithms import get_default_algorithms

from .authenticator import AmbiguousCredentials, AuthenticationFailed
from .jwks import JwksKeySource
from .principal import Principal
from .request import RequestInfo

__all__ = ["JwtBearerAuthenticator", "JwtBearerOptions"]

log = logging.getLogger("triohub.auth")

_SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})
_ASYMMETRIC = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES256K",
        "ES384",
        "ES512",
        "EdDSA",
    }
)


def _algorithms(value: Sequence[str]) -> tuple[str, ...]:
    algorithms = tuple(value)
    if not algorithms:
        raise ValueError("JwtBearerOptions.algorithms must name at least one algorithm")
    for name in algorithms:
        if name.lower() == "none":
            raise ValueError("the 'none' algorithm is never allowed: tokens must be signed")
        if name not in _SYMMETRIC | _ASYMMETRIC:
            raise ValueError(
                f"unknown JWT algorithm {name!r}; use one of {sorted(_SYMMETRIC | _ASYMMETRIC)}"
            )
        if name not in get_default_algorithms():
            raise ValueError(f"JWT algorithm {name!r} needs the 'cryptography' package")
    if set(algorithms) & _SYMMETRIC and set(algorithms) & _ASYMMETRIC:
        raise ValueError(
            "do not mix HMAC (HS*) and public-key algorithms in one scheme: a public "
            "key could then be used as an HMAC secret; configure two schemes instead"
        )
    return algorithms


@attrs.frozen(kw_only=True)
class JwtBearerOptions:
    """How bearer tokens are validated.

    Exactly one of ``key`` (an HMAC secret, or a public key / PEM for RS*, PS*,
    ES*, EdDSA) and ``jwks`` (keys from a JWKS document) must be given.
    """

    algorithms: tuple[str, ...] = attrs.field(converter=_algorithms)
    key: Any = None
    jwks: JwksKeySource | None = None
    issuer: str | tuple[str, ...] | None = None
    audience: str | tuple[str, ...] | None = None
    leeway: float = 0.0
    """Seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``
    (ASP.NET defaults to 300; expiry-driven closing wants 0)."""
    require: tuple[str, ...] = ("exp",)
    """Claims every token must carry."""
    query_parameter: str | None = "access_token"
    """Read on hub paths when there is no Authorization header; ``None`` = never."""
    scheme_name: str = "Bearer"
    allow_any_issuer: bool = False
    """Accept tokens without checking ``iss`` (only when ``issuer`` is None)."""
    allow_any_audience: bool = False
    """Accept tokens without checking ``aud`` (only when ``audience`` is None)."""

    def __attrs_post_init__(self) -> None:
        if (self.key is None) == (self.jwks is None):
            raise ValueError("JwtBearerOptions needs exactly one of key= and jwks=")
        if self.key is not None:
            symmetric = isinstance(self.key, str | bytes) and not _looks_like_pem(self.key)
            if symmetric and not set(self.algorithms) <= _SYMMETRIC:
                raise ValueError(
                    "a shared secret only works with HS256/HS384/HS512; "
                    "give a public key for RS*/PS*/ES*/EdDSA"
                )
            if not symmetric and set(self.algorithms) & _SYMMETRIC:
                raise ValueError(
                    "an asymmetric key cannot verify HS* tokens (it would act as an HMAC "
                    "secret that anyone holding the public key knows)"
                )
            if symmetric and len(self.key) < 32:
                log.warning("the HMAC secret is shorter than 32 bytes; use a longer one")
        # Fail closed like ASP.NET's ValidateIssuer / ValidateAudience defaults:
        # a token minted for another service must not be accepted here.
        if self.issuer is None and not self.allow_any_issuer:
            raise ValueError(
                "JwtBearerOptions needs issuer= (the token issuer you trust); "
                "pass allow_any_issuer=True to accept any issuer"
            )
        if self.audience is None and not self.allow_any_audience:
            raise ValueError(
                "JwtBearerOptions needs audience= (this service's identifier); "
                "pass allow_any_audience=True to accept any audience"
            )


_NUMERIC_DATES = ("exp", "nbf", "iat")
_LATEST = 253402300799  # 9999-12-31T23:59:59Z, the end of .NET's DateTime


def _numeric_date_problem(claims: Mapping[str, Any]) -> str | None:
    """Why a time claim is not a NumericDate (RFC 7519: a JSON number), if one isn't."""
    for name in _NUMERIC_DATES:
        if name not in claims:
            continue
        value = claims[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not -_LATEST <= value <= _LATEST  # false for NaN and infinities too
        ):
            return f"The token's '{name}' claim is not a NumericDate."
    return None


def _looks_like_pem(key: str | bytes) -> bool:
    text = key.decode("latin-1") if isinstance(key, bytes) else key
    return "-----BEGIN" in text or text.startswith("ssh-")


class JwtBearerAuthenticator:
    """Validates JWTs; the principal's claims are the token's claims.

    ``sub`` is the name identifier (the default user id), ``role`` / ``roles``
    become roles, and ``exp`` is the principal's expiry.
    """

    def __init__(self, options: JwtBearerOptions) -> None:
        self.options = options

    @property
    def challenge(self) -> str:
        return self.options.scheme_name

    def token_of(self, request: RequestInfo) -> str | None:
        """The bearer token of ``request``, or ``None`` when it carries none.

        Raises:
            AmbiguousCredentials: two ``Authorization`` headers, or two
                ``access_token`` query parameters (in any letter case).
        """
        headers = request.headers.get("authorization", ())
        if len(headers) > 1:
            raise AmbiguousCredentials("The request has more than one Authorization header.")
        if headers:
            scheme, _, token = headers[0].partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
        name = self.options.query_parameter
        if name is not None and request.hub_path is not None:
            wanted = name.lower()
            values = [
                value
                for key, found in request.query.items()
                if key.lower() == wanted
                for value in found
            ]
            if len(values) > 1:
                raise AmbiguousCredentials(f"The request has more than one '{name}' parameter.")
            if values and values[0]:
                return values[0]
        return None

    async def authenticate(self, request: RequestInfo) -> Principal | None:
        token = self.token_of(request)
        if token is None:
            return None
        claims = await self.validate(token)
        expires = claims.get("exp")
        return Principal(
            claims,
            scheme=self.options.scheme_name,
            # A NumericDate by now (validate checks), or absent when not required.
            expires_at=float(expires) if expires is not None else None,
        )

    async def validate(self, token: str) -> dict[str, Any]:
        """The token's claims.

        Raises:
            AuthenticationFailed: with a description safe to log and to send.
        """
        options = self.options
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationFailed("The token is malformed.", reason="malformed") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in options.algorithms:
            raise AuthenticationFailed(
                "The token's signing algorithm is not allowed.", reason="algorithm"
            )
        if options.jwks is not None:
            kid = header.get("kid")
            key = await options.jwks.key_for(kid if isinstance(kid, str) else None, algorithm)
            if key is None:
                raise AuthenticationFailed(
                    "The token's signing key is not known.", reason="unknown_key"
                )
        else:
            key = options.key
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(options.algorithms),
                audience=options.audience,
                issuer=options.issuer,
                leeway=options.leeway,
                options={
                    "require": list(options.require),
                    "verify_aud": options.audience is not None,
                    "verify_iss": options.issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("The token expired.", reason="expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationFailed(
                "The token is not valid yet.", reason="not_yet_valid"
            ) from None
        except jwt.InvalidIssuerError:
            raise AuthenticationFailed(
                "The token's issuer is not accepted.", reason="issuer"
            ) from None
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed(
                "The token's audience is not accepted.", reason="audience"
            ) from None
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed(
                "The token's signature is invalid.", reason="invalid_signature"
            ) from None
        except jwt.MissingRequiredClaimError as error:
            raise AuthenticationFailed(
                f"The token has no '{error.claim}' claim.", reason="missing_claim"
            ) from None
        except jwt.InvalidAlgorithmError:
            raise AuthenticationFailed(
                "The token's signing algorithm is not allowed.", reason="algorithm"
            ) from None
        except (jwt.DecodeError, jwt.InvalidIssuedAtError):
            # Raised for a time claim pyjwt cannot make an int of ("abc", NaN) too,
            # after the signature was verified: say which claim when it is one.
            raise AuthenticationFailed(
                _numeric_date_problem(_unverified_claims(token)) or "The token is invalid."
            ) from None
        except jwt.PyJWTError:
            raise AuthenticationFailed("The token is invalid.") from None
        problem = _numeric_date_problem(claims)
        if problem is not None:
            raise AuthenticationFailed(problem)
        return claims


def _unverified_claims(token: str) -> Mapping[str, Any]:
    """For error messages only: the payload as sent, or ``{}``."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
