"""One connection of one hub: the bridge between the supervisor (bytes,
timers, tasks) and the hub (protocol, invocations, router)."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ..actors.kit import ActorStopped
from ..actors.routing import ConnectionEntry
from ..actors.supervisor import CloseConnection, CloseReason, Control, HandshakeStep
from ..auth.principal import Principal
from ..auth.user_id import resolve_user_id
from ..protocol import (
    NEED_DATA,
    Ack,
    CancelInvocation,
    Close,
    Completion,
    ConnectionState,
    HandshakeCompleted,
    HandshakeFailed,
    HubConnection,
    HubMessage,
    HubProtocol,
    Invocation,
    Ping,
    RemoteProtocolError,
    Sequence,
    StreamInvocation,
    StreamItem,
    TransferFormat,
)
from ..protocol.resumable import ResumableStream
from .client_results import ClientResults, in_on_connected
from .clients import GroupManager, HubCallerClients
from .closing import CLEAN, DETAILED, close_record
from .context import HubCallerContext
from .dispatcher import Dispatcher
from .filters import compose_lifetime
from .hub import Hub, HubError
from .logs import clip

if TYPE_CHECKING:
    from ..observability import ConnectionMetrics
    from .server import HubRegistration

__all__ = ["HubSession", "Resumable"]

log = logging.getLogger("triohub.connection")

_OPEN = ConnectionState.OPEN
"""Checked before every send; a global is cheaper than an enum member lookup."""
_CALLS = (Invocation, StreamInvocation)
"""A tuple, not ``Invocation | StreamInvocation``: that builds a union per message."""


class Resumable(Protocol):
    """The transport of a connection that negotiate granted stateful reconnect
    (``transports.resumable.ResumableLink``), as the session drives it."""

    def begin(
        self,
        stream: ResumableStream,
        *,
        on_lost: Callable[[], None],
        on_resumed: Callable[[float | None], None],
    ) -> None: ...

    def received(self, message: HubMessage) -> bool: ...

    async def run_acks(self) -> None: ...


class HubSession:
    """Implements ``triohub.actors.supervisor.Session`` for one hub connection."""

    def __init__(
        self,
        registration: HubRegistration,
        connection_id: str,
        principal: Principal,
        transfer_formats: Collection[TransferFormat],
        on_protocol: Callable[[HubProtocol], None] | None = None,
        *,
        transport_name: str = "unknown",
        resumable: Resumable | None = None,
    ) -> None:
        self.registration = registration
        self.connection_id = connection_id
        self.principal = principal
        self.transport_name = transport_name
        """``WebSockets``, ``ServerSentEvents``, ``LongPolling`` (for log lines)."""
        self._opened_at = trio.current_time()
        self._protocol = HubConnection(
            registration.protocols,
            transfer_formats,
            registration.options.max_message_size,
            stateful_reconnect=resumable is not None,
        )
        self._link = resumable
        self._stateful = False  # the handshake turned stateful reconnect on
        self._on_protocol = on_protocol
        self._control: Control | None = None
        self._dispatcher: Dispatcher | None = None
        self._context: HubCallerContext | None = None
        self._registered = False
        self._sent = False  # sends made since the last settle()
        self._connected = False  # on_connected ran without raising
        self._results = ClientResults(
            connection_id, registration.options.max_pending_client_results
        )
        self.guarded_groups: set[str] = set()
        """Groups with a policy this connection joined (checked again when
        its principal changes)."""
        self.expiry = trio.CancelScope()
        """Enforces the credential's expiry (``close_on_authentication_expiration``):
        the server sets its deadline at the handshake and at each refresh."""
        self._metrics: ConnectionMetrics | None = None
        """Set once the connection counts as open (``opened``)."""

    @property
    def context(self) -> HubCallerContext | None:
        return self._context

    @property
    def protocol_name(self) -> str:
        """The hub protocol this connection speaks (after the handshake)."""
        return self._protocol.protocol.name

    @property
    def registered(self) -> bool:
        """Past the handshake and known to the router."""
        return self._registered

    # -- handshake --------------------------------------------------------------

    def receive_handshake(self, data: bytes) -> HandshakeStep | None:
        self._protocol.receive_data(data)
        event = self._protocol.next_event()
        if isinstance(event, HandshakeCompleted):
            self._stateful = event.stateful_reconnect
            if self._on_protocol is not None:
                # WebSockets: the reply already travels in the protocol's frame type.
                self._on_protocol(event.protocol)
            return HandshakeStep(reply=event.reply, ok=True)
        if isinstance(event, HandshakeFailed):
            log.info(
                "connection %s: handshake failed: %s%s",
                self.connection_id,
                event.error,
                f" ({clip(event.detail)})" if event.detail else "",
            )
            return HandshakeStep(reply=event.reply, ok=False)
        return None

    def handshake_timeout_reply(self) -> bytes:
        return self._protocol.close()

    # -- open -------------------------------------------------------------------

    async def opened(self, control: Control) -> None:
        registration = self.registration
        self._control = control
        link = self._link
        if link is not None:
            if self._stateful:
                # After the handshake reply went out: from here on every record
                # is sequenced; before the writer and the router see any.
                stream = ResumableStream(
                    self._protocol.protocol,
                    buffer_size=registration.options.stateful_reconnect_buffer_size,
                )
                link.begin(stream, on_lost=self._transport_lost, on_resumed=self._resumed)
                control.nursery.start_soon(link.run_acks)
            else:
                self._link = link = None
        user_id = await resolve_user_id(registration.user_id_provider, self.principal)
        if registration.authorizer.is_banned(user_id):
            # Banned after this connection's request was checked: HubServer.ban
            # could not see it (no user id yet), so it ends here, told what
            # HubServer.ban tells the others (nothing but not to come back).
            log.info("connection %s: user %s is banned", self.connection_id, user_id)
            raise CloseConnection(CloseReason.ABORTED)
        if registration.authorizer.revoked(self.principal, user_id) is not None:
            # Revoked after this connection's request was checked (as a ban above).
            raise CloseConnection(CloseReason.REVOKED)
        self._context = HubCallerContext(
            self.connection_id,
            self.principal,
            user_id,
            abort=lambda: control.close(CloseReason.ABORTED),
        )
        self._clients = HubCallerClients(
            registration.lifetime, self.connection_id, mark=self._mark_sent
        )
        self._groups = GroupManager(registration.lifetime)
        context = self._context
        self._dispatcher = Dispatcher(
            registration,
            control,
            self._make_hub,
            self._send,
            functools.partial(
                registration.authorizer.authorize_invocation, registration.hub_class, context
            ),
            context,
            self.settle,
        )
        self._registered = True
        self._opened_at = trio.current_time()
        self._metrics = registration.telemetry.metrics.connection(self.transport_name)
        self._metrics.opened()
        hub = registration.hub_class.__name__
        protocol = self._protocol.protocol.name
        log.info(
            "connection %s opened: hub=%s user=%s transport=%s protocol=%s",
            self.connection_id,
            hub,
            user_id,
            self.transport_name,
            protocol,
            extra={
                "triohub": {
                    "event": "connection.opened",
                    "connection_id": self.connection_id,
                    "hub": hub,
                    "user_id": user_id,
                    "transport": self.transport_name,
                    "protocol": protocol,
                }
            },
        )
        await registration.router.register(
            ConnectionEntry(
                connection_id=self.connection_id,
                protocol=self._protocol.protocol.name,
                outbox=control,
                close=control.close,
                user_id=user_id,
                handle=self,
            )
        )
        node = registration.node
        if node is not None:
            # Subscribed to this connection's and its user's channels before
            # on_connected: what other nodes send from now on reaches it.
            await registration.router.barrier()
            await node.ready()
        try:
            with in_on_connected():
                await self._lifetime_call(connected=True, error=None)
        except Exception as error:
            log.exception("on_connected of %s raised", registration.hub_class.__name__)
            raise CloseConnection(CloseReason.CONNECT_FAILED, str(error)) from error
        self._connected = True

    def _transport_lost(self) -> None:
        """The WebSocket dropped; the connection waits for a resume."""
        assert self._control is not None
        self._control.detached = True

    def _resumed(self, deadline: float | None) -> None:
        """A new WebSocket took over, with a fresh credential of the same user."""
        control = self._control
        assert control is not None
        # A record the old socket cut short is not continued by the new one.
        self._protocol.transport_lost()
        control.detached = False
        control.last_receive = trio.current_time()
        self.expiry.deadline = math.inf if deadline is None else deadline

    @property
    def open(self) -> bool:
        """Past the handshake and not closing."""
        control = self._control
        return (
            self._context is not None
            and control is not None
            and control.reason is None
            and not self.expiry.cancel_called
        )

    def replace_principal(self, principal: Principal, deadline: float) -> None:
        """A refreshed credential: hub code and policies see ``principal`` from
        now on, and the connection expires at ``deadline`` (Trio time) instead."""
        assert self._context is not None
        self.principal = principal
        self._context.principal = principal
        self.expiry.deadline = deadline

    async def authentication_refreshed(self) -> None:
        """The hub's ``on_authentication_refreshed`` (its errors are logged)."""
        try:
            await self._make_hub().on_authentication_refreshed()
        except Exception:
            log.exception(
                "on_authentication_refreshed of %s raised", self.registration.hub_class.__name__
            )

    def close(self, reason: CloseReason) -> None:
        """Close this connection with ``reason`` (its close record tells the client)."""
        if self._control is not None:
            self._control.close(reason)

    def outbox_depth(self) -> tuple[int, int] | None:
        """``(records, bytes)`` queued for this client; ``None`` before it opened."""
        control = self._control
        if control is None:
            return None
        return control.outbox.statistics().current_buffer_used, control.queued_bytes

    def _mark_sent(self) -> None:
        self._sent = True

    async def settle(self) -> None:
        """Wait until what hub code sent is in the recipients' outboxes.

        Called before a Completion goes out, so a caller always receives what
        its own call sent (a broadcast includes the caller) before the call's
        result, as in ASP.NET. Costs one router round trip, only after sends.
        """
        if self._sent:
            self._sent = False
            await self.registration.router.barrier()

    async def _lifetime_call(self, *, connected: bool, error: BaseException | None) -> None:
        """``on_connected`` / ``on_disconnected`` through the hub filters."""
        assert self._context is not None
        hub = self._make_hub()
        filters = self.registration.filters
        if not filters:
            if connected:
                await hub.on_connected()
            else:
                await hub.on_disconnected(error)
            return

        async def final(_: HubCallerContext) -> None:
            if connected:
                await hub.on_connected()
            else:
                await hub.on_disconnected(error)

        await compose_lifetime(filters, final, connected=connected)(self._context, error)

    def _make_hub(self) -> Hub:
        assert self._context is not None
        hub = self.registration.factory()
        hub.context = self._context
        hub.clients = self._clients
        hub.groups = self._groups
        return hub

    async def _send(self, message: HubMessage) -> None:
        """Encode and queue one message.

        Raises:
            LocalProtocolError: the payload cannot be encoded by this
                connection's protocol (the caller answers with an error).
        """
        assert self._control is not None
        if self._protocol.state is not _OPEN:
            return  # the connection closed while this was in flight
        await self._control.send(self._protocol.send(message))

    # -- receiving --------------------------------------------------------------

    async def receive(self, data: bytes) -> None:
        protocol = self._protocol
        dispatcher = self._dispatcher
        control = self._control
        assert dispatcher is not None
        assert control is not None
        link = self._link
        protocol.receive_data(data)
        while True:
            try:
                message = protocol.next_event()
                if link is not None and message is not NEED_DATA:
                    assert not isinstance(message, HandshakeCompleted | HandshakeFailed)
                    if not link.received(message):
                        continue  # an Ack, a Sequence, or a resent record seen before
            except RemoteProtocolError as error:
                # One line, no traceback: the client's mistake, and its data
                # (a whole decoded record, for MessagePack) clipped.
                text = clip(error)
                log.info("connection %s: protocol error: %s", self.connection_id, text)
                raise CloseConnection(CloseReason.PROTOCOL_ERROR, text) from None
            if message is NEED_DATA:
                return
            if isinstance(message, _CALLS):
                await dispatcher.invoke(message)
            elif isinstance(message, StreamItem):
                await dispatcher.uploads.item(message)
            elif isinstance(message, Ping):
                control.arm_client_timeout()
            elif isinstance(message, Completion):
                if not dispatcher.uploads.end(message):
                    self._results.received(message)
            elif isinstance(message, CancelInvocation):
                dispatcher.cancel(message)
            elif isinstance(message, Close):
                raise CloseConnection(CloseReason.CLIENT_CLOSED, message.error or "")
            elif isinstance(message, Ack | Sequence):
                pass  # stateful reconnect is off for this connection; nothing to do
            else:  # pragma: no cover - handshake events cannot recur
                raise CloseConnection(CloseReason.PROTOCOL_ERROR, f"unexpected {message!r}")

    # -- client results ---------------------------------------------------------

    async def invoke_client(self, method: str, args: tuple[Any, ...], *, limit: float) -> Any:
        """Call a client method and return its result (``ClientResults.invoke``)."""
        if self._control is None or self._control.reason is not None:
            raise HubError(f"Connection '{self.connection_id}' is not connected.")
        return await self._results.invoke(self._send, method, args, limit=limit)

    async def remote_result(
        self, invocation_id: str, framed: Mapping[str, bytes]
    ) -> Completion | None:
        """Forward another node's client-result request (already framed for
        each protocol) and return the client's Completion; ``None`` if the
        connection ends first."""
        if self._control is None or self._control.reason is not None:
            return None
        data = framed.get(self.protocol_name)
        if data is None:
            return Completion.with_error(invocation_id, "Unsupported protocol.")
        return await self._results.forward(self._control.send, invocation_id, data)

    # -- closing ----------------------------------------------------------------

    def ping(self) -> bytes:
        return self._protocol.protocol.encode(Ping())

    def close_record(self, reason: CloseReason) -> bytes | None:
        detail = self._control.detail if self._control is not None else ""
        record = close_record(reason, detail)
        if record is None:
            return None
        return self._protocol.close(record) or None

    async def release(self, reason: CloseReason) -> None:
        self._results.closed(reason.value)
        if self._registered:
            try:
                # The router handles commands without awaiting anything, so this
                # waits only for our turn in its mailbox, never for user code.
                await self.registration.router.unregister(self.connection_id)
            except ActorStopped:
                pass  # the whole server is going down: its registry goes with it

    async def closed(self, reason: CloseReason, opened: bool) -> None:
        if self._dispatcher is not None:
            self._dispatcher.log.flush()
        duration = trio.current_time() - self._opened_at
        if self._metrics is not None:
            self._metrics.closed(reason, duration)
        if self._context is not None:
            # The detail of an abort (what the client was told) or of the
            # client's own Close; other reasons logged theirs when they happened.
            detail = ""
            if self._control is not None and reason in DETAILED:
                detail = clip(self._control.detail, 100)
            hub = self.registration.hub_class.__name__
            log.info(
                "connection %s closed: hub=%s user=%s transport=%s after %.1f s, %s%s",
                self.connection_id,
                hub,
                self._context.user_id,
                self.transport_name,
                duration,
                reason.value,
                f" ({detail})" if detail else "",
                extra={
                    "triohub": {
                        "event": "connection.closed",
                        "connection_id": self.connection_id,
                        "hub": hub,
                        "user_id": self._context.user_id,
                        "transport": self.transport_name,
                        "duration": round(duration, 3),
                        "close_reason": reason.name.lower(),
                        "close_detail": detail,
                    }
                },
            )
        if self._connected:
            error = None if reason in CLEAN else ConnectionError(reason.value)
            try:
                await self._lifetime_call(connected=False, error=error)
            except Exception:
                log.exception("on_disconnected of %s raised", self.registration.hub_class.__name__)
