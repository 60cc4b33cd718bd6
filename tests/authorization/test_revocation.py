"""``Revocation`` and ``Revocations``: which credentials a revocation refuses, until
when, and that it is a plain value (what a backplane would carry)."""

from __future__ import annotations

import json

import pytest

from triohub import Principal
from triohub.authorization import AuthorizationState, Revocation, Revocations

NOW = 1_800_000_000.0


def token(sub: str, *, iat: float | None = NOW - 60, jti: str | None = None) -> Principal:
    claims: dict[str, object] = {"sub": sub}
    if iat is not None:
        claims["iat"] = iat
    if jti is not None:
        claims["jti"] = jti
    return Principal(claims, scheme="Bearer")


def test_every_credential_of_a_user_issued_before_a_time() -> None:
    revocation = Revocation(until=NOW + 3600, user_id="bob", issued_before=NOW)
    assert revocation.matches(token("bob"), "bob")
    assert not revocation.matches(token("bob", iat=NOW), "bob")  # issued at the instant: new
    assert not revocation.matches(token("bob", iat=NOW + 1), "bob")
    assert not revocation.matches(token("alice"), "alice")
    # No iat: the credential cannot show it is newer, so it is refused.
    assert revocation.matches(token("bob", iat=None), "bob")


def test_one_credential_by_its_jti_or_session_id() -> None:
    revocation = Revocation(until=NOW + 3600, token_id="t-1")
    assert revocation.matches(token("bob", jti="t-1"), "bob")
    assert not revocation.matches(token("bob", jti="t-2"), "bob")
    assert not revocation.matches(token("bob"), "bob")
    cookie = Principal({"sub": "bob", "sid": "t-1"}, scheme="Cookies")
    assert revocation.matches(cookie, "bob")
    scoped = Revocation(until=NOW + 3600, token_id="t-1", user_id="alice")
    assert not scoped.matches(token("bob", jti="t-1"), "bob")


def test_anonymous_callers_have_no_credential_to_refuse() -> None:
    revocation = Revocation(until=NOW + 3600, issued_before=NOW)
    assert not revocation.matches(Principal(), None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"user_id": "bob"}, "needs a token_id or an issued_before"),
        ({"token_id": ""}, "token_id must be a non-empty string"),
        ({"user_id": 3, "issued_before": NOW}, "user_id must be a non-empty string"),
        ({"issued_before": float("nan")}, "issued_before must be a Unix time"),
        ({"issued_before": "yesterday"}, "issued_before must be a Unix time"),
    ],
)
def test_what_is_not_a_revocation(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Revocation(until=NOW, **fields)  # type: ignore[arg-type]


def test_a_revocation_is_plain_data_both_ways() -> None:
    revocation = Revocation(until=NOW + 10, user_id="bob", token_id="t", issued_before=NOW)
    wire = json.dumps(revocation.as_dict())
    assert Revocation.from_dict(json.loads(wire)) == revocation
    with pytest.raises(ValueError, match="not a revocation"):
        Revocation.from_dict({"userId": "bob"})


def test_revocations_are_forgotten_at_their_until() -> None:
    state = AuthorizationState()
    short = Revocation(until=NOW + 10, user_id="bob", issued_before=NOW)
    long = Revocation(until=NOW + 100, token_id="t-9")
    state = state.revoke(short, NOW).revoke(long, NOW)
    assert len(state.revocations) == 2
    assert state.revoked(token("bob"), "bob", NOW + 5) == short
    # Past its until the entry refuses nothing, and the next change drops it.
    assert state.revoked(token("bob"), "bob", NOW + 10) is None
    later = state.revoke(Revocation(until=NOW + 200, token_id="t-10"), NOW + 11)
    assert later.revocations.entries == (long, Revocation(until=NOW + 200, token_id="t-10"))
    assert later.forget_expired(NOW + 150).revocations.entries == (
        Revocation(until=NOW + 200, token_id="t-10"),
    )
    # A revocation already past its until is not kept; the same one twice is one.
    assert not state.revoke(Revocation(until=NOW, token_id="x"), NOW).revocations.by_token.get("x")
    assert len(state.revoke(short, NOW).revocations) == 2


def test_the_check_finds_each_kind_through_its_index() -> None:
    entries = [Revocation(until=NOW + 60, token_id=f"t-{n}") for n in range(1000)]
    entries.append(Revocation(until=NOW + 60, user_id="bob", issued_before=NOW))
    entries.append(Revocation(until=NOW + 60, issued_before=NOW - 3600))
    revocations = Revocations(tuple(entries))
    assert revocations.refusing(token("carol", jti="t-500"), "carol", NOW) == entries[500]
    assert revocations.refusing(token("bob"), "bob", NOW) == entries[1000]
    assert revocations.refusing(token("carol", iat=NOW - 7200), "carol", NOW) == entries[1001]
    assert revocations.refusing(token("carol", jti="t-x"), "carol", NOW) is None
    assert len(revocations.anyone) == 1
    assert set(revocations.by_user) == {"bob"}
