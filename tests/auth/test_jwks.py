"""``JwksKeySource``: refresh on an unknown ``kid``, rate limiting, key rotation, and a
real JWKS document over HTTP."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.lowlevel

from triohub.auth.authenticator import AuthenticationFailed
from triohub.auth.jwks import JwksKeySource
from triohub.auth.jwt_bearer import JwtBearerAuthenticator, JwtBearerOptions
from triohub.transports.hypercorn import serve_hypercorn

from .support import AUDIENCE, ISSUER, bearer, claims, ec_keys, request_info, rsa_keys, sign


class Issuer:
    """An identity provider's key set, served by an in-test ``fetch`` that counts calls."""

    def __init__(self, *keys: tuple[str, Any, str]) -> None:
        self.keys: list[tuple[str, Any, str]] = list(keys)  # (kid, KeyPair, alg)
        self.calls = 0

    def document(self) -> dict[str, Any]:
        return {"keys": [pair.jwk(kid, alg) for kid, pair, alg in self.keys]}

    async def fetch(self) -> dict[str, Any]:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        return self.document()


def scheme(source: JwksKeySource, *algorithms: str) -> JwtBearerAuthenticator:
    return JwtBearerAuthenticator(
        JwtBearerOptions(
            algorithms=algorithms or ("RS256",), jwks=source, issuer=ISSUER, audience=AUDIENCE
        )
    )


def rs_token(kid: str, name: str = "k1", sub: str = "alice") -> str:
    return sign(claims(sub), rsa_keys(name).private, "RS256", headers={"kid": kid})


async def test_keys_are_fetched_once_and_cached(autojump_clock: trio.abc.Clock) -> None:
    issuer = Issuer(("k1", rsa_keys("k1"), "RS256"))
    source = JwksKeySource(fetch=issuer.fetch, min_refresh_interval=30)
    auth = scheme(source)
    for _ in range(5):
        assert (await auth.validate(rs_token("k1")))["sub"] == "alice"
    assert issuer.calls == 1
    assert source.fetches == 1


async def test_unknown_kid_triggers_one_refresh_then_is_rate_limited(
    autojump_clock: trio.abc.Clock,
) -> None:
    issuer = Issuer(("k1", rsa_keys("k1"), "RS256"))
    source = JwksKeySource(fetch=issuer.fetch, min_refresh_interval=30)
    auth = scheme(source)
    await auth.validate(rs_token("k1"))
    assert issuer.calls == 1

    await trio.sleep(31)
    forged = rs_token("forged-1", name="attacker")
    with pytest.raises(AuthenticationFailed) as raised:
        await auth.validate(forged)
    assert raised.value.description == "The token's signing key is not known."
    assert issuer.calls == 2, "an unknown kid refreshes the key set once"

    # A flood of unknown kids within the interval, sequential and concurrent: no fetch.
    for i in range(20):
        with pytest.raises(AuthenticationFailed, match="signing key is not known"):
            await auth.validate(rs_token(f"forged-{i}", name="attacker"))

    async def one(i: int) -> None:
        with pytest.raises(AuthenticationFailed, match="signing key is not known"):
            await auth.validate(rs_token(f"concurrent-{i}", name="attacker"))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, i)
    assert issuer.calls == 2, "unknown kids within min_refresh_interval must not refetch"

    await trio.sleep(30)
    with pytest.raises(AuthenticationFailed, match="signing key is not known"):
        await auth.validate(rs_token("forged-again", name="attacker"))
    assert issuer.calls == 3, "after the interval one more refresh is allowed"


async def test_concurrent_unknown_kids_after_the_interval_fetch_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    issuer = Issuer(("k1", rsa_keys("k1"), "RS256"))
    source = JwksKeySource(fetch=issuer.fetch, min_refresh_interval=30)
    auth = scheme(source)
    await auth.validate(rs_token("k1"))
    await trio.sleep(31)

    async def one(i: int) -> None:
        with pytest.raises(AuthenticationFailed):
            await auth.validate(rs_token(f"x{i}", name="attacker"))

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(one, i)
    assert issuer.calls == 2


async def test_key_rotation_is_picked_up(autojump_clock: trio.abc.Clock) -> None:
    issuer = Issuer(("k1", rsa_keys("k1"), "RS256"))
    source = JwksKeySource(fetch=issuer.fetch, min_refresh_interval=30)
    auth = scheme(source)
    await auth.validate(rs_token("k1"))

    # The issuer rotates: k2 is added, later k1 is withdrawn.
    issuer.keys.append(("k2", rsa_keys("k2"), "RS256"))
    await trio.sleep(31)
    assert (await auth.validate(rs_token("k2", name="k2", sub="bob")))["sub"] == "bob"
    assert issuer.calls == 2
    assert (await auth.validate(rs_token("k1")))["sub"] == "alice", "k1 still published"

    issuer.keys = [("k2", rsa_keys("k2"), "RS256")]
    await trio.sleep(3601)  # cache_ttl: the whole set is refetched
    with pytest.raises(AuthenticationFailed, match="signing key is not known"):
        await auth.validate(rs_token("k1"))
    assert (await auth.validate(rs_token("k2", name="k2")))["sub"] == "alice"


