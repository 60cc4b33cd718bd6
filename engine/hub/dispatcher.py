"""Runs the invocations of one connection: plain methods, server-to-client
streams, client-to-server (upload) streams, cancellation, errors.

Semantics follow ASP.NET Core's ``DefaultHubDispatcher`` (``signalr-protocol.md``
sections 4.3 and 9): exact error texts, nothing sent back for a call without an
invocation id, at most ``max_parallel_invocations`` plain invocations at once
(the reader waits for a slot, which back-pressures the client), streams in the
background, and every task in the connection's nursery so that nothing
outlives the connection.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ..actors.supervisor import CloseReason, Control
from ..authorization.context import HubInvocationContext
from ..observability import MethodTelemetry
from ..observability.tracing import Span, activate, deactivate
from ..protocol import (
    CancelInvocation,
    Completion,
    HubMessage,
    Invocation,
    LocalProtocolError,
    StreamInvocation,
    StreamItem,
    Texts,
)
from .arguments import bind_arguments, call_arguments, wrong_kind
from .binding import BoundMethod
from .context import HubCallerContext
from .filters import compose_invoke
from .hub import Hub, HubError, LimitExceeded, Unauthorized
from .logs import ConnectionLog, clip
from .runners import Runners
from .streams import ClientStream, ClientStreamError, Uploads

if TYPE_CHECKING:
    from .server import HubRegistration

__all__ = ["Dispatcher", "InvocationAuthorizer"]

log = logging.getLogger("triohub.hub")

InvocationAuthorizer = Callable[[BoundMethod, str, tuple[Any, ...]], Awaitable[bool]]
"""``await authorize(method, target as called, arguments)``: whether the call is
allowed; supplied by the session (``HubAuthorizer.authorize_invocation``)."""


class Dispatcher:
    """Invocation handling for one connection (owned by its session)."""

    def __init__(
        self,
        registration: HubRegistration,
        control: Control,
        make_hub: Callable[[], Hub],
        send: Callable[[HubMessage], Awaitable[None]],
        authorize: InvocationAuthorizer | None,
        caller: HubCallerContext,
        settle: Callable[[], Awaitable[None]],
    ) -> None:
        options = registration.options
        self._settle = settle
        self._hub_class = registration.hub_class
        self._filters = registration.filters
        self._caller = caller
        self._methods = registration.methods
        self._telemetry = registration.method_telemetry
        self._tracer = registration.telemetry.tracer
        self._control = control
        self._make_hub = make_hub
        self._send = send
        self._authorize = authorize
        self._detailed = options.enable_detailed_errors
        self._limiter = trio.Semaphore(options.max_parallel_invocations)
        self._runners = Runners(
            control.nursery, options.max_parallel_invocations, self._run_plain, self._abandon
        )
        self._drain = registration.drain
        self._streams: dict[str, trio.CancelScope] = {}
        self._open_streams = 0  # server streams + upload streams (max_streams)
        self._max_streams = options.max_streams
        self._max_refusals = options.max_refusals
        self._refusal_window = options.refusal_window
        self._refusals = 0
        self._refusals_since = -math.inf
        self.log = ConnectionLog(log, caller.connection_id)
        """Lines about what this client did: clipped, rate limited."""
        self.uploads = Uploads(options.stream_buffer_capacity, self.log)
        """The client-to-server streams (the session feeds them)."""

    # -- incoming messages ----------------------------------------------------

    async def invoke(self, message: Invocation | StreamInvocation) -> None:
        streaming = isinstance(message, StreamInvocation)
        target = message.target
        reply_id = message.invocation_id or None
        drain = self._drain
        if drain.draining():
            # The server is stopping: what runs may finish, nothing new starts.
            await self._fail(reply_id, Texts.shutting_down(target))
            return
        method = self._methods.get(target.lower())
        if method is None:
            log.debug("unknown hub method %r", clip(target))
            await self._fail(reply_id, Texts.method_does_not_exist(target))
            return
        telemetry = self._telemetry[method.name]
        arguments = bind_arguments(method, message, self.log, self._with_detail)
        if isinstance(arguments, str):
            telemetry.metrics.count("error")
            await self._fail(reply_id, arguments)
            return
        # None without an OpenTelemetry SDK; else its span, recording or not.
        span = self._tracer.start(telemetry.span, message.headers)
        if method.simple and not streaming and not message.stream_ids:
            # The common case: the policy is checked inside the invocation,
            # under the parallel limit, as the reference does, so a slow policy
            # never holds back this connection's reader (pings, cancels, others).
            if not self._take_slot():
                await self._limiter.acquire()
            if drain.draining():  # the stop began while we waited for the slot
                self._limiter.release()
                telemetry.finish(span, "error", "ShuttingDown")
                await self._fail(reply_id, Texts.shutting_down(target))
                return
            drain.begin()
            self._runners.start(method, target, reply_id, arguments, [], True, telemetry, span)
            return
        if not await self._allowed(method, target, arguments, span):
            telemetry.finish(span, "denied", "Unauthorized")
            await self._fail(reply_id, Texts.unauthorized(target))
            return
        wrong = wrong_kind(method, target, message, streaming)
        if wrong is not None:
            telemetry.finish(span, "error", "InvalidDataException")
            await self._fail(reply_id, wrong)
            return
        if streaming and reply_id in self._streams:
            telemetry.finish(span, "error", "InvalidDataException")
            await self._fail(reply_id, Texts.invocation_id_in_use(reply_id))
            return
        opening = streaming + len(message.stream_ids)
        if self._open_streams + opening > self._max_streams:
            telemetry.finish(span, "error", "LimitExceeded")
            await self._fail(reply_id, Texts.too_many_streams(target, self._max_streams))
            # After the answer: the refusal that closes the connection is answered too.
            self.refused(f"{target!r} refused: {self._open_streams} streams open")
            return
        self._open_streams += opening
        if streaming:
            assert reply_id is not None  # StreamInvocation requires it
            scope = trio.CancelScope()
            self._streams[reply_id] = scope
            uploads = self.uploads.open(message.stream_ids, method.stream_coercers)
            drain.begin()
            self._control.nursery.start_soon(
                self._run_stream,
                method,
                target,
                reply_id,
                arguments,
                uploads,
                scope,
                telemetry,
                span,
            )
            return
        uploads = self.uploads.open(message.stream_ids, method.stream_coercers)
        # Like the reference, methods fed by client streams stay outside the
        # limit: the reader must go on to deliver their items.
        if not uploads and not self._take_slot():
            await self._limiter.acquire()
        drain.begin()
        self._control.nursery.start_soon(
            self._run_plain, method, target, reply_id, arguments, uploads, False, telemetry, span
        )

    def _take_slot(self) -> bool:
        """Take an invocation slot if one is free; ``False`` when the client is
        at its limit (then wait in ``self._limiter.acquire()``).

        No checkpoint of its own: this runs for every invocation, and the
        reader has just passed one for this record (every transport's receive
        is one), so a cancelled reader has already stopped (benchmarks/).
        """
        try:
            self._limiter.acquire_nowait()
        except trio.WouldBlock:
            return False
        return True

    async def _allowed(
        self, method: BoundMethod, target: str, arguments: tuple[Any, ...], span: Span | None
    ) -> bool:
        if method.guard.policy is None or self._authorize is None:
            return True
        if span is None:
            return await self._authorize(method, target, arguments)
        child = self._tracer.authorization(span, method.guard.label)
        try:
            allowed = await self._authorize(method, target, arguments)
            if child.is_recording():
                child.set_attribute("triohub.outcome", "allowed" if allowed else "denied")
            return allowed
        finally:
            child.end()

    def cancel(self, message: CancelInvocation) -> None:
        scope = self._streams.get(message.invocation_id)
        if scope is not None:
            scope.cancel()
        # Unknown ids are ignored, as the reference does.

    # -- running --------------------------------------------------------------

    async def _run_plain(
        self,
        method: BoundMethod,
        target: str,
        reply_id: str | None,
        arguments: tuple[Any, ...],
        uploads: list[ClientStream[Any]],
        authorize: bool,
        telemetry: MethodTelemetry,
        span: Span | None,
    ) -> None:
        completion: Completion | None = None
        refusal: str | None = None
        outcome, error_type = "cancelled", "Cancelled"  # unless it ends otherwise
        token = None if span is None else activate(span)
        try:
            if authorize and not await self._allowed(method, target, arguments, span):
                outcome, error_type = "denied", "Unauthorized"
                completion = self._error_completion(reply_id, Texts.unauthorized(target))
                return
            hub = self._make_hub()
            result = await self._call(method, hub, target, arguments, uploads, streaming=False)
        except Unauthorized as error:
            # A guarded group refused the connection: as a denied method.
            self.log.info("%s refused: %s", method.name, clip(error))
            completion = self._error_completion(reply_id, Texts.unauthorized(target))
        except HubError as error:
            outcome, error_type = "error", "HubException"
            self.log.info("%s failed: HubException: %s", method.name, clip(error))
            if isinstance(error, LimitExceeded):
                refusal = f"{target!r} raised: {error}"
            completion = self._error_completion(reply_id, Texts.hub_exception(target, str(error)))
        except ClientStreamError as error:
            outcome, error_type = "error", type(error).__name__
            self.log.info("%s failed: its upload stream ended with: %s", method.name, clip(error))
            completion = self._error_completion(
                reply_id,
                self._with_detail(Texts.unexpected_error(target), type(error).__name__, str(error)),
            )
        except Exception as error:
            outcome, error_type = "error", type(error).__name__
            log.exception("hub method %r raised", method.name)
            completion = self._error_completion(
                reply_id,
                self._with_detail(Texts.unexpected_error(target), type(error).__name__, str(error)),
            )
        else:
            outcome = "ok"
            if reply_id is not None:
                completion = Completion.with_result(reply_id, result)
        finally:
            if token is not None:
                deactivate(token)
            telemetry.finish(span, outcome, error_type)
            if uploads:
                self.uploads.close(uploads)
                self._open_streams -= len(uploads)
            try:
                if completion is not None:
                    # Under the slot: a client that does not read its results
                    # stops getting new calls started (the send waits for room).
                    await self._send_completion(completion, target)
            finally:
                self._drain.end()
                if not uploads:
                    self._limiter.release()
                if refusal is not None:
                    self.refused(refusal)  # after the answer, as above

    def _abandon(self, *plain: Any) -> None:
        """Settles a plain invocation the connection ended before it started
        (``plain``: the arguments ``_run_plain`` would have been called with)."""
        *_, telemetry, span = plain
        telemetry.finish(span, "cancelled", "Cancelled")
        self._drain.end()
        self._limiter.release()

    async def _run_stream(
        self,
        method: BoundMethod,
        target: str,
        reply_id: str,
        arguments: tuple[Any, ...],
        uploads: list[ClientStream[Any]],
        scope: trio.CancelScope,
        telemetry: MethodTelemetry,
        span: Span | None,
    ) -> None:
        error_type: str | None = "Cancelled"
        token = None if span is None else activate(span)
        try:
            error_type = await self._stream(method, target, reply_id, arguments, uploads, scope)
        finally:
            if token is not None:
                deactivate(token)
            if error_type is None:
                outcome = "cancelled" if scope.cancelled_caught else "ok"
            else:
                outcome = "cancelled" if error_type == "Cancelled" else "error"
            telemetry.finish(span, outcome, error_type)
            self._drain.end()

    async def _stream(
        self,
        method: BoundMethod,
        target: str,
        reply_id: str,
        arguments: tuple[Any, ...],
        uploads: list[ClientStream[Any]],
        scope: trio.CancelScope,
    ) -> str | None:
        """Runs the stream and sends its Completion; returns its error type, if it failed."""
        error_text: str | None = None
        error_type: str | None = None
        refusal: str | None = None
        try:
            with scope:
                hub = self._make_hub()
                try:
                    generator = await self._call(
                        method, hub, target, arguments, uploads, streaming=True
                    )
                except HubError as error:
                    # Refused before streaming began (by a filter): the
                    # reference answers with the invocation error texts.
                    self.log.info("%s failed: HubException: %s", method.name, clip(error))
                    if isinstance(error, LimitExceeded):
                        refusal = f"{target!r} raised: {error}"
                    error_text = Texts.hub_exception(target, str(error))
                    error_type = "HubException"
                except Exception as error:
                    log.exception("starting the stream of %r raised", method.name)
                    error_type = type(error).__name__
                    error_text = self._with_detail(
                        Texts.unexpected_error(target), type(error).__name__, str(error)
                    )
                else:
                    try:
                        async for item in generator:
                            await self._send(StreamItem(reply_id, item))
                    finally:
                        # Filters may hand back any async iterator, not only a
                        # generator: close it only if it can be closed.
                        aclose = getattr(generator, "aclose", None)
                        if aclose is not None:
                            await aclose()
        except HubError as error:
            self.log.info("stream %s failed: HubException: %s", method.name, clip(error))
            if isinstance(error, LimitExceeded):
                refusal = f"{target!r} raised: {error}"
            error_text = f"{Texts.STREAMING_ERROR} HubException: {error}"
            error_type = "HubException"
        except ClientStreamError as error:
            self.log.info(
                "stream %s failed: its upload stream ended with: %s", method.name, clip(error)
            )
            error_text = self._with_detail(Texts.STREAMING_ERROR, type(error).__name__, str(error))
            error_type = type(error).__name__
        except Exception as error:
            log.exception("streaming hub method %r raised", method.name)
            error_type = type(error).__name__
            error_text = self._with_detail(Texts.STREAMING_ERROR, type(error).__name__, str(error))
        finally:
            self._streams.pop(reply_id, None)
            self.uploads.close(uploads)
            self._open_streams -= 1 + len(uploads)
        # A cancel from the client still gets a Completion, without error.
        await self._send_completion(
            Completion.empty(reply_id)
            if error_text is None
            else Completion.with_error(reply_id, error_text),
            target,
        )
        if refusal is not None:
            self.refused(refusal)
        return error_type

    async def _call(
        self,
        method: BoundMethod,
        hub: Hub,
        target: str,
        arguments: tuple[Any, ...],
        uploads: list[ClientStream[Any]],
        *,
        streaming: bool,
    ) -> Any:
        """Call the method through the hub filters (returns the async iterator
        of a streaming method without iterating it)."""

        async def final(context: HubInvocationContext) -> Any:
            values = call_arguments(method, context.arguments, uploads)
            if streaming:
                return method.function(hub, *values)
            return await method.function(hub, *values)

        if not self._filters:
            # The hot path: no context object to build.
            values = call_arguments(method, arguments, uploads)
            if streaming:
                return method.function(hub, *values)
            return await method.function(hub, *values)
        return await compose_invoke(self._filters, final)(self._context(method, target, arguments))

    def _context(
        self, method: BoundMethod, target: str, arguments: tuple[Any, ...]
    ) -> HubInvocationContext:
        return HubInvocationContext(
            caller=self._caller,
            hub=self._hub_class,
            target=target,
            method_name=method.name,
            wire_name=method.wire_name,
            arguments=arguments,
        )

    async def _send_completion(self, completion: Completion, target: str) -> None:
        await self._settle()
        try:
            await self._send(completion)
        except LocalProtocolError as error:
            # The result could not be serialized by the connection's protocol.
            self.log.log(
                logging.ERROR,
                "the result of %s cannot be serialized: %s",
                clip(target),
                clip(error),
            )
            await self._send(
                Completion.with_error(
                    completion.invocation_id,
                    self._with_detail(
                        Texts.unexpected_error(target), type(error).__name__, str(error)
                    ),
                )
            )

    # -- errors ---------------------------------------------------------------

    def refused(self, what: str) -> None:
        """Count a refusal for exceeding a limit; too many close the connection.

        Counted per ``refusal_window`` (a fresh count starts with the first
        refusal after a window ends), so a client that brushes a limit now and
        then is answered, and one that keeps pushing is let go.
        """
        now = trio.current_time()
        if now - self._refusals_since >= self._refusal_window:
            self._refusals = 0
            self._refusals_since = now
        self._refusals += 1
        self.log.info("%s (refusal %d of %d)", clip(what), self._refusals, self._max_refusals)
        if self._refusals >= self._max_refusals:
            self._control.close(
                CloseReason.LIMITS_EXCEEDED,
                Texts.limits_exceeded(self._max_refusals, self._refusal_window),
            )

    def _with_detail(self, base: str, kind: str, detail: str) -> str:
        return f"{base} {kind}: {detail}" if self._detailed else base

    @staticmethod
    def _error_completion(reply_id: str | None, text: str) -> Completion | None:
        return None if reply_id is None else Completion.with_error(reply_id, text)

    async def _fail(self, reply_id: str | None, text: str) -> None:
        # A non-blocking call (no invocation id) gets nothing back, not even errors.
        if reply_id is not None:
            await self._send(Completion.with_error(reply_id, text))
