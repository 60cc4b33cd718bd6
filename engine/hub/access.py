"""Who may open (and keep using) a hub connection: authentication of every
HTTP request, the hub-level policy, and the same-user rule for the later
requests of SSE and long-polling connections."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from ..auth.authenticator import AuthenticationOutcome, authenticate_request
from ..auth.principal import Principal
from ..auth.request import RequestInfo

if TYPE_CHECKING:
    from .server import HubRegistration, HubServer

__all__ = ["Verdict", "check_request", "same_user"]

log = logging.getLogger("triohub.auth")

Header = tuple[bytes, bytes]


@attrs.frozen
class Verdict:
    """The answer to one negotiate or transport request."""

    principal: Principal
    status: int = 200
    """200 to go on; 401 (challenge) or 403 (forbidden) to refuse."""
    headers: tuple[Header, ...] = ()
    reason: str = ""
    """For logs only (never credentials)."""

    @property
    def allowed(self) -> bool:
        return self.status == 200


def _challenge_headers(outcome: AuthenticationOutcome) -> tuple[Header, ...]:
    headers = []
    for challenge in outcome.challenges:
        value = challenge
        if outcome.failure is not None and challenge.lower() == "bearer":
            description = outcome.failure.description.replace('"', "'")
            value = (
                f'{challenge} error="{outcome.failure.error}", error_description="{description}"'
            )
        headers.append((b"www-authenticate", value.encode("latin-1", "replace")))
    return tuple(headers)


def same_user(bound: Principal, current: Principal) -> bool:
    """Whether a later request comes from the connection's own user."""
    if not bound.is_authenticated:
        return True  # an anonymous connection has no user to impersonate
    if not current.is_authenticated:
        return False
    key_bound = bound.name_identifier or bound.name or bound.email
    key_current = current.name_identifier or current.name or current.email
    return key_bound is not None and key_bound == key_current


HubPolicyCheck = Callable[[Principal, RequestInfo], Awaitable[bool]]


async def check_request(
    server: HubServer,
    registration: HubRegistration,
    request: RequestInfo,
    *,
    bound: Principal | None = None,
) -> Verdict:
    """Authenticate ``request`` and apply the hub's policy.

    Args:
        bound: for the later requests of an SSE or long-polling connection, the
            principal fixed when the connection started: the request must come
            from the same user (403 otherwise) with a valid credential (401).

    Returns:
        A verdict; its principal is the request's (never the bound one's).
    """
    outcome = await authenticate_request(server.authenticator, request)
    principal = outcome.principal
    if outcome.refused is not None:
        return Verdict(principal, 403, reason=str(outcome.refused))
    if bound is not None and bound.is_authenticated:
        if not principal.is_authenticated:
            return Verdict(
                principal, 401, _challenge_headers(outcome), reason="credential missing or invalid"
            )
        if not same_user(bound, principal):
            log.warning(
                "refused a request on connection of another user (%s %s)",
                request.method,
                request.path,
            )
            return Verdict(principal, 403, reason="a different user than the connection's")
    allowed = await server.authorize_hub(registration, principal, request)
    if allowed:
        return Verdict(principal)
    if principal.is_authenticated:
        return Verdict(principal, 403, reason="hub policy denied the user")
    return Verdict(principal, 401, _challenge_headers(outcome), reason="authentication required")
