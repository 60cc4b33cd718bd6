"""``HubServer``: hubs mapped to paths, their router actors, and the
connections' supervision. Transports (ASGI, trio-websocket) sit on top."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import trio
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ..actors.authorization import AuthorizationActor
from ..actors.router import Router
from ..actors.routing import RouterStats
from ..actors.supervisor import CloseReason, Transport, supervise
from ..auth.authenticator import Authenticator
from ..auth.principal import ANONYMOUS, Principal
from ..auth.request import RequestInfo
from ..auth.user_id import UserIdProvider, default_user_id, resolve_user_id
from ..authorization import AuthorizationState, PolicyRegistry
from ..backplane.hub import HubNode, Link
from ..backplane.revocations import SharedRevocations
from ..observability import Telemetry
from ..protocol import HubProtocol, TransferFormat
from .audit import Auditor, AuditRecord
from .authorizer import HubAuthorizer
from .binding import bind_hub
from .clients import GroupManager, HubClients, HubContext, _Lifetime
from .credentials import Credentials
from .drain import Drain
from .filters import HubFilter
from .group_policies import GroupAdmission, GroupPolicies
from .hub import Hub
from .options import HubOptions
from .registration import HubRegistration, default_protocols
from .server_credentials import CredentialOperations
from .session import HubSession, Resumable

__all__ = ["HubRegistration", "HubServer", "default_protocols"]

log = logging.getLogger("triohub.server")

H = TypeVar("H", bound=Hub)


class HubServer(CredentialOperations):
    """Hosts hubs. Map hubs, then run it: ``await nursery.start(server.run)``.

    Bans, revocations and refreshes in place: ``server_credentials.py``.

    Args:
        options: defaults for every hub (each ``map_hub`` may override).
        user_id_provider: which user a connection belongs to (default: ``sub``).
        protocols: hub protocols by name (default: JSON and MessagePack).
        authenticator: how requests are authenticated (``JwtBearerAuthenticator``,
            ``CookieAuthenticator``, ``FirstOf(...)``); ``None``: everyone is anonymous.
        policies: named authorization policies and handlers for ``@authorize``.
        authorization_timeout: seconds a policy evaluation with an ``async def``
            handler may take before it denies (fail closed); plain handlers are
            called in place and have none.
        audit_hook: called with every authorization decision (``AuditRecord``).
        filters: hub filters around every hub's invocations and lifetime events.
        clock: wall-clock time, used to turn credential expiry (Unix time)
            into a Trio deadline.
        credential_lifetime: the longest lifetime (seconds) of a credential
            the authenticator accepts; a revocation is remembered this long
            after the newest credential it can match was issued.
        meter_provider: where the server's metrics go (``None``: OpenTelemetry's
            global provider, a no-op until an SDK is configured).
        tracer_provider: where its invocation spans go (``None``: the global one).
        trace_sample_ratio: head sampling: the share of invocations without a
            ``traceparent`` that get a span at all, decided before the SDK is asked
            (``observability/tracing.py``); 1.0: every one, the SDK's sampler decides.
        backplane: share the hubs with other processes (``RedisBackplane(url)``
            from ``triohub.backplane.redis``); ``None``: this process only.
        connection_token_key: with a backplane, the key every node shares to
            sign and verify connection tokens (``transports.cluster.derive_key``),
            so a negotiate answered by one node is honoured by any other (no
            sticky sessions); without it each node knows only its own tokens.
    """

    def __init__(
        self,
        *,
        options: HubOptions | None = None,
        user_id_provider: UserIdProvider = default_user_id,
        protocols: Mapping[str, HubProtocol] | None = None,
        authenticator: Authenticator | None = None,
        policies: PolicyRegistry | None = None,
        authorization_timeout: float = 5.0,
        audit_hook: Callable[[AuditRecord], None] | None = None,
        filters: Sequence[HubFilter] = (),
        clock: Callable[[], float] = time.time,
        credential_lifetime: float = 24 * 3600.0,
        backplane: Link | None = None,
        connection_token_key: bytes | None = None,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        trace_sample_ratio: float = 1.0,
    ) -> None:
        self.options = options or HubOptions()
        self.backplane = backplane
        self.connection_token_key = connection_token_key if backplane is not None else None
        self._prefixes: set[str] = set()
        self.telemetry = Telemetry(meter_provider, tracer_provider, trace_sample_ratio)
        instrument = getattr(backplane, "instrument", None)
        if instrument is not None:  # RedisBackplane; a Link need not be instrumented
            instrument(self.telemetry.metrics)
        self.authenticator = authenticator
        self.policies = policies if policies is not None else PolicyRegistry()
        self.filters = tuple(filters)
        self._auditor = Auditor(audit_hook)
        self._authorization = AuthorizationActor(AuthorizationState())
        """The single writer of the authorization state (bans, revocations)."""
        self.authorizer = HubAuthorizer(
            self.policies,
            self._auditor,
            self._authorization,
            timeout=authorization_timeout,
            clock=clock,
        )
        self.user_id_provider = user_id_provider
        self.protocols = dict(protocols) if protocols is not None else default_protocols()
        self._clock = clock
        self._hubs: dict[str, HubRegistration] = {}
        self._started = False
        self._connections: trio.Nursery | None = None
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._live = 0
        self._scopes: dict[trio.CancelScope, HubSession] = {}
        self._sessions: dict[str, HubSession] = {}
        """The same connections, by connection id."""
        self.credentials = Credentials(
            self._authorization,
            self._sessions,
            check_running=self._check_running,
            clock=clock,
            credential_lifetime=credential_lifetime,
        )
        """Bans, revocations and refreshes."""
        if backplane is not None:
            self.credentials.shared = SharedRevocations(
                backplane, self.credentials.put_in_force, clock=clock
            )
        self._drain = Drain()
        self._idle = trio.Event()
        self._idle.set()
        self.telemetry.metrics.observe_outbox(self._outbox_depths)
        self.telemetry.metrics.observe_authorization(self._auditor.decisions)

    # -- configuration ----------------------------------------------------------

    def map_hub(
        self,
        path: str,
        hub_class: type[H],
        *,
        options: HubOptions | None = None,
        factory: Callable[[], H] | None = None,
        user_id_provider: UserIdProvider | None = None,
        filters: Sequence[HubFilter] = (),
        channel_prefix: str | None = None,
        group_policies: Mapping[str, str] | None = None,
    ) -> HubRegistration:
        """Serve ``hub_class`` at ``path`` (``"/hubs/chat"``).

        ``channel_prefix`` names the hub's backplane channels (default: the
        class's ``module.QualifiedName``, as ASP.NET uses its type's full name);
        every process serving or sending to the hub must use the same one.
        ``group_policies`` maps a group name (or a ``prefix*``) to a policy
        name: only connections that meet the policy may be added to those
        groups (``group_policies.py``).

        Raises:
            BindingError: the hub's methods cannot be bound (said why).
            UnknownPolicyError: an ``@authorize`` names a policy not registered.
            ValueError: a bad path, a path mapped twice, or the server is running.
        """
        if self._started:
            raise ValueError("map hubs before starting the server")
        if not path.startswith("/") or (path.endswith("/") and path != "/"):
            raise ValueError(f"hub path must start with '/' and not end with one, got {path!r}")
        if path in self._hubs:
            raise ValueError(f"a hub is already mapped at {path!r}")
        if not (isinstance(hub_class, type) and issubclass(hub_class, Hub)):
            raise TypeError(f"{hub_class!r} is not a Hub subclass")
        hub_options = options or self.options
        node: HubNode | None = None
        if self.backplane is not None:
            prefix = channel_prefix or f"{hub_class.__module__}.{hub_class.__qualname__}"
            if prefix in self._prefixes:
                raise ValueError(f"channel prefix {prefix!r} is used twice; pass channel_prefix")
            self._prefixes.add(prefix)
            node = HubNode(
                self.backplane,
                prefix,
                self.protocols,
                result_timeout=hub_options.client_result_timeout,
            )
        router = Router(
            mailbox_size=max(1024, hub_options.outbox_size),
            max_groups_per_connection=hub_options.max_groups_per_connection,
            backplane=node,
        )
        guarded = GroupPolicies(
            {
                pattern: self.authorizer.group_guard(hub_class, pattern, policy)
                for pattern, policy in (group_policies or {}).items()
            }
        )
        admission = (
            GroupAdmission(hub_class, guarded, self.authorizer, self._sessions, router)
            if guarded
            else None
        )
        lifetime = _Lifetime(
            router,
            self.protocols,
            hub_options.client_result_timeout,
            max_group_name_length=hub_options.max_group_name_length,
            max_groups_per_connection=hub_options.max_groups_per_connection,
            node=node,
            admission=admission,
            recipient_filter=functools.partial(self.authorizer.recipient_filter, hub_class),
        )
        methods = bind_hub(hub_class, self.authorizer.method_guard)
        registration = HubRegistration(
            path=path,
            hub_class=hub_class,
            options=hub_options,
            factory=factory or hub_class,
            methods=methods,
            protocols=self.protocols,
            router=router,
            lifetime=lifetime,
            user_id_provider=user_id_provider or self.user_id_provider,
            authorizer=self.authorizer,
            guard=self.authorizer.hub_guard(hub_class),
            filters=(*self.filters, *filters),
            drain=self._drain,
            telemetry=self.telemetry,
            method_telemetry={
                bound.name: self.telemetry.method(hub_class.__name__, bound.wire_name)
                for bound in methods.values()
            },
            node=node,
        )
        self._hubs[path] = registration
        return registration

    @property
    def hubs(self) -> Mapping[str, HubRegistration]:
        return self._hubs

    def hub_context(self, hub: type[Hub] | str) -> HubContext:
        """Send to a hub's clients from outside it (ASP.NET's ``IHubContext``)."""
        registration = self._find(hub)
        return HubContext(
            clients=HubClients(registration.lifetime), groups=GroupManager(registration.lifetime)
        )

    def _find(self, hub: type[Hub] | str) -> HubRegistration:
        if isinstance(hub, str):
            if hub in self._hubs:
                return self._hubs[hub]
        else:
            found = [r for r in self._hubs.values() if r.hub_class is hub]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise ValueError(f"{hub.__name__} is mapped at several paths; name the path")
        raise KeyError(f"no hub {hub!r} is mapped")

    async def stats(self, hub: type[Hub] | str) -> RouterStats:
        return await self._find(hub).router.stats()

    @property
    def live_connections(self) -> int:
        return self._live

    def _outbox_depths(self) -> list[tuple[int, int]]:
        """``(records, bytes)`` queued per live connection (read by the metrics)."""
        return [
            depth for session in list(self._scopes.values()) if (depth := session.outbox_depth())
        ]

    async def wait_idle(self) -> None:
        """Returns once no connection is live (at once when none is): every
        connection has run its close, hooks included, to the end."""
        while self._live:
            await self._idle.wait()

    # -- running ----------------------------------------------------------------

    async def run(
        self,
        *,
        shutdown_grace: float = 5.0,
        task_status: trio.TaskStatus[HubServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the hubs' actors and connections until ``stop()`` or cancellation.

        On ``stop()``, a drain of at most ``shutdown_grace`` seconds:

        1. no new connection is taken; those still in their handshake end;
        2. invocations and streams already running may finish and send their
           Completion; new ones are answered with an error Completion
           (``Failed to invoke 'X' because the server is shutting down.``),
           while upload items, cancels and client results still flow;
        3. once nothing is in flight (or the grace is over), every connection
           is sent the Close record that allows reconnecting and closes;
        4. what is left at the end of the grace is cancelled (its closing
           steps still run, shielded, each within ``close_timeout``).
        """
        if self._started:
            raise RuntimeError("this HubServer is already running")
        self._started = True
        self.telemetry.tracer.resolve()  # a global provider set after __init__ counts
        try:
            async with trio.open_nursery() as actors:
                await actors.start(self._authorization.run)
                if self.backplane is not None:
                    await actors.start(self.backplane.run)
                if self.credentials.shared is not None:
                    await actors.start(self.credentials.shared.run)  # loads them first
                for registration in self._hubs.values():
                    await actors.start(registration.router.run)
                async with trio.open_nursery() as connections:
                    self._connections = connections
                    task_status.started(self)
                    await self._stop.wait()
                    await trio.lowlevel.checkpoint_if_cancelled()  # stop() racing a cancel
                    deadline = trio.current_time() + shutdown_grace
                    self._drain.start()
                    # Connections still in their handshake are not registered:
                    # they have nothing to finish, so they end now.
                    for scope, session in list(self._scopes.items()):
                        if not session.registered:
                            scope.cancel()
                    with trio.move_on_at(deadline):
                        await self._drain.wait_idle()
                    for registration in self._hubs.values():
                        await registration.router.close_all(CloseReason.SHUTDOWN)
                    with trio.move_on_at(deadline):
                        await self._idle.wait()
                    # Past the grace: end every connection, wherever its task
                    # runs (ASGI and WebSocket handlers call connect() from their
                    # own tasks), and let each unregister while the actors live.
                    for scope in list(self._scopes):
                        scope.cancel()
                    connections.cancel_scope.cancel()
                with trio.move_on_after(self.options.close_timeout):
                    await self._idle.wait()
                actors.cancel_scope.cancel()
        finally:
            self._connections = None
            self._stopped.set()

    async def wait_stopped(self) -> None:
        """Returns once ``run`` has ended."""
        await self._stopped.wait()

    def stop(self) -> None:
        """Begin a graceful shutdown of ``run``."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._connections is not None

    @property
    def accepting(self) -> bool:
        """Running and not stopping: a new connection would be served."""
        return self._connections is not None and not self._stop.is_set()

    async def authorize_hub(
        self, registration: HubRegistration, principal: Principal, request: RequestInfo
    ) -> bool:
        """The hub-level policy (``@authorize`` on the hub class) for one request."""
        guard = registration.guard
        if guard.open:
            return True
        # Audited under the same user id as the connection's method checks.
        user_id = await resolve_user_id(registration.user_id_provider, principal)
        return await self.authorizer.authorize_request(
            registration.hub_class, registration.path, guard, principal, request, user_id=user_id
        )

    def _check_running(self) -> None:
        # Changes are applied by the authorization actor, which runs with the server.
        if not self.running:
            raise RuntimeError(
                "the HubServer is not running; start it with nursery.start(server.run)"
            )

    async def connect(
        self,
        registration: HubRegistration,
        transport: Transport,
        *,
        connection_id: str,
        principal: Principal = ANONYMOUS,
        transfer_formats: Collection[TransferFormat] = (TransferFormat.TEXT, TransferFormat.BINARY),
        keep_alive: bool = True,
        on_protocol: Callable[[HubProtocol], None] | None = None,
        resumable: Resumable | None = None,
    ) -> CloseReason:
        """Run one connection in the calling task until it ends.

        The principal is fixed here, until a refresh replaces it
        (``refresh_authentication``). ``resumable``: ``transport`` is that
        link, and negotiate granted stateful reconnect (the handshake decides
        whether it is used).
        """
        if not self.running:
            raise RuntimeError(
                "the HubServer is not running; start it with nursery.start(server.run)"
            )
        if self._stop.is_set():
            with trio.move_on_after(self.options.close_timeout):
                await transport.aclose()  # shutting down: no new connections
            return CloseReason.SHUTDOWN
        session = HubSession(
            registration,
            connection_id,
            principal,
            transfer_formats,
            on_protocol,
            transport_name=getattr(transport, "name", type(transport).__name__),
            resumable=resumable,
        )
        deadline = self.credentials.deadline_for(principal, registration.options)
        if deadline is not None:
            session.expiry.deadline = deadline
        scope = trio.CancelScope()
        self._scopes[scope] = session
        self._sessions[connection_id] = session
        self._live += 1
        self._idle = trio.Event() if self._live == 1 else self._idle
        try:
            with scope:
                return await supervise(
                    connection_id,
                    transport,
                    session,
                    registration.supervisor_options(keep_alive=keep_alive),
                    expiry=session.expiry,
                )
            return CloseReason.SHUTDOWN  # cancelled by run() after the grace
        finally:
            self._scopes.pop(scope, None)
            if self._sessions.get(connection_id) is session:
                del self._sessions[connection_id]
            self._live -= 1
            if self._live == 0:
                self._idle.set()

    def wall_time(self) -> float:
        """Unix time by the server's clock."""
        return self._clock()

    def spawn(self, async_fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Start a task in the server's connection nursery (HTTP transports,
        whose connection outlives any single request)."""
        if self._connections is None:
            raise RuntimeError("the HubServer is not running")
        self._connections.start_soon(async_fn, *args)

    async def abort_connections(self, predicate: Callable[[Principal], bool]) -> int:
        """Close every live connection whose principal matches ``predicate``, on
        every hub (sign-out, a revoked session, a disabled account).

        Connections past their handshake get ``{"type":7}`` without
        ``allowReconnect`` (as ``clients.user(...).abort()``); those still in
        their handshake are cancelled (they have been told nothing yet).

        Returns:
            how many connections matched.
        """
        await trio.lowlevel.checkpoint()
        matched: dict[HubRegistration, list[str]] = {}
        count = 0
        for scope, session in list(self._scopes.items()):
            if not predicate(session.principal):
                continue
            count += 1
            if session.registered:
                matched.setdefault(session.registration, []).append(session.connection_id)
            else:
                scope.cancel()
        for registration, connection_ids in matched.items():
            await HubClients(registration.lifetime).clients(connection_ids).abort()
        return count
