"""The state of one evaluation, and the resources that handlers look at."""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, Protocol, TypeVar

import attrs

from ..auth.principal import Principal
from ..auth.request import RequestInfo
from .requirements import Requirement

__all__ = [
    "AuthorizationContext",
    "HubCaller",
    "HubGroupContext",
    "HubInvocationContext",
    "HubRequestContext",
    "HubSendContext",
]

R = TypeVar("R", bound=Requirement)


class AuthorizationContext:
    """What handlers see and mark during one evaluation of a policy.

    The ASP.NET ``AuthorizationHandlerContext``: every requirement starts
    pending; ``succeed(requirement)`` marks one as met; ``fail()`` vetoes the
    whole evaluation, whatever else succeeds. Every handler runs even after a
    ``fail()`` (``InvokeHandlersAfterFailure``), so a handler must not assume
    that it is the last word.

    Attributes:
        principal: the caller.
        resource: what is being accessed: a ``HubInvocationContext`` for a hub
            method, a ``HubRequestContext`` for a negotiate or transport
            request, a ``HubGroupContext`` for a guarded group, a ``HubSendContext``
            for a recipient of a send with a policy, or whatever the application
            passes.
        requirements: every requirement of the policy, in order.

    Args:
        resource_factory: makes ``resource`` on first use instead (most
            policies decide from the principal alone, and the engine's hub
            method resource is built only for those that look at it).
        distinct: no requirement equals another (the evaluator knows it from
            the policy's plan), so ``succeed`` can stop at the first match.
    """

    __slots__ = (
        "_distinct",
        "_fail_called",
        "_failure_reasons",
        "_pending",
        "_resource",
        "_resource_factory",
        "principal",
        "requirements",
    )

    def __init__(
        self,
        principal: Principal,
        resource: Any,
        requirements: Iterable[Requirement],
        *,
        resource_factory: Callable[[], Any] | None = None,
        distinct: bool = False,
    ) -> None:
        self.principal = principal
        self._resource = resource
        self._resource_factory = resource_factory
        self.requirements: tuple[Requirement, ...] = tuple(requirements)
        self._pending: list[Requirement] = list(self.requirements)
        self._fail_called = False
        self._failure_reasons: tuple[str, ...] = ()
        self._distinct = distinct

    @property
    def resource(self) -> Any:
        """What is being accessed (made on first use when given a ``resource_factory``)."""
        factory = self._resource_factory
        if factory is not None:
            self._resource_factory = None
            self._resource = factory()
        return self._resource

    @property
    def user(self) -> Principal:
        """Alias of ``principal`` (ASP.NET's ``context.User``)."""
        return self.principal

    def succeed(self, requirement: Requirement) -> None:
        """Mark ``requirement`` as met (a requirement not in the policy is ignored)."""
        pending = self._pending
        if (
            pending
            and pending[0] is requirement
            and (self._distinct or requirement not in pending[1:])
        ):
            del pending[0]  # the usual case: requirements met in policy order
            return
        self._pending = [p for p in pending if not (p is requirement or p == requirement)]

    def fail(self, reason: str | None = None) -> None:
        """Veto: the evaluation fails even if every requirement succeeds.

        Args:
            reason: why, for audit logs and ``AuthorizationResult.failure_reasons``.
        """
        self._fail_called = True
        if reason is not None:
            self._failure_reasons += (reason,)

    def requirements_of(self, requirement_type: type[R]) -> tuple[R, ...]:
        """Every requirement of the policy that is a ``requirement_type``.

        What ASP.NET's ``AuthorizationHandler<T>`` iterates: a handler that may
        ``fail()`` should look at these, so that its verdict does not depend on
        whether another handler happened to run first.
        """
        return tuple(r for r in self.requirements if isinstance(r, requirement_type))

    def pending(self, requirement_type: type[R]) -> tuple[R, ...]:
        """The requirements of ``requirement_type`` that nobody has succeeded yet."""
        found: tuple[R, ...] = ()
        for requirement in self._pending:  # a loop, not a generator: every handler asks
            if isinstance(requirement, requirement_type):
                found += (requirement,)
        return found

    @property
    def pending_requirements(self) -> tuple[Requirement, ...]:
        """Every requirement not succeeded yet, in policy order."""
        return tuple(self._pending)

    @property
    def has_failed(self) -> bool:
        """Whether some handler called ``fail()``."""
        return self._fail_called

    @property
    def has_succeeded(self) -> bool:
        """No ``fail()``, and every requirement succeeded.

        As in ASP.NET, a context with no requirements never succeeds (with
        some, none pending means that ``succeed`` was called).
        """
        return not self._fail_called and not self._pending and bool(self.requirements)

    @property
    def failure_reasons(self) -> tuple[str, ...]:
        """The reasons given to ``fail()``, in call order."""
        return self._failure_reasons

    def __repr__(self) -> str:
        return (
            f"<AuthorizationContext requirements={len(self.requirements)} "
            f"pending={len(self._pending)} failed={self._fail_called}>"
        )


class HubCaller(Protocol):
    """What authorization needs of the engine's ``HubCallerContext``."""

    @property
    def connection_id(self) -> str: ...
    @property
    def principal(self) -> Principal: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def items(self) -> MutableMapping[Any, Any]: ...


@attrs.frozen(eq=False)
class HubInvocationContext:
    """The resource of a hub method check (ASP.NET's ``HubInvocationContext``).

    Compared by identity: it carries the live caller context and arguments.
    """

    caller: HubCaller
    """The caller context: connection id, principal, user id, items."""
    hub: type[Any]
    """The ``Hub`` subclass that owns the method."""
    target: str
    """The method name exactly as the client sent it."""
    method_name: str
    """The Python attribute name of the bound method."""
    wire_name: str
    """The canonical wire name (PascalCase unless given with ``@hub_method``)."""
    arguments: tuple[Any, ...] = ()
    """The decoded arguments, in order (client streams are not included)."""

    @property
    def principal(self) -> Principal:
        return self.caller.principal

    @property
    def connection_id(self) -> str:
        return self.caller.connection_id

    @property
    def user_id(self) -> str | None:
        return self.caller.user_id


@attrs.frozen(eq=False)
class HubRequestContext:
    """The resource of a hub-level check on a negotiate or transport HTTP request."""

    request: RequestInfo
    """The request (method, path, query, headers); use ``redacted()`` to log it."""
    hub: type[Any]
    """The ``Hub`` subclass mapped at ``path``."""
    path: str
    """The hub's path, e.g. ``/hubs/chat``."""


@attrs.frozen(eq=False)
class HubGroupContext:
    """The resource of a group policy check: may ``member`` be in ``group``?

    Checked when the connection is added to a guarded group, and again when
    its principal changes (a refreshed credential).
    """

    member: HubCaller
    """The connection being added (not necessarily the one whose call adds it)."""
    hub: type[Any]
    """The ``Hub`` subclass that owns the group."""
    group: str
    """The group's name."""


@attrs.frozen(eq=False)
class HubSendContext:
    """The resource of an outbound check: may ``recipient`` receive this send
    (``clients.group(g).send(..., policy="X")``)?"""

    recipient: HubCaller
    """The connection the send would reach (its current principal decides)."""
    hub: type[Any]
    """The ``Hub`` subclass sending."""
    method: str
    """The client method the send invokes."""
