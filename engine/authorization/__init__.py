"""Authorization: requirements, handlers, policies, ``@authorize`` metadata, the evaluator.

Pure: this package never imports trio and knows nothing of the hub engine;
the engine hands it principals and resources, and runs evaluations through
the authorization actor (``triohub.actors.authorization``).
"""

from .context import AuthorizationContext, HubCaller, HubInvocationContext, HubRequestContext
from .evaluator import AuthorizationResult, evaluate
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
    AuthenticatedUserRequirement,
    ClaimRequirement,
    Predicate,
    Requirement,
    RolesRequirement,
)

__all__ = [
    "AssertionRequirement",
    "AuthenticatedUserRequirement",
    "AuthorizationContext",
    "AuthorizationHandler",
    "AuthorizationPolicy",
    "AuthorizationResult",
    "AuthorizeData",
    "ClaimRequirement",
    "HandlerFunction",
    "HubCaller",
    "HubInvocationContext",
    "HubRequestContext",
    "PolicyRegistry",
    "Predicate",
    "Requirement",
    "RolesRequirement",
    "UnknownPolicyError",
    "allow_anonymous",
    "allows_anonymous",
    "authorize",
    "authorize_data",
    "evaluate",
    "method_allows_anonymous",
    "method_authorize_data",
    "resolve_policy",
]
