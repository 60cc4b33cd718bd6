"""The demo's fixed users (design contract) and its credentials."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import time
from typing import Any

import attrs
import jwt

from triohub.auth.throttle import ThrottleOptions

log = logging.getLogger("demo")

ISSUER = "triohub-demo"
AUDIENCE = "triohub-chat"


@attrs.frozen
class User:
    username: str
    password: str
    roles: tuple[str, ...]
    email: str

    def claims(self) -> dict[str, Any]:
        return {
            "sub": self.username,
            "name": self.username,
            "email": self.email,
            "role": list(self.roles),
        }


USERS: dict[str, User] = {
    user.username: user
    for user in (
        User("alice", "alice-password", ("Administrators",), "alice@contoso.example"),
        User("bob", "bob-password", (), "bob@contoso.example"),
        User("asdf42", "asdf42-password", ("Administrators",), "asdf42@contoso.example"),
        User("mallory", "mallory-password", ("Administrators",), "mallory@fabrikam.example"),
    )
}


def find_user(identifier: str) -> User | None:
    """The user named by ``identifier``: a username (``bob``) or a user id, which in
    the chat is the email (``bob@contoso.example``, any case)."""
    user = USERS.get(identifier)
    if user is not None:
        return user
    folded = identifier.strip().casefold()
    return next((user for user in USERS.values() if user.email.casefold() == folded), None)


def check_password(username: str, password: str) -> User | None:
    """The user, if the password matches (compared in constant time)."""
    user = USERS.get(username)
    # Compare against something even for unknown users, so timing says nothing.
    expected = user.password if user is not None else "x" * 16
    if hmac.compare_digest(expected.encode(), password.encode()) and user is not None:
        return user
    return None


def jwt_secret() -> str:
    secret = os.environ.get("DEMO_JWT_SECRET")
    if secret:
        return secret
    log.warning(
        "DEMO_JWT_SECRET is not set: using a random secret, so tokens die with this process"
    )
    return secrets.token_urlsafe(48)


def _positive_int(name: str, default: int, unit: str) -> int:
    value = os.environ.get(name, "")
    try:
        number = int(value) if value else default
    except ValueError:
        raise SystemExit(f"{name} must be a number of {unit}, not {value!r}") from None
    if number < 1:
        raise SystemExit(f"{name} must be at least 1")
    return number


def session_max_age() -> int:
    """Seconds a sign-in lasts: ``DEMO_SESSION_MAX_AGE`` (default 8 hours)."""
    return _positive_int("DEMO_SESSION_MAX_AGE", 8 * 3600, "seconds")


def signin_throttle() -> ThrottleOptions:
    """Failed sign-ins tolerated before ``/account/login`` and ``/api/token`` answer 429:
    ``DEMO_SIGNIN_ACCOUNT_FAILURES`` per account (default 5),
    ``DEMO_SIGNIN_ADDRESS_FAILURES`` per client address (default 20), forgiven over
    ``DEMO_SIGNIN_WINDOW`` seconds (default 300)."""
    defaults = ThrottleOptions()
    return ThrottleOptions(
        account_failures=_positive_int(
            "DEMO_SIGNIN_ACCOUNT_FAILURES", defaults.account_failures, "failures"
        ),
        address_failures=_positive_int(
            "DEMO_SIGNIN_ADDRESS_FAILURES", defaults.address_failures, "failures"
        ),
        window=_positive_int("DEMO_SIGNIN_WINDOW", int(defaults.window), "seconds"),
    )


def trusted_proxies() -> list[str]:
    """``DEMO_TRUSTED_PROXIES``: comma-separated addresses or networks of reverse proxies
    whose ``X-Forwarded-Proto`` / ``X-Forwarded-For`` are believed (default: none)."""
    value = os.environ.get("DEMO_TRUSTED_PROXIES", "")
    proxies = [part.strip() for part in value.split(",") if part.strip()]
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SystemExit(
                f"DEMO_TRUSTED_PROXIES: {proxy!r} is not an address or a network"
            ) from None
    return proxies


MAX_TOKEN_LIFETIME = 86400
"""Seconds: the longest lifetime ``POST /api/token`` grants."""


def issue_token(user: User, secret: str, lifetime: int, *, now: float | None = None) -> str:
    """A bearer token of ``user``. Its ``iat`` keeps the fraction of a second, so
    a token issued just after a revocation (``issued_before=now``) is newer than
    it; its ``jti`` lets one token be revoked."""
    instant = now if now is not None else time.time()
    issued = int(instant)
    claims = {
        **user.claims(),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": instant,
        "nbf": issued,
        "exp": issued + lifetime,
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, secret, algorithm="HS256")
