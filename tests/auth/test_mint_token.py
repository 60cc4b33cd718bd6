"""``triohub.testing.mint_token``: the tokens it mints pass the bearer scheme
they are minted for, carry the roles asked for, and expire when they say."""

from __future__ import annotations

import time

import pytest

from triohub.auth.authenticator import AuthenticationFailed
from triohub.testing import mint_token

from .support import AUDIENCE, ISSUER, SECRET, bearer, request_info
from .test_jwt_bearer import hs256


async def test_a_minted_token_authenticates_with_its_roles_and_claims() -> None:
    token = mint_token(
        SECRET,
        subject="alice",
        issuer=ISSUER,
        audience=AUDIENCE,
        roles=["Moderators"],
        email="alice@contoso.example",
    )
    principal = await hs256().authenticate(request_info(headers=bearer(token)))
    assert principal is not None
    assert principal.name_identifier == "alice"
    assert principal.roles == frozenset({"Moderators"})
    assert principal.email == "alice@contoso.example"


async def test_an_expired_minted_token_is_refused() -> None:
    token = mint_token(
        SECRET,
        subject="alice",
        issuer=ISSUER,
        audience=AUDIENCE,
        lifetime=60,
        now=time.time() - 120,
    )
    with pytest.raises(AuthenticationFailed):
        await hs256().authenticate(request_info(headers=bearer(token)))


async def test_a_token_minted_with_another_key_is_refused() -> None:
    token = mint_token("another-secret-" * 4, subject="alice", issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(AuthenticationFailed):
        await hs256().authenticate(request_info(headers=bearer(token)))
