"""Authorization handlers: code that decides requirements."""

from __future__ import annotations

import dis
import inspect
import types
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias, runtime_checkable

from .context import AuthorizationContext

__all__ = ["AuthorizationHandler", "HandlerFunction", "as_handler_function"]

HandlerFunction: TypeAlias = Callable[[AuthorizationContext], Awaitable[None] | None]
"""A plain or ``async`` function ``(context) -> None``."""


@runtime_checkable
class AuthorizationHandler(Protocol):
    """An object that decides requirements (ASP.NET's ``IAuthorizationHandler``).

    Register it for a requirement type with ``PolicyRegistry.add_handler``; it
    runs once per evaluation of any policy holding a requirement of that type
    (or a subclass). It looks its requirements up with
    ``context.requirements_of(T)`` (or ``context.pending(T)``), then calls
    ``context.succeed(requirement)`` for each one it finds met, or
    ``context.fail(reason)`` to veto. Doing nothing leaves the decision to other
    handlers. ``handle`` may be a plain method or ``async def``; what it
    returns is ignored only if it is ``None`` (returning ``True`` is a mistake
    this library reports instead of ignoring).
    """

    def handle(self, context: AuthorizationContext) -> Awaitable[None] | None: ...


def as_handler_function(handler: AuthorizationHandler | HandlerFunction) -> HandlerFunction:
    """The function to call for ``handler``: its ``handle`` method, or itself.

    Raises:
        TypeError: ``handler`` has no ``handle`` method and is not callable.
    """
    if isinstance(handler, type):
        raise TypeError(
            f"add_handler() needs a handler instance or function, got the class "
            f"{handler.__qualname__}; pass {handler.__qualname__}() instead"
        )
    method = getattr(handler, "handle", None)
    if callable(method):
        return method  # type: ignore[no-any-return]
    if callable(handler):
        return handler
    raise TypeError(
        f"an authorization handler must have a handle(context) method or be a "
        f"function of the context, got {handler!r}"
    )


# -- which handlers finish without an event loop -----------------------------------

_SUSPENDING_OPS = frozenset(
    {"GET_AWAITABLE", "SEND", "YIELD_VALUE", "GET_AITER", "GET_ANEXT", "BEFORE_ASYNC_WITH"}
)
_KNOWN_OPS = "YIELD_VALUE" in dis.opmap and "GET_AWAITABLE" in dis.opmap

_SUSPENDS: dict[int, tuple[types.CodeType, bool]] = {}
"""``code_may_suspend`` answers by code object identity (hashing a code object
recomputes the hash of its tuples on every call)."""


def code_may_suspend(code: types.CodeType) -> bool:
    """Whether a coroutine of ``code`` may suspend: it has an ``await``,
    ``async for`` or ``async with`` (on an interpreter whose bytecode this does
    not know: always)."""
    known = _SUSPENDS.get(id(code))
    if known is not None and known[0] is code:
        return known[1]
    if not _KNOWN_OPS:
        suspends = True
    else:
        suspends = any(i.opname in _SUSPENDING_OPS for i in dis.get_instructions(code))
    if len(_SUSPENDS) > 4096:
        _SUSPENDS.clear()  # handlers made on the fly: keep the cache bounded
    _SUSPENDS[id(code)] = (code, suspends)
    return suspends


def runs_to_end(handler: Any) -> bool:
    """Whether every call of ``handler`` returns a coroutine that ends on its
    first step with ``None``: an ``async def`` function (or a method of one)
    whose code has no ``await``, ``async for`` or ``async with`` and returns
    nothing but ``None``. Such a coroutine runs to its end when iterated, no
    event loop needed, and its end raises no ``StopIteration``."""
    function = getattr(handler, "__func__", handler)  # a bound method's function
    if type(function) is not types.FunctionType:
        return False  # anything else is checked on what each call returns
    code = function.__code__
    # The flag, not iscoroutinefunction(): that also says yes for a plain
    # function marked with inspect.markcoroutinefunction.
    if not code.co_flags & inspect.CO_COROUTINE or code_may_suspend(code):
        return False
    return _returns_only_none(code)


def _returns_only_none(code: types.CodeType) -> bool:
    """Every return of ``code`` returns the constant ``None`` (so a handler that
    returns ``True`` by mistake keeps being reported: it is not run this way)."""
    if not _KNOWN_OPS:
        return False
    previous: dis.Instruction | None = None
    for instruction in dis.get_instructions(code):
        if instruction.opname == "RETURN_CONST" and instruction.argval is not None:
            return False
        if instruction.opname == "RETURN_VALUE" and (
            instruction.is_jump_target  # reached from elsewhere, with anything on the stack
            or previous is None
            or previous.opname != "LOAD_CONST"
            or previous.argval is not None
        ):
            return False
        previous = instruction
    return True
