"""The seed's ChatHub: authenticated chat, direct messages, and the two
guarded methods of the ASP.NET Core SignalR authorization guide."""

from __future__ import annotations

from collections import deque
from typing import Any

from triohub import Hub, HubError, HubServer
from triohub.authorization import (
    AuthorizationContext,
    AuthorizationPolicy,
    HubInvocationContext,
    PolicyRegistry,
    Requirement,
    authorize,
)

from .echo import describe_caller
from .users import USERS

HISTORY_PER_USER = 100


class ChatState:
    """What the chat remembers for the demo's lifetime (per app, no globals)."""

    def __init__(self) -> None:
        self.banned: set[str] = set()
        """Usernames (``sub``) that may not connect any more."""
        self.history: dict[str, deque[str]] = {}
        self.server: HubServer | None = None
        """The server hosting the chat (``RevokeSessions`` revokes there)."""

    def remember(self, username: str, message: str) -> None:
        self.history.setdefault(username, deque(maxlen=HISTORY_PER_USER)).append(message)


class DomainRestrictedRequirement(Requirement):
    """The guide's requirement that is its own handler: the caller's email must
    end with ``@contoso.example``, and asdf42 may not call ``BanUser``."""

    def handle(self, context: AuthorizationContext) -> None:
        email = (context.user.email or "").lower()
        resource = context.resource
        if (
            isinstance(resource, HubInvocationContext)
            and resource.wire_name.lower() == "banuser"
            and email == "asdf42@contoso.example"
        ):
            return
        if email.endswith("@contoso.example"):
            context.succeed(self)

    @property
    def description(self) -> str:
        return "DomainRestricted"


def chat_policies(state: ChatState) -> PolicyRegistry:
    registry = PolicyRegistry()

    def not_banned(context: AuthorizationContext) -> bool:
        return context.user.name_identifier not in state.banned

    registry.add_policy(
        "ChatUser", AuthorizationPolicy.build(authenticated=True, assertions=[not_banned])
    )
    registry.add_policy("Administrators", AuthorizationPolicy.build(roles=["Administrators"]))
    registry.add_policy("DomainRestricted", AuthorizationPolicy([DomainRestrictedRequirement()]))
    return registry


@authorize("ChatUser")
class ChatHub(Hub):
    """``/hubs/chat``: every caller is authenticated and not banned."""

    def __init__(self, state: ChatState) -> None:
        self.state = state

    async def send_message(self, message: str) -> None:
        principal = self.context.principal
        username = principal.name_identifier or ""
        self.state.remember(username, message)
        await self.clients.all.send("ReceiveMessage", principal.name or username, message)

    async def send_to_user(self, user_id: str, message: str) -> None:
        await self.clients.user(user_id).send("ReceiveDirectMessage", self.context.user_id, message)

    async def who_am_i(self) -> dict[str, Any]:
        return describe_caller(self.context)

    @authorize("Administrators")
    @authorize("DomainRestricted")
    async def ban_user(self, user_name: str) -> None:
        """Close every connection of ``user_name`` and refuse their new ones."""
        user = USERS.get(user_name)
        if user is None:
            raise HubError(f"Unknown user '{user_name}'.")
        self.state.banned.add(user_name)
        await self.clients.user(user.email).abort()

    @authorize("Administrators")
    @authorize("DomainRestricted")
    async def revoke_sessions(self, user_name: str) -> int:
        """End every session of ``user_name`` now: their connections close (no
        reconnect) and their tokens and cookies issued before now are refused;
        signing in again works. Returns how many connections were closed."""
        user = USERS.get(user_name)
        if user is None:
            raise HubError(f"Unknown user '{user_name}'.")
        assert self.state.server is not None, "the app sets ChatState.server"
        return await self.state.server.revoke(user=user.email)

    @authorize("DomainRestricted")
    async def view_user_history(self, user_name: str) -> list[dict[str, str]]:
        return [
            {"user": user_name, "message": message}
            for message in self.state.history.get(user_name, ())
        ]
