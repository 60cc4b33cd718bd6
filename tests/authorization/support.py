"""Helpers for the authorization model tests."""

from __future__ import annotations

from typing import Any

import attrs
import trio

from triohub.auth.principal import ANONYMOUS, Principal
from triohub.authorization import (
    AuthorizationContext,
    AuthorizationPolicy,
    AuthorizationResult,
    HubInvocationContext,
    PolicyRegistry,
    Requirement,
    evaluate,
    evaluate_sync,
)

__all__ = ["ANONYMOUS", "Caller", "Marker", "invocation", "run_policy", "user"]


def run_policy(
    policy: AuthorizationPolicy,
    principal: Principal,
    resource: Any = None,
    registry: PolicyRegistry | None = None,
) -> AuthorizationResult:
    """Evaluate from a synchronous test: in place when every handler is a plain
    function (``evaluate_sync``, the engine's fast path), else under ``trio.run``."""
    plan = (registry if registry is not None else PolicyRegistry()).plan(policy)
    if not plan.awaits:
        return evaluate_sync(policy, principal, resource, registry)
    return trio.run(evaluate, policy, principal, resource, registry)


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
