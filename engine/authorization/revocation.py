"""Revocations: credentials refused before their own expiry.

A ``Revocation`` is a plain value (strings and numbers; ``as_dict`` and
``from_dict`` turn it into JSON-ready data and back), so whatever carries it
between nodes (a backplane) or keeps it (a store) needs nothing of this
module. It names what it refuses by three optional facts of a credential:

* ``user_id``: whose credentials (a user id as the hubs' user-id provider
  gives it);
* ``token_id``: one credential, by its ``jti`` claim (a JWT's id) or, for a
  credential without one, its ``sid`` claim (a session cookie's id);
* ``issued_before``: credentials whose ``iat`` claim is earlier (Unix time). A
  credential without an ``iat`` cannot show it is newer, so such a revocation
  refuses it (fail closed).

A credential matches when it agrees with every fact given. ``until`` is when
the revocation may be forgotten: the latest expiry of a credential it can
match, after which the credential refuses itself. So the revocations held are
bounded by those made during one credential lifetime.

Pure: no trio, no I/O; times are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ..auth.principal import Principal

__all__ = ["Revocation", "Revocations", "credential_id", "issued_at"]

TOKEN_ID_CLAIMS = ("jti", "sid")
"""Claims that name one credential, in the order they are looked for."""


def credential_id(principal: Principal) -> str | None:
    """The id of the credential behind ``principal`` (``jti``, else ``sid``)."""
    for claim in TOKEN_ID_CLAIMS:
        value = principal.claims.get(claim)
        if isinstance(value, str) and value:
            return value
    return None


def issued_at(principal: Principal) -> float | None:
    """The ``iat`` claim as Unix time, or ``None`` when absent or not a number."""
    value = principal.claims.get("iat")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _optional_text(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{attribute.name} must be a non-empty string or None, got {value!r}")


def _optional_time(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise ValueError(f"{attribute.name} must be a Unix time in seconds, got {value!r}")


@attrs.frozen
class Revocation:
    """Refuse the credentials that match, until ``until``.

    Raises:
        ValueError: neither ``token_id`` nor ``issued_before`` is given (a
            revocation of "every credential of a user" is ``issued_before=now``),
            or a field has the wrong type.
    """

    until: float = attrs.field(validator=_optional_time)
    """Unix time after which no matching credential can be valid anyway."""
    user_id: str | None = attrs.field(default=None, validator=_optional_text)
    """Only this user's credentials (``None``: anyone's)."""
    token_id: str | None = attrs.field(default=None, validator=_optional_text)
    """Only the credential with this ``jti`` (or ``sid``)."""
    issued_before: float | None = attrs.field(default=None, validator=_optional_time)
    """Only credentials issued (``iat``) before this Unix time."""

    def __attrs_post_init__(self) -> None:
        if self.token_id is None and self.issued_before is None:
            raise ValueError(
                "a revocation needs a token_id or an issued_before "
                "(to end every credential of a user, pass issued_before=now)"
            )

    def matches(self, principal: Principal, user_id: str | None) -> bool:
        """Whether the credential behind ``principal`` (of ``user_id``) is refused."""
        if not principal.is_authenticated:
            return False  # no credential to refuse
        if self.user_id is not None and self.user_id != user_id:
            return False
        if self.token_id is not None and self.token_id != credential_id(principal):
            return False
        if self.issued_before is not None:
            issued = issued_at(principal)
            if issued is not None and issued >= self.issued_before:
                return False
        return True

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (``from_dict`` reads it back)."""
        return {
            "until": self.until,
            "userId": self.user_id,
            "tokenId": self.token_id,
            "issuedBefore": self.issued_before,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Revocation:
        """The revocation ``as_dict`` described.

        Raises:
            ValueError: ``data`` is not such a description.
        """
        try:
            return cls(
                until=data["until"],
                user_id=data.get("userId"),
                token_id=data.get("tokenId"),
                issued_before=data.get("issuedBefore"),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a revocation: {data!r}") from error


_EMPTY: Mapping[str, tuple[Revocation, ...]] = MappingProxyType({})


def _index(entries: Iterable[Revocation], key: str) -> Mapping[str, tuple[Revocation, ...]]:
    index: dict[str, list[Revocation]] = {}
    for entry in entries:
        value = getattr(entry, key)
        if value is not None:
            index.setdefault(value, []).append(entry)
    return MappingProxyType({k: tuple(v) for k, v in index.items()}) if index else _EMPTY


@attrs.frozen
class Revocations:
    """The revocations in force: an immutable set, indexed for the check.

    A check looks up the credential's id and the user's id, so it costs the
    same with ten revocations or ten thousand (those without either, such as
    "everything issued before T", are scanned: there are few).
    """

    entries: tuple[Revocation, ...] = ()
    by_token: Mapping[str, tuple[Revocation, ...]] = attrs.field(init=False, repr=False)
    by_user: Mapping[str, tuple[Revocation, ...]] = attrs.field(init=False, repr=False)
    anyone: tuple[Revocation, ...] = attrs.field(init=False, repr=False)
    """Revocations with neither a token id nor a user id."""

    @by_token.default
    def _by_token(self) -> Mapping[str, tuple[Revocation, ...]]:
        return _index(self.entries, "token_id")

    @by_user.default
    def _by_user(self) -> Mapping[str, tuple[Revocation, ...]]:
        return _index((e for e in self.entries if e.token_id is None), "user_id")

    @anyone.default
    def _anyone(self) -> tuple[Revocation, ...]:
        return tuple(e for e in self.entries if e.token_id is None and e.user_id is None)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, revocation: Revocation, now: float) -> Revocations:
        """These revocations with ``revocation`` added and those past ``until``
        forgotten (a revocation already past its ``until`` is not kept)."""
        kept = [e for e in self.entries if e.until > now and e != revocation]
        if revocation.until > now:
            kept.append(revocation)
        return Revocations(tuple(kept))

    def forget_expired(self, now: float) -> Revocations:
        """These revocations without those past their ``until``."""
        if all(e.until > now for e in self.entries):
            return self
        return Revocations(tuple(e for e in self.entries if e.until > now))

    def refusing(self, principal: Principal, user_id: str | None, now: float) -> Revocation | None:
        """The revocation (in force at ``now``) that refuses this credential, if any."""
        if not self.entries or not principal.is_authenticated:
            return None
        token = credential_id(principal)
        candidates: tuple[Revocation, ...] = self.anyone
        if token is not None:
            candidates += self.by_token.get(token, ())
        if user_id is not None:
            candidates += self.by_user.get(user_id, ())
        for entry in candidates:
            if entry.until > now and entry.matches(principal, user_id):
                return entry
        return None
