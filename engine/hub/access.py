"""Who may open (and keep using) a hub connection: authentication of every
HTTP request, the hub-level policy, and the same-user rule for the later
requests of SSE and long-polling connections."""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import TYPE_CHECKING

import attrs

from ..auth.authenticator import AuthenticationOutcome, authenticate_request
from ..auth.principal import Principal
from ..auth.request import RequestInfo
from ..auth.user_id import resolve_user_id

if TYPE_CHECKING:
    from .server import HubRegistration, HubServer

__all__ = [
    "ANONYMOUS_DIGEST",
    "Verdict",
    "check_bound",
    "check_request",
    "same_user",
    "user_digest",
]

log = logging.getLogger("triohub.auth")

Header = tuple[bytes, bytes]


@attrs.frozen
class Verdict:
    """The answer to one negotiate or transport request."""

    principal: Principal
    status: int = 200
    """200 to go on; 401 (challenge) or 403 (forbidden) to refuse."""
    headers: tuple[Header, ...] = ()
    """The challenge (``WWW-Authenticate``) for a 401, kept for a later 401."""
    reason: str = ""
    """For logs only (never credentials)."""
    body: bytes = b""
    """The response's text (a revoked credential says so)."""
    description: str = ""
    """What the caller may be told of a 401: why the credential was refused
    (the scheme's error description, as in the challenge)."""

    @property
    def allowed(self) -> bool:
        return self.status == 200


def _challenge_headers(outcome: AuthenticationOutcome) -> tuple[Header, ...]:
    headers = []
    for challenge in outcome.challenges:
        value = challenge
        if outcome.failure is not None and challenge == outcome.failure_challenge:
            description = outcome.failure.description.replace('"', "'")
            value = (
                f'{challenge} error="{outcome.failure.error}", error_description="{description}"'
            )
        headers.append((b"www-authenticate", value.encode("latin-1", "replace")))
    return tuple(headers)


REVOKED_DESCRIPTION = "The credential has been revoked"
REVOKED_TEXT = b"The credential has been revoked."
"""The body of the 401 that refuses a revoked credential."""


def _revoked_challenge(outcome: AuthenticationOutcome, principal: Principal) -> tuple[Header, ...]:
    """The challenges, the revoked credential's scheme's saying why (RFC 6750 3.1)."""
    headers = []
    for challenge in outcome.challenges:
        value = challenge
        if challenge == principal.scheme:
            value = f'{challenge} error="invalid_token", error_description="{REVOKED_DESCRIPTION}"'
        headers.append((b"www-authenticate", value.encode("latin-1")))
    return tuple(headers)


_TIME_CLAIMS = frozenset({"exp", "nbf", "iat", "jti", "auth_time"})


def _identity(principal: Principal) -> object:
    key = principal.name_identifier or principal.name or principal.email
    if key is not None:
        return key
    # No identity claim at all: the claims themselves, minus what changes when
    # the same credential is re-issued.
    return tuple(sorted((k, repr(v)) for k, v in principal.claims.items() if k not in _TIME_CLAIMS))


def user_digest(principal: Principal) -> str:
    """A short, stable digest of who ``principal`` is (``-`` anonymous): what a
    cluster's connection token carries of its negotiating user."""
    if not principal.is_authenticated:
        return ANONYMOUS_DIGEST
    digest = hashlib.sha256(repr(_identity(principal)).encode()).digest()[:12]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


ANONYMOUS_DIGEST = "-"


def same_user(bound: Principal | str, current: Principal) -> bool:
    """Whether a later request comes from the connection's own user (``bound``:
    the connection's principal, or its ``user_digest``)."""
    if isinstance(bound, str):
        if bound == ANONYMOUS_DIGEST:
            return True
        return current.is_authenticated and user_digest(current) == bound
    if not bound.is_authenticated:
        return True  # an anonymous connection has no user to impersonate
    if not current.is_authenticated:
        return False
    return _identity(bound) == _identity(current)


async def check_request(
    server: HubServer, registration: HubRegistration, request: RequestInfo
) -> Verdict:
    """Authenticate ``request`` and apply the hub's policy (401 / 403).

    Runs before anything else looks at the request, as ASP.NET's
    authorization middleware does: an unauthenticated caller learns nothing
    about connection ids. A banned user (``HubServer.ban``) gets a 403 here,
    before the hub's policy runs.
    """
    outcome = await authenticate_request(server.authenticator, request)
    principal = outcome.principal
    if outcome.failure is not None:
        server.telemetry.metrics.authentication_failed(outcome.failure.reason)
    challenge = _challenge_headers(outcome)
    if outcome.refused is not None:
        return Verdict(principal, 403, reason=str(outcome.refused))
    state = server.authorizer.state
    if state.banned or state.revocations:
        user_id = await resolve_user_id(registration.user_id_provider, principal)
        if server.authorizer.is_banned(user_id):
            log.info("refused a request of a banned user (%s %s)", request.method, request.path)
            return Verdict(principal, 403, reason="the user is banned")
        if server.authorizer.revoked(principal, user_id) is not None:
            log.info("refused a revoked credential (%s %s)", request.method, request.path)
            return Verdict(
                principal,
                401,
                _revoked_challenge(outcome, principal),
                reason="the credential is revoked",
                body=REVOKED_TEXT,
                description=REVOKED_TEXT.decode(),
            )
    allowed = await server.authorize_hub(registration, principal, request)
    if allowed:
        return Verdict(principal, headers=challenge)
    if principal.is_authenticated:
        return Verdict(principal, 403, reason="hub policy denied the user")
    failure = outcome.failure
    return Verdict(
        principal,
        401,
        challenge,
        reason="authentication required",
        description=failure.description if failure is not None else "",
    )


def check_bound(verdict: Verdict, bound: Principal | str, request: RequestInfo) -> Verdict:
    """For the later requests of an SSE or long-polling connection: the request
    must prove it comes from the connection's own user (401 without a valid
    credential, 403 for another user). The connection's principal never changes.
    ``bound`` may be the ``user_digest`` a cluster's connection token carries."""
    anonymous = bound == ANONYMOUS_DIGEST if isinstance(bound, str) else not bound.is_authenticated
    if not verdict.allowed or anonymous:
        return verdict
    if not verdict.principal.is_authenticated:
        return Verdict(
            verdict.principal, 401, verdict.headers, reason="credential missing or invalid"
        )
    if not same_user(bound, verdict.principal):
        log.warning(
            "refused a request on the connection of another user (%s %s)",
            request.method,
            request.path,
        )
        return Verdict(verdict.principal, 403, reason="a different user than the connection's")
    return verdict
