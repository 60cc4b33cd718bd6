"""The echo hub: the conformance fixture that end-to-end tests drive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio

from triohub import ClientStream, Hub, HubCallerContext, HubError


def describe_caller(context: HubCallerContext) -> dict[str, Any]:
    """``WhoAmI``'s answer (both demo hubs): the contract's four fields."""
    principal = context.principal
    return {
        "userId": context.user_id,
        "name": principal.name,
        "roles": sorted(principal.roles),
        "connectionId": context.connection_id,
    }


class EchoHub(Hub):
    """Anonymous callers allowed; every method of the design contract."""

    async def echo(self, value: Any) -> Any:
        return value

    async def add(self, a: int | float, b: int | float) -> int | float:
        return a + b

    async def void(self) -> None:
        return None

    async def counter(self, n: int, delay_ms: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
            if delay_ms > 0:
                await trio.sleep(delay_ms / 1000)

    async def upload_sum(self, stream: ClientStream[float]) -> float:
        total: float = 0
        async for value in stream:
            total += value
        return total

    async def throw(self, message: str) -> None:
        raise HubError(message)

    async def broadcast(self, message: Any) -> None:
        await self.clients.all.send("Receive", message)

    async def join_group(self, group: str) -> None:
        await self.groups.add(self.context.connection_id, group)

    async def leave_group(self, group: str) -> None:
        await self.groups.remove(self.context.connection_id, group)

    async def send_to_group(self, group: str, message: Any) -> None:
        await self.clients.group(group).send("Receive", message)

    async def ask_caller(self, method: str, argument: Any) -> Any:
        """Client results: invoke ``method`` on the caller and return its answer."""
        return await self.clients.caller.invoke(method, argument)

    async def send_to_user(self, user_id: str, message: Any) -> None:
        await self.clients.user(user_id).send("Receive", message)

    async def who_am_i(self) -> dict[str, Any]:
        return describe_caller(self.context)

    # -- every target, for a cluster (python -m demo --redis URL) -----------------------

    async def send_to(self, target: str, names: list[str], message: Any) -> None:
        """``Receive`` through any ``clients.*`` target: ``names`` are the
        target's connection ids, users or groups (``group_except``: the group,
        then the connection ids to leave out; ``others_in_group``: the group)."""
        clients = self.clients
        single = names[0] if names else ""
        proxies = {
            "all": lambda: clients.all,
            "all_except": lambda: clients.all_except(names),
            "client": lambda: clients.client(single),
            "clients": lambda: clients.clients(names),
            "user": lambda: clients.user(single),
            "users": lambda: clients.users(names),
            "group": lambda: clients.group(single),
            "groups": lambda: clients.groups(names),
            "group_except": lambda: clients.group_except(single, names[1:]),
            "others": lambda: clients.others,
            "others_in_group": lambda: clients.others_in_group(single),
        }
        choose = proxies.get(target)
        if choose is None:
            raise HubError(f"Unknown target '{target}'.")
        await choose().send("Receive", message)

    async def add_to_group(self, connection_id: str, group: str) -> None:
        """Add any connection, wherever it is connected."""
        await self.groups.add(connection_id, group)

    async def remove_from_group(self, connection_id: str, group: str) -> None:
        await self.groups.remove(connection_id, group)

    async def ask_client(self, connection_id: str, method: str, argument: Any) -> Any:
        """Client results from any connection, wherever it is connected."""
        return await self.clients.client(connection_id).invoke(method, argument)
