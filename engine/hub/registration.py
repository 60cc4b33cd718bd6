"""``HubRegistration``: everything a server knows about one mapped hub (what the
dispatcher, the sessions and the transports read), and the default protocols."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from ..actors.router import Router
from ..actors.supervisor import SupervisorOptions
from ..auth.user_id import UserIdProvider
from ..backplane.hub import HubNode
from ..observability import MethodTelemetry, Telemetry
from ..protocol import HubProtocol, JsonHubProtocol, MessagePackHubProtocol
from .authorizer import HubAuthorizer
from .binding import BoundMethod
from .clients import _Lifetime
from .drain import Drain
from .filters import HubFilter
from .guard import Guard
from .hub import Hub
from .options import HubOptions

__all__ = ["HubRegistration", "default_protocols"]


def default_protocols() -> dict[str, HubProtocol]:
    return {"json": JsonHubProtocol(), "messagepack": MessagePackHubProtocol()}


@attrs.define(eq=False)
class HubRegistration:
    """Everything the server knows about one mapped hub."""

    path: str
    hub_class: type[Hub]
    options: HubOptions
    factory: Callable[[], Hub]
    methods: Mapping[str, BoundMethod]
    protocols: Mapping[str, HubProtocol]
    router: Router
    lifetime: _Lifetime
    user_id_provider: UserIdProvider
    authorizer: HubAuthorizer
    guard: Guard
    """The hub-level policy, applied to negotiate and every transport request."""
    filters: tuple[HubFilter, ...] = ()
    drain: Drain = attrs.Factory(Drain)
    """The server's in-flight invocations (shared by its hubs), for ``run``'s stop."""
    telemetry: Telemetry = attrs.Factory(Telemetry)
    """The server's metrics and tracer (shared by its hubs)."""
    method_telemetry: Mapping[str, MethodTelemetry] = attrs.Factory(dict)
    """Each method's prebuilt metric attributes and span name, by ``BoundMethod.name``."""
    node: HubNode | None = None
    """The hub's side of the server's backplane, if it has one."""

    def supervisor_options(self, *, keep_alive: bool = True) -> SupervisorOptions:
        options = self.options
        return SupervisorOptions(
            handshake_timeout=options.handshake_timeout,
            keep_alive_interval=options.keep_alive_interval if keep_alive else None,
            client_timeout=options.client_timeout,
            outbox_size=options.outbox_size,
            outbox_max_bytes=options.outbox_max_bytes,
            close_timeout=options.close_timeout,
            send_timeout=options.send_timeout,
        )