async def test_a_refresh_within_the_interval_does_not_see_a_brand_new_key(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The price of rate limiting: a key published seconds after the last fetch is only
    found once ``min_refresh_interval`` has passed."""
    issuer = Issuer(("k1", rsa_keys("k1"), "RS256"))
    source = JwksKeySource(fetch=issuer.fetch, min_refresh_interval=30)
    auth = scheme(source)
    await auth.validate(rs_token("k1"))
    issuer.keys.append(("k2", rsa_keys("k2"), "RS256"))
    await trio.sleep(5)
    with pytest.raises(AuthenticationFailed, match="signing key is not known"):
        await auth.validate(rs_token("k2", name="k2"))
    await trio.sleep(25)
    assert (await auth.validate(rs_token("k2", name="k2")))["sub"] == "alice"


async def test_a_key_published_for_another_algorithm_is_not_used(
    autojump_clock: trio.abc.Clock,
) -> None:
    issuer = Issuer(("ec", ec_keys(), "ES256"), ("rsa", rsa_keys("k1"), "RS256"))
    source = JwksKeySource(fetch=issuer.fetch)
    auth = scheme(source, "RS256", "ES256")
    token = sign(claims(), ec_keys().private, "ES256", headers={"kid": "ec"})
    assert (await auth.validate(token))["sub"] == "alice"
    # An RS256 token that names the EC key's kid: the JWK says ES256, so no key.
    with pytest.raises(AuthenticationFailed, match="signing key is not known"):
        await auth.validate(rs_token("ec"))


async def test_a_failing_fetch_keeps_the_old_keys(autojump_clock: trio.abc.Clock) -> None:
    issuer = Issuer(("k1", rsa_keys("k1"), "RS256"))
    broken = False

    async def fetch() -> dict[str, Any]:
        if broken:
            issuer.calls += 1
            raise OSError("issuer down")
        return await issuer.fetch()

    source = JwksKeySource(fetch=fetch, min_refresh_interval=30)
    auth = scheme(source)
    await auth.validate(rs_token("k1"))
    broken = True
    await trio.sleep(3601)
    assert (await auth.validate(rs_token("k1")))["sub"] == "alice"
    assert issuer.calls == 2


def test_source_needs_exactly_one_of_url_and_fetch() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JwksKeySource()
    with pytest.raises(ValueError, match="exactly one"):
        JwksKeySource("http://127.0.0.1:1/jwks", fetch=Issuer().fetch)


@pytest.mark.parametrize(
    "url", ["http://login.example/.well-known/jwks.json", "http://10.0.0.5/keys"]
)
def test_a_plain_http_jwks_url_is_refused(url: str) -> None:
    """Whoever can tamper with the JWKS response chooses the keys every token is checked
    with, so the document must come over HTTPS (ASP.NET's ``RequireHttpsMetadata``
    defaults to true). Plain HTTP to a loopback address stays allowed for tests and
    sidecars; the real-HTTP test below relies on that."""
    with pytest.raises(ValueError, match="https"):
        JwksKeySource(url)


# -- a real JWKS document over HTTP -----------------------------------------------------


class JwksApp:
    """A tiny ASGI app serving ``/.well-known/jwks.json``; counts the GETs."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.gets = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                kind = event["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        assert scope["type"] == "http"
        if scope["path"] != "/.well-known/jwks.json":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        self.gets += 1
        body = orjson.dumps(self.issuer.document())
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def test_real_http_jwks_document(nursery: trio.Nursery) -> None:
    issuer = Issuer(("k1", rsa_keys("k1"), "RS256"), ("e1", ec_keys(), "ES256"))
    app = JwksApp(issuer)
    host, port = await nursery.start(serve_hypercorn, app, "127.0.0.1", 0)
    source = JwksKeySource(url=f"http://{host}:{port}/.well-known/jwks.json", timeout=10)
    auth = scheme(source, "RS256", "ES256")

    principal = await auth.authenticate(request_info(headers=bearer(rs_token("k1"))))
    assert principal is not None
    assert principal.name_identifier == "alice"
    es = sign(claims("bob"), ec_keys().private, "ES256", headers={"kid": "e1"})
    assert (await auth.validate(es))["sub"] == "bob"
    assert app.gets == 1, "the document is cached"

    with pytest.raises(AuthenticationFailed, match="signature is invalid"):
        await auth.validate(sign(claims(), rsa_keys("attacker").private, "RS256", {"kid": "k1"}))
    with pytest.raises(AuthenticationFailed, match="signing key is not known"):
        await auth.validate(rs_token("unknown", name="attacker"))
    assert app.gets == 1, "the unknown kid came within min_refresh_interval of the first fetch"
