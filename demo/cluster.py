"""The demo on many processes: ``python -m demo --redis redis://127.0.0.1:6379/0``.

Every node given the same Redis URL (and the same ``DEMO_JWT_SECRET``, so a
token signed by one is valid on all) shares the hubs: a chat message, a direct
message or ``BanUser`` on one node reaches the users on every node. The ban
list is a Redis set, so a ban refuses the user's new connections everywhere.

Imported only when ``--redis`` is given: without it nothing loads Redis.
"""

from __future__ import annotations

from triohub.backplane.redis import RedisBackplane

__all__ = ["BAN_KEY", "RedisBanList", "redis_backplane"]

BAN_KEY = "triohub-demo:banned"


def redis_backplane(url: str) -> RedisBackplane:
    return RedisBackplane(url)


class RedisBanList:
    """The demo's bans in a Redis set, read through the backplane's client.

    While Redis is unreachable a check raises, and the authorization policy
    that asks fails closed (nobody new gets in until Redis is back).
    """

    def __init__(self, backplane: RedisBackplane, key: str = BAN_KEY) -> None:
        self.backplane = backplane
        self.key = key

    async def contains(self, user_name: str) -> bool:
        client = self.backplane.client
        if client is None:
            raise ConnectionError("the ban list's Redis is unreachable")
        return bool(await client.sismember(self.key, user_name))

    async def add(self, user_name: str) -> None:
        client = self.backplane.client
        if client is None:
            raise ConnectionError("the ban list's Redis is unreachable")
        await client.sadd(self.key, [user_name])
