"""Signed session cookies for browsers (itsdangerous).

The app's login endpoint calls ``issue(claims)`` and sets the returned
``Set-Cookie`` value; the browser then sends the cookie with every negotiate
and transport request, with no client configuration. The cookie is HttpOnly
(scripts cannot read it), SameSite=Lax, signed and time-limited, and
``Secure`` when the browser's connection is TLS.

Sessions can end: each cookie carries a random session id (the ``sid``
claim), every request checks it against a ``RevocationStore``, and
``end_session`` (sign-out) revokes it, so a copy of the cookie stops working
at once instead of living out its ``max_age``.

Cross-site WebSocket hijacking: a browser sends cookies on a WebSocket
upgrade from any page, so a cookie-authenticated request whose ``Origin`` is
not this site (or an allowed origin) is refused with 403.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection, Mapping
from typing import Any

import itsdangerous

from .authenticator import AuthenticationFailed, AuthenticationRefused
from .origin import normalize_origin, own_origin
from .principal import Principal
from .proxy import TrustedProxies
from .request import RequestInfo
from .sessions import MemoryRevocationStore, RevocationStore

__all__ = ["SESSION_ID_CLAIM", "CookieAuthenticator"]

SESSION_ID_CLAIM = "sid"
"""The claim holding a cookie's session id (as OpenID Connect names it)."""


class CookieAuthenticator:
    """Authenticates requests by a signed session cookie.

    Args:
        secret: the signing key (keep it out of the code; 32+ random bytes).
        cookie_name: the cookie's name.
        max_age: seconds a session lasts; also the principal's expiry.
        allowed_origins: other origins (``https://app.example``) whose pages may
            use the cookie; the request's own origin is always allowed.
        secure: always add the ``Secure`` attribute (``issue(secure=True)`` adds it
            per request, e.g. when the request came over TLS).
        revocations: where ended sessions are remembered (default: this process's
            memory; give every node the same shared store in a cluster).
        proxies: reverse proxies whose ``X-Forwarded-Proto`` is believed when the
            origin check works out this site's own origin.
    """

    def __init__(
        self,
        secret: str | bytes,
        *,
        cookie_name: str = "triohub_session",
        max_age: int = 8 * 3600,
        allowed_origins: Collection[str] = (),
        secure: bool = False,
        salt: str = "triohub.session",
        scheme_name: str = "Cookies",
        revocations: RevocationStore | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        if not secret:
            raise ValueError("CookieAuthenticator needs a non-empty secret")
        self._serializer = itsdangerous.URLSafeTimedSerializer(secret, salt=salt)
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.allowed_origins = frozenset(
            o for o in (normalize_origin(origin) for origin in allowed_origins) if o is not None
        )
        self.secure = secure
        self.scheme_name = scheme_name
        self.revocations: RevocationStore = (
            revocations if revocations is not None else MemoryRevocationStore()
        )
        self.proxies = proxies if proxies is not None else TrustedProxies()

    @property
    def challenge(self) -> str | None:
        # Script clients get a plain 401 (ASP.NET's cookie handler answers
        # XMLHttpRequest-style requests so, with no redirect).
        return None

    def issue(
        self, claims: Mapping[str, Any], *, secure: bool = False, session_id: str | None = None
    ) -> str:
        """The ``Set-Cookie`` header value for a new session holding ``claims``.

        The session gets a new random id (the ``sid`` claim) and its time of
        issue (the ``iat`` claim, Unix time to the fraction of a second, which
        ``HubServer.revoke(issued_before=...)`` compares); those passed in
        ``claims`` are replaced. ``session_id`` renews a session instead: the
        cookie keeps that id (so ``end_session`` with any of its cookies ends
        it, and the connections holding any of them), with a new ``iat`` and
        a full ``max_age`` ahead. ``secure`` adds the ``Secure`` attribute (set
        it when the request came over TLS); it is always added when the
        authenticator was made with ``secure=True``.
        """
        sid = session_id if session_id is not None else secrets.token_urlsafe(24)
        value = self._serializer.dumps({**claims, SESSION_ID_CLAIM: sid, "iat": time.time()})
        return self._set_cookie(value, self.max_age, secure)

    def clear(self, *, secure: bool = False) -> str:
        """The ``Set-Cookie`` header value that removes the cookie from the browser
        (``end_session`` is what makes a copy of it worthless)."""
        return self._set_cookie("", 0, secure)

    def _set_cookie(self, value: str, max_age: int, secure: bool) -> str:
        attributes = [
            f"{self.cookie_name}={value}",
            "Path=/",
            f"Max-Age={max_age}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if self.secure or secure:
            attributes.append("Secure")
        return "; ".join(attributes)

    def session_of(self, principal: Principal) -> str | None:
        """The session id of a principal this scheme made, else ``None``."""
        if principal.scheme != self.scheme_name:
            return None
        session_id = principal.claim(SESSION_ID_CLAIM)
        return session_id if isinstance(session_id, str) else None

    async def end_session(self, request: RequestInfo) -> Principal | None:
        """Sign-out: revoke the session of the request's cookie.

        Returns:
            the principal whose session ended (so the app can close its live
            connections: ``HubServer.abort_connections``), or ``None`` when the
            request carries no valid session (nothing to end).
        """
        try:
            found = await self._read(request)
        except AuthenticationFailed:
            return None
        if found is None:
            return None
        principal, session_id = found
        assert principal.expires_at is not None
        await self.revocations.revoke(session_id, until=principal.expires_at + 1)
        return principal

    async def authenticate(self, request: RequestInfo) -> Principal | None:
        found = await self._read(request)
        if found is None:
            return None
        self._check_origin(request)
        return found[0]

    async def _read(self, request: RequestInfo) -> tuple[Principal, str] | None:
        """The cookie's principal and session id (the origin is not checked)."""
        value = request.cookies.get(self.cookie_name)
        if not value:
            return None
        try:
            claims, signed_at = self._serializer.loads(
                value, max_age=self.max_age, return_timestamp=True
            )
        except itsdangerous.SignatureExpired:
            raise AuthenticationFailed("The session expired.", reason="expired") from None
        except itsdangerous.BadData:
            raise AuthenticationFailed("The session cookie is invalid.") from None
        if not isinstance(claims, dict):
            raise AuthenticationFailed("The session cookie is invalid.")
        session_id = claims.get(SESSION_ID_CLAIM)
        if not isinstance(session_id, str) or not session_id:
            # Signed by us but from before sessions could end: cannot be revoked.
            raise AuthenticationFailed("The session cookie is invalid.")
        if await self.revocations.is_revoked(session_id):
            raise AuthenticationFailed("The session has ended.", reason="revoked")
        principal = Principal(
            claims, scheme=self.scheme_name, expires_at=signed_at.timestamp() + self.max_age
        )
        return principal, session_id

    def _check_origin(self, request: RequestInfo) -> None:
        origins = request.headers.get("origin", ())
        if not origins:
            return  # not a cross-origin browser request (non-browser clients send none)
        if len(origins) == 1:
            normalized = normalize_origin(origins[0])
            if normalized is not None and (
                normalized in self.allowed_origins
                or normalized == own_origin(request, self.proxies.scheme(request))
            ):
                return
        raise AuthenticationRefused("a session cookie was sent from a foreign origin")
