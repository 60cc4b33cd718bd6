"""Helpers of the authentication tests: keys, hand-made tokens, requests, an HTTP client.

Keys are generated with ``cryptography`` at test time (once per process: RSA key
generation is the slowest thing here). Tokens that no library would produce
(``alg: none``, a public key used as an HMAC secret, broken base64) are made by hand
from their segments.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import attrs
import httpx
import jwt
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from trio_websocket import ConnectionRejected, wrap_client_stream

from triohub.auth.request import RequestInfo

SECRET = "triohub-auth-tests-secret-0123456789-abcdefghijklmnop"
"""The HS256 secret of the in-process demo (and of the unit tests' HS256 scheme)."""

ISSUER = "triohub-demo"
AUDIENCE = "triohub-chat"
HUB = "/hubs/chat"


# -- keys -------------------------------------------------------------------------------


@attrs.frozen
class KeyPair:
    private: Any
    public: Any

    @property
    def public_pem(self) -> bytes:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self, kid: str, alg: str) -> dict[str, Any]:
        """The public key as a JWK (what an issuer's JWKS document lists)."""
        algorithm = jwt.get_algorithm_by_name(alg)
        document = json.loads(algorithm.to_jwk(self.public))
        return {**document, "kid": kid, "alg": alg, "use": "sig"}


@functools.cache
def rsa_keys(name: str = "default") -> KeyPair:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return KeyPair(private, private.public_key())


@functools.cache
def ec_keys(name: str = "default") -> KeyPair:
    private = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(private, private.public_key())


# -- tokens -----------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(document: Mapping[str, Any]) -> str:
    return b64url(json.dumps(document, separators=(",", ":")).encode())


def claims(
    sub: str = "alice",
    *,
    lifetime: float = 3600,
    now: float | None = None,
    omit: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """Demo-shaped claims (iss, aud, iat, nbf, exp) for ``sub``, valid now."""
    issued = int(now if now is not None else time.time())
    document: dict[str, Any] = {
        "sub": sub,
        "name": sub,
        "email": f"{sub}@contoso.example",
        "role": ["Administrators"] if sub == "alice" else [],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": issued,
        "nbf": issued,
        "exp": int(issued + lifetime),
    }
    document.update(extra)
    for name in omit:
        document.pop(name, None)
    return document


def sign(
    payload: Mapping[str, Any],
    key: Any = SECRET,
    algorithm: str = "HS256",
    headers: Mapping[str, Any] | None = None,
) -> str:
    return jwt.encode(dict(payload), key, algorithm=algorithm, headers=dict(headers or {}))


def unsigned_token(payload: Mapping[str, Any]) -> str:
    """``alg: none`` with an empty signature, made by hand (pyjwt would refuse to help)."""
    return f"{b64json({'alg': 'none', 'typ': 'JWT'})}.{b64json(payload)}."


def hmac_token(payload: Mapping[str, Any], secret: bytes, algorithm: str = "HS256") -> str:
    """An HS256 token made by hand with any bytes as the secret (pyjwt refuses a PEM
    public key as an HMAC secret; an attacker's script does not)."""
    signing_input = f"{b64json({'alg': algorithm, 'typ': 'JWT'})}.{b64json(payload)}"
    digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(digest)}"


def bad_tokens(now: float | None = None) -> dict[str, tuple[str, str]]:
    """The bad-credential matrix against the demo's scheme (HS256 ``SECRET``, iss, aud,
    zero leeway): ``{case: (token, expected error_description)}``."""
    t = int(now if now is not None else time.time())
    good = claims(now=t)
    rsa_pair = rsa_keys()
    return {
        "expired": (sign(claims(now=t - 7200, lifetime=3600)), "The token expired."),
        "not-yet-valid": (sign({**good, "nbf": t + 600}), "The token is not valid yet."),
        "wrong-signature": (
            sign(good, "another-secret-of-the-right-length-0123456789"),
            "The token's signature is invalid.",
        ),
        "alg-none": (unsigned_token(good), "The token's signing algorithm is not allowed."),
        "rs256-not-allowed": (
            sign(good, rsa_pair.private, "RS256"),
            "The token's signing algorithm is not allowed.",
        ),
        "wrong-issuer": (sign({**good, "iss": "evil"}), "The token's issuer is not accepted."),
        "wrong-audience": (
            sign({**good, "aud": "another-api"}),
            "The token's audience is not accepted.",
        ),
        "garbage": ("garbage", "The token is malformed."),
        "two-segments": (sign(good).rsplit(".", 1)[0], "The token is malformed."),
        "bad-base64": (
            # 21 base64 characters: one more than a multiple of 4 cannot be decoded.
            f"{b64json({'alg': 'HS256', 'typ': 'JWT'})}.{b64json({'sub': 'alice'})}x."
            + b64url(b"x" * 32),
            "The token is malformed.",
        ),
        "missing-exp": (sign(claims(now=t, omit=("exp",))), "The token has no 'exp' claim."),
        # Time claims must be JSON numbers. pyjwt itself accepts a numeric string (it
        # calls int() on it), which would leave the principal without an expiry.
        "string-exp": (sign({**good, "exp": str(t + 3600)}), not_a_date("exp")),
        "string-nbf": (sign({**good, "nbf": str(t)}), not_a_date("nbf")),
        "string-iat": (sign({**good, "iat": str(t)}), not_a_date("iat")),
        "word-exp": (sign({**good, "exp": "tomorrow"}), not_a_date("exp")),
        "bool-nbf": (sign({**good, "nbf": True}), not_a_date("nbf")),
        "huge-exp": (sign({**good, "exp": 10**400}), not_a_date("exp")),
        "nan-exp": (
            hmac_token(
                {**good, "exp": float("nan")}, SECRET.encode()
            ),  # json.dumps writes NaN; pyjwt's json.loads reads it back
            not_a_date("exp"),
        ),
    }


