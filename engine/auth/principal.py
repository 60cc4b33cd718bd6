"""The principal: who the caller is, fixed for the life of a connection."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

__all__ = ["ANONYMOUS", "ClaimTypes", "Principal"]


class ClaimTypes:
    """Claim names as they appear in JWTs (``sub`` is ASP.NET's NameIdentifier)."""

    NAME: Final = "name"
    NAME_IDENTIFIER: Final = "sub"
    EMAIL: Final = "email"
    ROLE: Final = "role"


def _freeze_claims(claims: Mapping[str, Any] | None) -> Mapping[str, Any]:
    frozen: dict[str, Any] = {}
    for key, value in (claims or {}).items():
        frozen[key] = tuple(value) if isinstance(value, list) else value
    return MappingProxyType(frozen)


def _roles(claims: Mapping[str, Any]) -> frozenset[str]:
    roles: set[str] = set()
    for key in ("role", "roles"):
        value = claims.get(key)
        if isinstance(value, str):
            roles.add(value)
        elif isinstance(value, Iterable):
            roles.update(v for v in value if isinstance(v, str))
    return frozenset(roles)


@attrs.frozen
class Principal:
    """An authenticated (or anonymous) caller.

    Built once per connection from the transport request and never changed:
    hub code and method-level authorization see the same object for the
    connection's whole life.
    """

    claims: Mapping[str, Any] = attrs.field(factory=dict, converter=_freeze_claims)
    """Every claim, as the scheme produced them (lists become tuples)."""
    scheme: str | None = None
    """The authentication scheme that produced this principal; ``None`` = anonymous."""
    expires_at: float | None = None
    """Unix time at which the credential expires, if it does."""
    roles: frozenset[str] = attrs.field(init=False)
    """From the ``role`` and ``roles`` claims (a string or a list of strings)."""

    is_authenticated: bool = attrs.field(init=False, eq=False, repr=False)
    """Whether a scheme authenticated this caller (``scheme`` is not ``None``).
    An attribute, not a property: every guarded call reads it."""

    @roles.default
    def _roles_default(self) -> frozenset[str]:
        return _roles(self.claims)

    @is_authenticated.default
    def _authenticated_default(self) -> bool:
        return self.scheme is not None

    @property
    def name(self) -> str | None:
        return self._string(ClaimTypes.NAME)

    @property
    def name_identifier(self) -> str | None:
        return self._string(ClaimTypes.NAME_IDENTIFIER)

    @property
    def email(self) -> str | None:
        return self._string(ClaimTypes.EMAIL)

    def claim(self, claim_type: str) -> Any:
        """The raw value of a claim, or ``None``."""
        return self.claims.get(claim_type)

    def has_claim(self, claim_type: str, value: Any | None = None) -> bool:
        """Whether the claim is present (and, if ``value`` is given, holds it)."""
        if claim_type not in self.claims:
            return False
        if value is None:
            return True
        present = self.claims[claim_type]
        if isinstance(present, tuple):
            return value in present
        return bool(present == value)

    def is_in_role(self, role: str) -> bool:
        return role in self.roles

    def _string(self, claim_type: str) -> str | None:
        value = self.claims.get(claim_type)
        return value if isinstance(value, str) and value else None


ANONYMOUS: Final = Principal()
"""The principal of a caller that presented no credential."""
