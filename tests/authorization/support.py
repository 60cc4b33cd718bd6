"""Helpers for the authorization model tests."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import attrs

from triohub.auth.principal import ANONYMOUS, Principal
from triohub.authorization import AuthorizationContext, HubInvocationContext, Requirement

T = TypeVar("T")

__all__ = ["ANONYMOUS", "Caller", "Marker", "invocation", "run_pure", "user"]


def run_pure(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends, without any event loop.

    The evaluator is pure: with handlers that do not wait on I/O it completes
    on the first step. If it suspended, it would be waiting for an event loop
    it must not need.
    """
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("the evaluation suspended; it should not need an event loop")


def user(name: str = "alice", *roles: str, **claims: Any) -> Principal:
    """An authenticated principal with a ``sub`` claim, roles and other claims."""
    everything: dict[str, Any] = {"sub": name, **claims}
    if roles:
        everything["role"] = list(roles)
    return Principal(claims=everything, scheme="Bearer")


@attrs.frozen
class Marker(Requirement):
    """A requirement decided only by registered handlers."""

    name: str = "marker"


class Caller:
    """Stands in for the engine's HubCallerContext (same attributes)."""

    def __init__(self, principal: Principal, connection_id: str = "conn-1") -> None:
        self.connection_id = connection_id
        self.principal = principal
        self.user_id = principal.email
        self.items: dict[Any, Any] = {}


class ChatHub:
    """Stands in for a Hub subclass."""


def invocation(
    principal: Principal, target: str = "SendMessage", *arguments: Any
) -> HubInvocationContext:
    method_name = "".join(
        "_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(target)
    )
    return HubInvocationContext(
        caller=Caller(principal),
        hub=ChatHub,
        target=target,
        method_name=method_name,
        wire_name=target[:1].upper() + target[1:],
        arguments=arguments,
    )


def context_for(principal: Principal, *requirements: Requirement) -> AuthorizationContext:
    return AuthorizationContext(principal, None, requirements)
