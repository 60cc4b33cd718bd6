"""Signed session cookies for browsers (itsdangerous).

The app's login endpoint calls ``issue(claims)`` and sets the returned
``Set-Cookie`` value; the browser then sends the cookie with every negotiate
and transport request, with no client configuration. The cookie is HttpOnly
(scripts cannot read it), SameSite=Lax, signed and time-limited.

Cross-site WebSocket hijacking: a browser sends cookies on a WebSocket
upgrade from any page, so a cookie-authenticated request whose ``Origin`` is
not this site (or an allowed origin) is refused with 403.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

import itsdangerous

from .authenticator import AuthenticationFailed, AuthenticationRefused
from .principal import Principal
from .request import RequestInfo

__all__ = ["CookieAuthenticator"]


class CookieAuthenticator:
    """Authenticates requests by a signed session cookie.

    Args:
        secret: the signing key (keep it out of the code; 32+ random bytes).
        cookie_name: the cookie's name.
        max_age: seconds a session lasts; also the principal's expiry.
        allowed_origins: other origins (``https://app.example``) whose pages may
            use the cookie; the request's own origin is always allowed.
        secure: add the ``Secure`` attribute (serve over HTTPS in production).
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
    ) -> None:
        if not secret:
            raise ValueError("CookieAuthenticator needs a non-empty secret")
        self._serializer = itsdangerous.URLSafeTimedSerializer(secret, salt=salt)
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.secure = secure
        self.scheme_name = scheme_name

    @property
    def challenge(self) -> str | None:
        # Script clients get a plain 401 (ASP.NET's cookie handler answers
        # XMLHttpRequest-style requests so, with no redirect).
        return None

    def issue(self, claims: Mapping[str, Any]) -> str:
        """The ``Set-Cookie`` header value for a new session holding ``claims``."""
        value = self._serializer.dumps(dict(claims))
        attributes = [
            f"{self.cookie_name}={value}",
            "Path=/",
            f"Max-Age={self.max_age}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if self.secure:
            attributes.append("Secure")
        return "; ".join(attributes)

    def clear(self) -> str:
        """The ``Set-Cookie`` header value that ends the session."""
        return f"{self.cookie_name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"

    async def authenticate(self, request: RequestInfo) -> Principal | None:
        value = request.cookies.get(self.cookie_name)
        if not value:
            return None
        try:
            claims, signed_at = self._serializer.loads(
                value, max_age=self.max_age, return_timestamp=True
            )
        except itsdangerous.SignatureExpired:
            raise AuthenticationFailed("The session expired.") from None
        except itsdangerous.BadData:
            raise AuthenticationFailed("The session cookie is invalid.") from None
        if not isinstance(claims, dict):
            raise AuthenticationFailed("The session cookie is invalid.")
        self._check_origin(request)
        return Principal(
            claims, scheme=self.scheme_name, expires_at=signed_at.timestamp() + self.max_age
        )

    def _check_origin(self, request: RequestInfo) -> None:
        origin = request.origin
        if origin is None:
            return  # not a cross-origin browser request (non-browser clients send none)
        normalized = origin.rstrip("/").lower()
        if normalized in self.allowed_origins or normalized == _own_origin(request):
            return
        raise AuthenticationRefused("a session cookie was sent from a foreign origin")


def _own_origin(request: RequestInfo) -> str | None:
    host = request.header("host")
    if host is None:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(request.scheme, request.scheme)
    origin = f"{scheme}://{host}".lower()
    parts = urlsplit(origin)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if parts.port is not None and parts.port == default:
        origin = f"{parts.scheme}://{parts.hostname}"
    return origin
