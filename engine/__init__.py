"""triohub: a Trio-native hub engine speaking the ASP.NET Core SignalR protocol.

The public API lives here; everything else is private to the package.
"""

from .auth.principal import ANONYMOUS, ClaimTypes, Principal
from .auth.user_id import (
    UserIdProvider,
    claim_user_id,
    default_user_id,
    email_user_id,
    name_user_id,
)
from .hub.binding import BindingError, hub_method, not_hub_method
from .hub.clients import ClientProxy, GroupManager, HubCallerClients, HubClients, HubContext
from .hub.context import HubCallerContext
from .hub.hub import Hub, HubError
from .hub.options import HubOptions, TransportType
from .hub.server import HubServer
from .hub.streams import ClientStream, ClientStreamError

__all__ = [
    "ANONYMOUS",
    "BindingError",
    "ClaimTypes",
    "ClientProxy",
    "ClientStream",
    "ClientStreamError",
    "GroupManager",
    "Hub",
    "HubCallerClients",
    "HubCallerContext",
    "HubClients",
    "HubContext",
    "HubError",
    "HubOptions",
    "HubServer",
    "Principal",
    "TransportType",
    "UserIdProvider",
    "claim_user_id",
    "default_user_id",
    "email_user_id",
    "hub_method",
    "name_user_id",
    "not_hub_method",
]
