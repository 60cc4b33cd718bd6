"""Hub filters: code around every hub method invocation and around connect
and disconnect (ASP.NET's ``IHubFilter``).

Filters run in declared order, global filters first, then the hub's own; each
receives ``next`` and may call it (possibly with a changed context), skip it
(short-circuit: return a result or raise ``HubError``), or wrap it. For a
streaming method ``next`` returns the async iterator, which a filter may wrap.
Authorization has already passed when a filter runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..authorization.context import HubInvocationContext
from .context import HubCallerContext

__all__ = ["HubFilter", "Invoke", "Lifetime", "compose_invoke", "compose_lifetime"]

Invoke = Callable[[HubInvocationContext], Awaitable[Any]]
Lifetime = Callable[[HubCallerContext], Awaitable[None]]


class HubFilter:
    """Subclass and override what you need; the defaults just call ``next``."""

    async def invoke(self, context: HubInvocationContext, next: Invoke) -> Any:
        return await next(context)

    async def on_connected(self, context: HubCallerContext, next: Lifetime) -> None:
        await next(context)

    async def on_disconnected(
        self,
        context: HubCallerContext,
        error: BaseException | None,
        next: Callable[[HubCallerContext, BaseException | None], Awaitable[None]],
    ) -> None:
        await next(context, error)


def compose_invoke(filters: Sequence[HubFilter], final: Invoke) -> Invoke:
    """``filters[0]`` outermost, ``final`` innermost."""
    call = final
    for hub_filter in reversed(filters):
        call = _wrap_invoke(hub_filter, call)
    return call


def _wrap_invoke(hub_filter: HubFilter, inner: Invoke) -> Invoke:
    async def call(context: HubInvocationContext) -> Any:
        return await hub_filter.invoke(context, inner)

    return call


def compose_lifetime(
    filters: Sequence[HubFilter], final: Lifetime, *, connected: bool
) -> Callable[[HubCallerContext, BaseException | None], Awaitable[None]]:
    """Chain ``on_connected`` (error ignored) or ``on_disconnected`` filters."""

    async def innermost(context: HubCallerContext, error: BaseException | None) -> None:
        await final(context)

    call: Callable[[HubCallerContext, BaseException | None], Awaitable[None]] = innermost
    for hub_filter in reversed(filters):
        call = _wrap_lifetime(hub_filter, call, connected)
    return call


def _wrap_lifetime(
    hub_filter: HubFilter,
    inner: Callable[[HubCallerContext, BaseException | None], Awaitable[None]],
    connected: bool,
) -> Callable[[HubCallerContext, BaseException | None], Awaitable[None]]:
    async def call(context: HubCallerContext, error: BaseException | None) -> None:
        if connected:
            await hub_filter.on_connected(context, lambda c: inner(c, error))
        else:
            await hub_filter.on_disconnected(context, error, inner)

    return call
