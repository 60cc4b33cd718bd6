"""Authorization: requirements, handlers, policies, ``@authorize`` metadata, the
evaluator, and the authorization state (bans, revocations).

Pure: this package never imports trio and knows nothing of the hub engine. The
engine hands it principals and resources and runs each evaluation in the task
that asks (``triohub.hub.authorizer``); the state's single writer is the
authorization actor (``triohub.actors.authorization``).
"""

from .context import (
    AuthorizationContext,
    HubCaller,
    HubGroupContext,
    HubInvocationContext,
    HubRequestContext,
    HubSendContext,
)
from .evaluator import AuthorizationResult, evaluate, evaluate_sync
from .handlers import AuthorizationHandler, HandlerFunction
from .metadata import (
    AuthorizeData,
    allow_anonymous,
    allows_anonymous,
    authorize,
    authorize_data,
    method_allows_anonymous,
    method_authorize_data,
    resolve_policy,
)
from .policy import AuthorizationPolicy, PolicyRegistry, UnknownPolicyError
from .requirements import (
    AssertionRequirement,
    AsyncAssertionRequirement,
    AsyncPredicate,
    AuthenticatedUserRequirement,
    ClaimRequirement,
    Predicate,
    Requirement,
    RolesRequirement,
)
from .revocation import Revocation, Revocations
from .state import AuthorizationState

__all__ = [
    "AssertionRequirement",
    "AsyncAssertionRequirement",
    "AsyncPredicate",
    "AuthenticatedUserRequirement",
    "AuthorizationContext",
    "AuthorizationHandler",
    "AuthorizationPolicy",
    "AuthorizationResult",
    "AuthorizationState",
    "AuthorizeData",
    "ClaimRequirement",
    "HandlerFunction",
    "HubCaller",
    "HubGroupContext",
    "HubInvocationContext",
    "HubRequestContext",
    "HubSendContext",
    "PolicyRegistry",
    "Predicate",
    "Requirement",
    "Revocation",
    "Revocations",
    "RolesRequirement",
    "UnknownPolicyError",
    "allow_anonymous",
    "allows_anonymous",
    "authorize",
    "authorize_data",
    "evaluate",
    "evaluate_sync",
    "method_allows_anonymous",
    "method_authorize_data",
    "resolve_policy",
]
