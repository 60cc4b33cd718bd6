"""What an invocation's message must be for its method: the argument count and
types (converted here), the message kind, and how the converted arguments and
upload streams line up with the method's parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..protocol import Invocation, StreamInvocation, Texts
from .binding import BoundMethod, MethodKind
from .logs import ConnectionLog, clip

if TYPE_CHECKING:
    from .streams import ClientStream

__all__ = ["bind_arguments", "call_arguments", "wrong_kind"]


def bind_arguments(
    method: BoundMethod,
    message: Invocation | StreamInvocation,
    log: ConnectionLog,
    with_detail: Callable[[str, str, str], str],
) -> tuple[Any, ...] | str:
    """The converted arguments, or the error text to answer with."""
    given = message.arguments
    if len(given) != method.argument_count:
        why = Texts.argument_count(len(given), method.argument_count)
        log.info("%s not invoked: %s", clip(message.target, 100), why)
        return with_detail(Texts.invocation_failed(message.target), "InvalidDataException", why)
    if not method.converts:
        return given
    try:
        return tuple(
            value if coerce is None else coerce(value)
            for coerce, value in zip(method.coercers, given, strict=True)
        )
    except (TypeError, ValueError):
        # The client is told only that binding failed (the reference's
        # answer); the developer reads here which argument and why.
        log.info(
            "%s not invoked: %s (%s)",
            clip(message.target, 100),
            Texts.ARGUMENT_BINDING,
            _binding_failure(method.coercers, given),
        )
        return with_detail(
            Texts.invocation_failed(message.target),
            "InvalidDataException",
            Texts.ARGUMENT_BINDING,
        )


def wrong_kind(
    method: BoundMethod,
    target: str,
    message: Invocation | StreamInvocation,
    streaming: bool,
) -> str | None:
    """The error text when the message does not fit the method's kind."""
    if streaming and method.kind is MethodKind.PLAIN:
        return Texts.plain_via_stream_invocation(target)
    if not streaming and method.kind is MethodKind.STREAM:
        return Texts.streaming_via_invocation(target)
    if len(message.stream_ids) != len(method.stream_positions):
        return Texts.stream_count_mismatch(
            target, len(message.stream_ids), len(method.stream_positions)
        )
    return None


def call_arguments(
    method: BoundMethod, arguments: tuple[Any, ...], uploads: list[ClientStream[Any]]
) -> list[Any]:
    """The method's positional arguments: the converted ones with the upload streams
    at their parameters' positions."""
    if not uploads:
        return list(arguments)
    values = iter(arguments)
    streams = iter(uploads)
    positions = set(method.stream_positions)
    return [
        next(streams) if position in positions else next(values)
        for position in range(method.parameter_count)
    ]


def _binding_failure(coercers: tuple[Any, ...], given: tuple[Any, ...]) -> str:
    """Which argument did not fit, and why (``argument 2: expected an integer, got str``)."""
    for position, (coerce, value) in enumerate(zip(coercers, given, strict=True), 1):
        if coerce is None:
            continue
        try:
            coerce(value)
        except (TypeError, ValueError) as error:
            return f"argument {position}: {clip(error, 100)}"
    return "unknown"  # pragma: no cover - called only after a coercer failed
