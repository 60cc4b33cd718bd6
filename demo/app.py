"""The demo application: hubs, authentication, HTTP endpoints, one ASGI app."""

from __future__ import annotations

from engine import HubOptions, HubServer, email_user_id
from engine.auth.authenticator import FirstOf
from engine.auth.cookie import CookieAuthenticator
from engine.auth.jwt_bearer import JwtBearerAuthenticator, JwtBearerOptions
from engine.transports.asgi import SignalRApp

from .chat import ChatHub, ChatState, chat_policies
from .echo import EchoHub
from .users import AUDIENCE, ISSUER, jwt_secret, session_max_age
from .web import DemoWeb


def build_app(secret: str | None = None) -> SignalRApp:
    """The whole demo. ``secret`` defaults to ``DEMO_JWT_SECRET`` (or a random one)."""
    secret = secret or jwt_secret()
    bearer = JwtBearerAuthenticator(
        JwtBearerOptions(
            algorithms=("HS256",), key=secret, issuer=ISSUER, audience=AUDIENCE, leeway=0
        )
    )
    cookies = CookieAuthenticator(secret, cookie_name="triohub_demo", max_age=session_max_age())
    state = ChatState()
    server = HubServer(authenticator=FirstOf(bearer, cookies), policies=chat_policies(state))
    server.map_hub(
        "/hubs/chat",
        ChatHub,
        factory=lambda: ChatHub(state),
        user_id_provider=email_user_id,
        options=HubOptions(close_on_authentication_expiration=True),
    )
    server.map_hub("/hubs/echo", EchoHub)
    return SignalRApp(server, fallback=DemoWeb(cookies, secret))
