"""The demo application: hubs, authentication, HTTP endpoints, one ASGI app."""

from __future__ import annotations

from collections.abc import Collection

from triohub import HubOptions, HubServer, email_user_id
from triohub.auth.authenticator import FirstOf
from triohub.auth.cookie import CookieAuthenticator
from triohub.auth.jwt_bearer import JwtBearerAuthenticator, JwtBearerOptions
from triohub.auth.proxy import TrustedProxies
from triohub.auth.sessions import RevocationStore
from triohub.auth.throttle import SignInLimiter, SignInThrottle, ThrottleOptions
from triohub.hub.context import HubCallerContext
from triohub.hub.filters import HubFilter, Lifetime
from triohub.transports.asgi import SignalRApp
from triohub.transports.cluster import derive_key

from .chat import ChatHub, ChatState, chat_policies
from .echo import EchoHub
from .observability import Prometheus
from .users import (
    AUDIENCE,
    ISSUER,
    MAX_TOKEN_LIFETIME,
    jwt_secret,
    session_max_age,
    signin_throttle,
    trusted_proxies,
)
from .web import DemoWeb


class EndedSessions(HubFilter):
    """Closes a connection whose cookie session ended between its transport
    request and its handshake.

    Sign-out revokes the session and then closes the session's live
    connections; a connection authenticated just before the revocation but
    registered just after that sweep would be missed. Its ``on_connected``
    runs after the revocation, so it asks the store once more.
    """

    def __init__(self, cookies: CookieAuthenticator) -> None:
        self.cookies = cookies

    async def on_connected(self, context: HubCallerContext, next: Lifetime) -> None:
        session = self.cookies.session_of(context.principal)
        if session is not None and await self.cookies.revocations.is_revoked(session):
            context.abort()
            return
        await next(context)


def build_app(
    secret: str | None = None,
    *,
    throttle: ThrottleOptions | None = None,
    proxies: Collection[str] | None = None,
    revocations: RevocationStore | None = None,
    redis_url: str | None = None,
    metrics: Prometheus | None = None,
    disconnect_timeout: float = 15.0,
) -> SignalRApp:
    """The whole demo.

    Args:
        secret: the JWT and cookie key; default ``DEMO_JWT_SECRET`` (or a random one).
        throttle: failed sign-in limits; default from the environment
            (``users.signin_throttle``: 5 per account, 20 per address, per 300 s).
        proxies: trusted reverse proxies; default ``DEMO_TRUSTED_PROXIES`` (none).
        revocations: where ended sessions are kept; default this process's memory
            (with ``redis_url``: Redis).
        redis_url: share the hubs and all of the demo's state (bans, history, ended
            sessions, failed sign-ins) with every node on this Redis
            (``demo/cluster.py``); default: this process only, no Redis loaded.
        metrics: where the server's metrics go, served on ``GET /metrics``; ``None``:
            no ``/metrics`` (the server still reports to OpenTelemetry's global
            provider, a no-op unless the application sets one).
        disconnect_timeout: seconds a dropped WebSocket's connection waits for the
            client to resume it (both hubs allow stateful reconnect; a page or
            client opts in with ``withStatefulReconnect()``).
    """
    secret = secret or jwt_secret()
    trusted = TrustedProxies(trusted_proxies() if proxies is None else proxies)
    bearer = JwtBearerAuthenticator(
        JwtBearerOptions(
            algorithms=("HS256",), key=secret, issuer=ISSUER, audience=AUDIENCE, leeway=0
        )
    )
    backplane = None
    state = ChatState()
    limits = throttle if throttle is not None else signin_throttle()
    limiter: SignInLimiter = SignInThrottle(limits)
    if redis_url is not None:
        # Every piece of state shared by the nodes (demo/cluster.py).
        from triohub.backplane.sessions import RedisRevocationStore
        from triohub.backplane.throttle import RedisSignInThrottle

        from .cluster import RedisBanList, RedisHistory, redis_backplane

        backplane = redis_backplane(redis_url)
        state = ChatState(RedisBanList(backplane), RedisHistory(backplane))
        limiter = RedisSignInThrottle(backplane, limits)
        if revocations is None:
            revocations = RedisRevocationStore(backplane)
    cookies = CookieAuthenticator(
        secret,
        cookie_name="triohub_demo",
        max_age=session_max_age(),
        revocations=revocations,
        proxies=trusted,
    )
    server = HubServer(
        authenticator=FirstOf(bearer, cookies),
        policies=chat_policies(state),
        filters=[EndedSessions(cookies)],
        # Revocations are kept as long as the longest credential the demo issues.
        credential_lifetime=max(session_max_age(), MAX_TOKEN_LIFETIME),
        backplane=backplane,
        # Every node shares DEMO_JWT_SECRET: connection tokens signed with a key
        # derived from it are honoured by any node (no sticky sessions).
        connection_token_key=derive_key(secret) if backplane is not None else None,
        meter_provider=None if metrics is None else metrics.provider,
    )
    state.server = server
    server.map_hub(
        "/hubs/chat",
        ChatHub,
        factory=lambda: ChatHub(state),
        user_id_provider=email_user_id,
        options=HubOptions(
            close_on_authentication_expiration=True,
            allow_authentication_refresh=True,
            allow_stateful_reconnect=True,
            disconnect_timeout=disconnect_timeout,
        ),
    )
    server.map_hub(
        "/hubs/echo",
        EchoHub,
        options=HubOptions(allow_stateful_reconnect=True, disconnect_timeout=disconnect_timeout),
    )
    signed_out = None
    if backplane is not None:
        from .cluster import SignOuts

        signed_out = SignOuts(backplane, server, cookies.session_of).announce
    web = DemoWeb(
        cookies,
        secret,
        server=server,
        throttle=limiter,
        proxies=trusted,
        metrics=None if metrics is None else metrics.text,
        bans=state.bans,
        signed_out=signed_out,
    )
    return SignalRApp(server, fallback=web)