def not_a_date(claim: str) -> str:
    return f"The token's '{claim}' claim is not a NumericDate."


# -- requests ---------------------------------------------------------------------------


def request_info(
    *,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    method: str = "POST",
    path: str = HUB + "/negotiate",
    hub_path: str | None = HUB,
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
    scheme: str = "http",
) -> RequestInfo:
    return RequestInfo(
        method=method,
        path=path,
        query={k: (v,) for k, v in (query or {}).items()},
        headers={k.lower(): (v,) for k, v in (headers or {}).items()},
        client=client,
        scheme=scheme,
        hub_path=hub_path,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refused_upgrade(
    url: str, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> ConnectionRejected:
    """The refusal of a WebSocket upgrade the server must refuse.

    trio-websocket's ``open_websocket_url`` leaves its TCP socket open when the
    upgrade is rejected (collected later with a ResourceWarning, in whichever
    test runs then); here the test owns the socket and closes it.
    """
    parsed = httpx.URL(url)
    assert parsed.port is not None
    resource = parsed.raw_path.decode()
    stream = await trio.open_tcp_stream(parsed.host, parsed.port)
    refusals: list[ConnectionRejected] = []
    try:
        async with trio.open_nursery() as nursery:
            await wrap_client_stream(
                nursery, stream, parsed.host, resource, extra_headers=extra_headers
            )
            raise AssertionError(f"the upgrade of {url} was accepted")
    except* ConnectionRejected as group:
        refusals.extend(e for e in group.exceptions if isinstance(e, ConnectionRejected))
    finally:
        await stream.aclose()
    (refused,) = refusals
    return refused


# -- HTTP from trio tests ---------------------------------------------------------------


def _no_cookie_jar() -> CookieJar:
    # Never store a Set-Cookie: each test says exactly which cookie it sends.
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class Http:
    """Sync httpx in worker threads (httpx's async client is asyncio-only).

    Redirects are not followed and cookies are never stored.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(
            base_url=base_url, cookies=_no_cookie_jar(), follow_redirects=False, timeout=30
        )

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await trio.to_thread.run_sync(
            functools.partial(self.client.request, method, url, **kwargs),
            abandon_on_cancel=True,
        )

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def token(self, username: str, lifetime: int | None = None) -> str:
        body: dict[str, Any] = {"username": username, "password": f"{username}-password"}
        if lifetime is not None:
            body["lifetime"] = lifetime
        response = await self.post("/api/token", json=body)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def login_cookie(self, username: str) -> str:
        """The session cookie value from ``POST /account/login``."""
        response = await self.post(
            "/account/login", data={"username": username, "password": f"{username}-password"}
        )
        assert response.status_code == 303, response.text
        set_cookie = response.headers["set-cookie"]
        name, _, rest = set_cookie.partition("=")
        assert name == "triohub_demo", set_cookie
        return rest.split(";", 1)[0]

    def close(self) -> None:
        self.client.close()


# -- the hub protocol over a raw WebSocket (trio-websocket) -----------------------------

HANDSHAKE = '{"protocol":"json","version":1}\x1e'


def records(data: str | bytes) -> list[dict[str, Any]]:
    """The JSON records of a chunk (each ends with 0x1E)."""
    text = data.decode() if isinstance(data, bytes) else data
    assert text.endswith("\x1e"), f"incomplete records: {text!r}"
    return [json.loads(part) for part in text[:-1].split("\x1e")]


def invocation(invocation_id: str | None, target: str, *arguments: Any) -> str:
    message: dict[str, Any] = {"type": 1, "target": target, "arguments": list(arguments)}
    if invocation_id is not None:
        message["invocationId"] = invocation_id
    return json.dumps(message) + "\x1e"


class HubSocket:
    """A JSON hub connection on a trio-websocket ``WebSocketConnection``."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._buffer: list[dict[str, Any]] = []
        self._ids = 0

    async def handshake(self) -> None:
        await self.ws.send_message(HANDSHAKE)
        assert await self.ws.get_message() == "{}\x1e"

    async def receive(self) -> dict[str, Any]:
        """The next record other than a Ping."""
        while True:
            while self._buffer:
                record = self._buffer.pop(0)
                if record.get("type") != 6:
                    return record
            self._buffer.extend(records(await self.ws.get_message()))

    async def invoke(self, target: str, *arguments: Any) -> dict[str, Any]:
        """Invoke and return the Completion record (other records are dropped)."""
        self._ids += 1
        invocation_id = str(self._ids)
        await self.ws.send_message(invocation(invocation_id, target, *arguments))
        while True:
            record = await self.receive()
            if record.get("type") == 3 and record.get("invocationId") == invocation_id:
                return record
