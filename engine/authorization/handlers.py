"""Authorization handlers: code that decides requirements."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from .context import AuthorizationContext

__all__ = ["AuthorizationHandler", "HandlerFunction", "as_handler_function", "is_async_handler"]

HandlerFunction: TypeAlias = "Callable[[AuthorizationContext], Awaitable[None] | None]"
"""A plain function ``(context) -> None``, or an ``async def`` one."""


@runtime_checkable
class AuthorizationHandler(Protocol):
    """An object that decides requirements (ASP.NET's ``IAuthorizationHandler``).

    Register it for a requirement type with ``PolicyRegistry.add_handler``; it
    runs once per evaluation of any policy holding a requirement of that type
    (or a subclass). It looks its requirements up with
    ``context.requirements_of(T)`` (or ``context.pending(T)``), then calls
    ``context.succeed(requirement)`` for each one it finds met, or
    ``context.fail(reason)`` to veto. Doing nothing leaves the decision to other
    handlers. ``handle`` is a plain method (the fast path: called in place) or
    an ``async def`` (awaited, under the server's ``authorization_timeout``);
    which one is read once, when the policy's plan is made. It returns
    ``None``: returning anything else (``True``, or an awaitable from a plain
    method) is a mistake this library reports instead of ignoring.
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
    if isinstance(handler, AuthorizationHandler):
        return handler.handle
    if callable(handler):
        return handler
    raise TypeError(
        f"an authorization handler must have a handle(context) method or be a "
        f"function of the context, got {handler!r}"
    )


def is_async_handler(handler: Callable[..., Any]) -> bool:
    """Whether ``handler`` is to be awaited: an ``async def`` function or method
    (or a ``functools.partial`` of one), or an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(handler):
        return True
    return callable(handler) and inspect.iscoroutinefunction(type(handler).__call__)


def returned_something(handler: Callable[..., Any], outcome: object) -> TypeError:
    """The error for a handler that returned ``outcome`` instead of ``None``."""
    name = getattr(handler, "__qualname__", None) or repr(handler)
    if inspect.isawaitable(outcome):
        if inspect.iscoroutine(outcome):
            outcome.close()  # never to be awaited: no "never awaited" warning
        return TypeError(
            f"authorization handler {name!r} is a plain function that returned an "
            "awaitable; declare it 'async def' so that its policy awaits it"
        )
    return TypeError(
        f"authorization handler {name!r} returned {outcome!r}; handlers decide by calling "
        "context.succeed(requirement) or context.fail(reason) and return None"
    )
