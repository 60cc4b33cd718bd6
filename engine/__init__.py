"""triohub: a Trio-native hub engine speaking the ASP.NET Core SignalR protocol.

The public API lives here, the servers included (``serve_native``, ``serve_hypercorn``,
``serve_trio_websocket``, the ASGI ``SignalRApp``, ``run_until_signalled``); everything
else is private to the package. Installed, this folder (engine/) is the package
``triohub`` and actors/ is ``triohub.actors``.
"""

from .auth.authenticator import (
    AmbiguousCredentials,
    AuthenticationFailed,
    AuthenticationRefused,
    Authenticator,
    FirstOf,
)
from .auth.cookie import CookieAuthenticator
from .auth.jwks import JwksKeySource
from .auth.jwt_bearer import JwtBearerAuthenticator, JwtBearerOptions
from .auth.origin import check_form_origin
from .auth.principal import ANONYMOUS, ClaimTypes, Principal
from .auth.proxy import TrustedHeaderAuthenticator, TrustedProxies
from .auth.request import RequestInfo
from .auth.sessions import MemoryRevocationStore, RevocationStore
from .auth.throttle import SignInThrottle, ThrottleOptions
from .auth.user_id import (
    UserIdProvider,
    claim_user_id,
    default_user_id,
    email_user_id,
    name_user_id,
)
from .authorization import (
    AssertionRequirement,
    AsyncAssertionRequirement,
    AuthenticatedUserRequirement,
    AuthorizationContext,
    AuthorizationPolicy,
    ClaimRequirement,
    HubInvocationContext,
    HubRequestContext,
    PolicyRegistry,
    Requirement,
    RolesRequirement,
    UnknownPolicyError,
    allow_anonymous,
    authorize,
)
from .hub.audit import AuditRecord
from .hub.binding import BindingError, hub_method, not_hub_method
from .hub.clients import (
    ClientProxy,
    GroupManager,
    HubCallerClients,
    HubClients,
    HubContext,
    UnserializableError,
)
from .hub.context import HubCallerContext
from .hub.filters import HubFilter
from .hub.hub import Hub, HubError, LimitExceeded
from .hub.options import HubOptions, TransportType
from .hub.server import HubServer
from .hub.streams import ClientStream, ClientStreamError
from .transports.asgi import SignalRApp
from .transports.hypercorn import serve_hypercorn
from .transports.lifecycle import run_until_signalled
from .transports.listening import ListenError
from .transports.native import serve_native
from .transports.trio_websocket import serve_trio_websocket

__all__ = [
    "ANONYMOUS",
    "AmbiguousCredentials",
    "AssertionRequirement",
    "AsyncAssertionRequirement",
    "AuditRecord",
    "AuthenticatedUserRequirement",
    "AuthenticationFailed",
    "AuthenticationRefused",
    "Authenticator",
    "AuthorizationContext",
    "AuthorizationPolicy",
    "BindingError",
    "ClaimRequirement",
    "ClaimTypes",
    "ClientProxy",
    "ClientStream",
    "ClientStreamError",
    "CookieAuthenticator",
    "FirstOf",
    "GroupManager",
    "Hub",
    "HubCallerClients",
    "HubCallerContext",
    "HubClients",
    "HubContext",
    "HubError",
    "HubFilter",
    "HubInvocationContext",
    "HubOptions",
    "HubRequestContext",
    "HubServer",
    "JwksKeySource",
    "JwtBearerAuthenticator",
    "JwtBearerOptions",
    "LimitExceeded",
    "ListenError",
    "MemoryRevocationStore",
    "PolicyRegistry",
    "Principal",
    "RequestInfo",
    "Requirement",
    "RevocationStore",
    "RolesRequirement",
    "SignInThrottle",
    "SignalRApp",
    "ThrottleOptions",
    "TransportType",
    "TrustedHeaderAuthenticator",
    "TrustedProxies",
    "UnknownPolicyError",
    "UnserializableError",
    "UserIdProvider",
    "allow_anonymous",
    "authorize",
    "check_form_origin",
    "claim_user_id",
    "default_user_id",
    "email_user_id",
    "hub_method",
    "name_user_id",
    "not_hub_method",
    "run_until_signalled",
    "serve_hypercorn",
    "serve_native",
    "serve_trio_websocket",
]
