"""Authorization handlers: code that decides requirements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias, runtime_checkable

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
