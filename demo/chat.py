"""The seed's ChatHub: authenticated chat, direct messages, and the two
guarded methods of the ASP.NET Core SignalR authorization guide.

Who may do what (the page's rules card says the same):

* every signed-in user who is not banned (policy ``ChatUser``, on the hub):
  ``SendMessage``, ``SendToUser``, ``WhoAmI``;
* ``ViewUserHistory``: policy ``DomainRestricted`` (an ``@contoso.example`` email);
* ``BanUser``: ``Administrators`` and ``DomainRestricted`` (which also refuses
  ``BanUser`` to asdf42): only alice among the demo users;
* ``RevokeSessions`` (from the browser console): ``Administrators`` and
  ``DomainRestricted``: alice and asdf42.

Methods that name a user take a username (``bob``) or a user id (the email,
``bob@contoso.example``); an unknown one is refused with ``Unknown user 'X'.``
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

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
from .users import User, find_user

HISTORY_PER_USER = 100
MAX_MESSAGE_LENGTH = 500
"""Characters a chat or direct message may have; longer ones are refused."""


class BanList(Protocol):
    """Usernames (``sub``) that may not connect any more."""

    async def contains(self, user_name: str) -> bool: ...

    async def add(self, user_name: str) -> None: ...


class MemoryBanList:
    """This process's bans (a single node)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    async def contains(self, user_name: str) -> bool:
        return user_name in self.names

    async def add(self, user_name: str) -> None:
        self.names.add(user_name)


class History(Protocol):
    """What each user said, the last ``HISTORY_PER_USER`` messages."""

    async def add(self, user_name: str, message: str) -> None: ...

    async def of(self, user_name: str) -> list[str]:
        """Oldest first."""
        ...


class MemoryHistory:
    """This process's history (a single node)."""

    def __init__(self) -> None:
        self.messages: dict[str, deque[str]] = {}

    async def add(self, user_name: str, message: str) -> None:
        self.messages.setdefault(user_name, deque(maxlen=HISTORY_PER_USER)).append(message)

    async def of(self, user_name: str) -> list[str]:
        return list(self.messages.get(user_name, ()))


class ChatState:
    """What the chat remembers for the demo's lifetime (per app, no globals).

    The ban list and the history are shared by every node of a cluster
    (``demo/cluster.py``: Redis); by default they are this process's.
    """

    def __init__(self, bans: BanList | None = None, history: History | None = None) -> None:
        self.bans: BanList = bans if bans is not None else MemoryBanList()
        self.history: History = history if history is not None else MemoryHistory()
        self.server: HubServer | None = None
        """The server hosting the chat (``RevokeSessions`` revokes there)."""


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

    bans = state.bans
    if isinstance(bans, MemoryBanList):
        names = bans.names

        def not_banned(context: AuthorizationContext) -> bool:
            # Plain def: checked in place, the policy's fast path.
            return context.user.name_identifier not in names

        assertion: Any = not_banned
    else:

        async def not_banned_anywhere(context: AuthorizationContext) -> bool:
            # A cluster's ban list (a Redis set): awaited.
            name = context.user.name_identifier
            return name is None or not await bans.contains(name)

        assertion = not_banned_anywhere

    registry.add_policy(
        "ChatUser", AuthorizationPolicy.build(authenticated=True, assertions=[assertion])
    )
    registry.add_policy("Administrators", AuthorizationPolicy.build(roles=["Administrators"]))
    registry.add_policy("DomainRestricted", AuthorizationPolicy([DomainRestrictedRequirement()]))
    return registry


def find(identifier: str) -> User:
    """The user named by a username or a user id.

    Raises:
        HubError: nobody is so named (the caller sees the text).
    """
    user = find_user(identifier)
    if user is None:
        raise HubError(f"Unknown user '{identifier}'.")
    return user


def check_length(message: str) -> None:
    if len(message) > MAX_MESSAGE_LENGTH:
        raise HubError(
            f"Messages may have at most {MAX_MESSAGE_LENGTH} characters; "
            f"this one has {len(message)}."
        )


@authorize("ChatUser")
class ChatHub(Hub):
    """``/hubs/chat``: every caller is authenticated and not banned."""

    def __init__(self, state: ChatState) -> None:
        self.state = state

    async def send_message(self, message: str) -> None:
        check_length(message)
        principal = self.context.principal
        username = principal.name_identifier or ""
        await self.state.history.add(username, message)
        await self.clients.all.send("ReceiveMessage", principal.name or username, message)

    async def send_to_user(self, user: str, message: str) -> str:
        """Send to every connection of ``user`` (a username or a user id); returns
        the user id it went to."""
        check_length(message)
        recipient = find(user)
        await self.clients.user(recipient.email).send(
            "ReceiveDirectMessage", self.context.user_id, message
        )
        return recipient.email

    async def who_am_i(self) -> dict[str, Any]:
        return describe_caller(self.context)

    @authorize("Administrators")
    @authorize("DomainRestricted")
    async def ban_user(self, user: str) -> str:
        """Close every connection of ``user`` (a username or a user id), telling
        them who banned them, and refuse their new ones (on every node of a
        cluster); returns the user id."""
        banned = find(user)
        await self.state.bans.add(banned.username)
        by = self.context.principal.name or self.context.user_id
        await self.clients.user(banned.email).abort(f"You were banned from the chat by {by}.")
        return banned.email

    @authorize("Administrators")
    @authorize("DomainRestricted")
    async def revoke_sessions(self, user: str) -> int:
        """End every session of ``user`` (a username or a user id) now: their
        connections close (no reconnect) and their tokens and cookies issued
        before now are refused; signing in again works. Returns how many
        connections were closed."""
        revoked = find(user)
        assert self.state.server is not None, "the app sets ChatState.server"
        return await self.state.server.revoke(user=revoked.email)

    @authorize("DomainRestricted")
    async def view_user_history(self, user: str) -> list[dict[str, str]]:
        """What ``user`` (a username or a user id) said, oldest first."""
        author = find(user)
        return [
            {"user": author.username, "message": message}
            for message in await self.state.history.of(author.username)
        ]
