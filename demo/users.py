"""The demo's fixed users (design contract) and its credentials."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from typing import Any

import attrs
import jwt

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


def session_max_age() -> int:
    """Seconds a sign-in lasts: ``DEMO_SESSION_MAX_AGE`` (default 8 hours)."""
    value = os.environ.get("DEMO_SESSION_MAX_AGE", "")
    try:
        seconds = int(value) if value else 8 * 3600
    except ValueError:
        raise SystemExit(
            f"DEMO_SESSION_MAX_AGE must be a number of seconds, not {value!r}"
        ) from None
    if seconds < 1:
        raise SystemExit("DEMO_SESSION_MAX_AGE must be at least 1 second")
    return seconds


def issue_token(user: User, secret: str, lifetime: int, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        **user.claims(),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
    }
    return jwt.encode(claims, secret, algorithm="HS256")
