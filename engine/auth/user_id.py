"""User-id providers: which user a connection belongs to, for ``clients.user``.

A provider is any callable ``(principal) -> str | None`` or an async one. It
runs once per connection, at handshake; ``None`` means the connection has no
user id and is reachable only by its connection id.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from .principal import ClaimTypes, Principal

__all__ = [
    "UserIdProvider",
    "claim_user_id",
    "default_user_id",
    "email_user_id",
    "name_user_id",
    "resolve_user_id",
]

UserIdProvider = Callable[[Principal], "Awaitable[str | None] | str | None"]


def claim_user_id(claim_type: str) -> Callable[[Principal], str | None]:
    """A provider that reads one string claim."""

    def provide(principal: Principal) -> str | None:
        value = principal.claim(claim_type)
        return value if isinstance(value, str) and value else None

    provide.__name__ = f"claim_user_id({claim_type!r})"
    return provide


default_user_id = claim_user_id(ClaimTypes.NAME_IDENTIFIER)
"""ASP.NET's ``DefaultUserIdProvider``: the name identifier (JWT ``sub``)."""

name_user_id = claim_user_id(ClaimTypes.NAME)
"""The ``name`` claim."""

email_user_id = claim_user_id(ClaimTypes.EMAIL)
"""The ``email`` claim (the guide's ``EmailBasedUserIdProvider``)."""


async def resolve_user_id(provider: UserIdProvider, principal: Principal) -> str | None:
    """Run a sync or async provider; reject anything but a non-empty string or None."""
    value = provider(principal)
    if inspect.isawaitable(value):
        value = await value
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(
            f"user-id provider {getattr(provider, '__name__', provider)!r} returned "
            f"{type(value).__name__}; it must return a string or None"
        )
    return value
