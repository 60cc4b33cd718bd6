"""Authenticators: HTTP request metadata in, principal out.

An authenticator is any object with ``async authenticate(request) -> Principal | None``
(``None``: the request carries no credential this scheme understands) and a
``challenge`` (the ``WWW-Authenticate`` value for a 401, or ``None``). A
credential that is present but bad raises ``AuthenticationFailed``; a request
whose credentials are ambiguous (two ``Authorization`` headers: which one
counts depends on who reads them) raises ``AmbiguousCredentials``, which no
other scheme may overrule; a request that must be refused whatever the hub
allows (a session cookie sent from a foreign origin) raises
``AuthenticationRefused``.

Schemes compose with ``FirstOf(bearer, cookie)``: the first that recognises the
request wins. Custom schemes (a trusted reverse-proxy header, say) plug in by
implementing the same two members; the engine needs nothing else.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

import attrs

from .principal import ANONYMOUS, Principal
from .request import RequestInfo

__all__ = [
    "AmbiguousCredentials",
    "AuthenticationFailed",
    "AuthenticationOutcome",
    "AuthenticationRefused",
    "Authenticator",
    "FirstOf",
    "authenticate_request",
]

log = logging.getLogger("triohub.auth")


class AuthenticationFailed(Exception):
    """A credential was presented but is not valid (expired, bad signature, ...).

    Attributes:
        error: the RFC 6750 error code for the challenge (``invalid_token``).
        description: a short, credential-free description for the challenge
            and the logs.
        reason: one fixed word for metrics (``expired``, ``invalid_signature``...;
            ``triohub.authentication.failures``), never client data.
    """

    def __init__(
        self, description: str, *, error: str = "invalid_token", reason: str = "invalid"
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.reason = reason


class AmbiguousCredentials(AuthenticationFailed):
    """The request carries a credential more than once (two ``Authorization``
    headers, two ``access_token`` parameters).

    A proxy, a log or another service may read the other copy than this
    server does, so the request is not authenticated at all: no later scheme
    gets to accept it (``error="invalid_request"`` in the challenge).
    """

    def __init__(self, description: str) -> None:
        super().__init__(description, error="invalid_request", reason="ambiguous")


class AuthenticationRefused(Exception):
    """The request must be refused with 403 whatever the hub allows."""


@runtime_checkable
class Authenticator(Protocol):
    """One authentication scheme."""

    @property
    def challenge(self) -> str | None:
        """``WWW-Authenticate`` for 401 answers (``"Bearer"``), or ``None``."""
        ...

    async def authenticate(self, request: RequestInfo) -> Principal | None: ...


@attrs.frozen
class AuthenticationOutcome:
    """What the engine learns from authenticating one request."""

    principal: Principal = ANONYMOUS
    """The caller; ``ANONYMOUS`` when no scheme recognised a valid credential."""
    failure: AuthenticationFailed | None = None
    """Why a presented credential was rejected, if one was."""
    failure_challenge: str | None = None
    """The challenge of the scheme that rejected it (its error details belong
    in that challenge only: a bad cookie is not an ``invalid_token``)."""
    refused: AuthenticationRefused | None = None
    """Set when the request must get 403 regardless of the hub's policy."""
    challenges: tuple[str, ...] = ()
    """``WWW-Authenticate`` values for a 401 answer."""


class FirstOf:
    """Try schemes in order; the first that returns a principal wins.

    A scheme that raises ``AuthenticationFailed`` does not stop the others (a
    browser may hold a stale token and a valid cookie); the failure is kept for
    the 401 challenge. ``AmbiguousCredentials`` stops the others with that
    failure; ``AuthenticationRefused`` stops everything.
    """

    def __init__(self, *schemes: Authenticator) -> None:
        if not schemes:
            raise ValueError("FirstOf needs at least one authentication scheme")
        self.schemes = schemes

    @property
    def challenge(self) -> str | None:
        for scheme in self.schemes:
            if scheme.challenge:
                return scheme.challenge
        return None

    async def authenticate(self, request: RequestInfo) -> Principal | None:
        outcome = await authenticate_request(self, request)
        if outcome.refused is not None:
            raise outcome.refused
        if outcome.principal.is_authenticated:
            return outcome.principal
        if outcome.failure is not None:
            raise outcome.failure
        return None


def _schemes(authenticator: Authenticator) -> tuple[Authenticator, ...]:
    if isinstance(authenticator, FirstOf):
        return tuple(s for scheme in authenticator.schemes for s in _schemes(scheme))
    return (authenticator,)


async def authenticate_request(
    authenticator: Authenticator | None, request: RequestInfo
) -> AuthenticationOutcome:
    """Run every scheme as ``FirstOf`` does and say what happened.

    Never raises for anything a client sends: bad credentials become the
    ``failure``; a scheme's own bug is logged and treated as a failure
    (fail closed, never as success).
    """
    if authenticator is None:
        return AuthenticationOutcome()
    schemes = _schemes(authenticator)
    challenges = tuple(c for c in (s.challenge for s in schemes) if c)
    failure: AuthenticationFailed | None = None
    failure_challenge: str | None = None
    for scheme in schemes:
        try:
            principal = await scheme.authenticate(request)
        except AuthenticationRefused as refused:
            log.info("request refused by %s: %s", type(scheme).__name__, refused)
            return AuthenticationOutcome(refused=refused, challenges=challenges)
        except AuthenticationFailed as error:
            log.info(
                "authentication failed (%s) for %s %s: %s",
                type(scheme).__name__,
                request.method,
                request.path,
                error.description,
            )
            if isinstance(error, AmbiguousCredentials):
                return AuthenticationOutcome(
                    failure=error, failure_challenge=scheme.challenge, challenges=challenges
                )
            if failure is None:
                failure, failure_challenge = error, scheme.challenge
            continue
        except Exception:
            log.exception("authentication scheme %s raised", type(scheme).__name__)
            if failure is None:
                failure = AuthenticationFailed("authentication error", reason="scheme_error")
                failure_challenge = scheme.challenge
            continue
        if principal is not None and principal.is_authenticated:
            return AuthenticationOutcome(principal=principal, challenges=challenges)
    return AuthenticationOutcome(
        failure=failure, failure_challenge=failure_challenge, challenges=challenges
    )
