"""``RedisRevocationStore``: ended sessions shared by every node on one Redis.

The cluster's form of ``triohub.auth.sessions.MemoryRevocationStore``: a
revoked session id is a key (``SET key 1``) that expires when the last cookie
carrying it would have (``EXPIREAT until``, only ever extended), and a
request asks ``EXISTS key``. A sign-out on one node refuses the cookie on
every node from the moment ``revoke`` returns.

Imported only where a Redis URL is given (it imports coredis).

Reads and writes go through the backplane's client (``RedisBackplane.client``):
one Redis connection per process. While Redis is unreachable both raise
``triohub.backplane.BackplaneUnavailable``: a request whose session cannot be checked is not
let in (fail closed), and a sign-out that cannot be recorded says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio
from coredis.tokens import PureToken

if TYPE_CHECKING:
    import coredis

    from .redis import RedisBackplane

__all__ = ["SESSIONS_PREFIX", "RedisRevocationStore"]

SESSIONS_PREFIX = "triohub:ended-session:"
"""Keys of revoked session ids (the id follows)."""


class RedisRevocationStore:
    """Revoked session ids in Redis (a ``RevocationStore``).

    Args:
        backplane: the process's link to Redis.
        prefix: the keys' prefix (one per application sharing a Redis).
        clock: Unix time (the cookie's expiry is Unix time).
    """

    def __init__(
        self,
        backplane: RedisBackplane,
        *,
        prefix: str = SESSIONS_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backplane = backplane
        self.prefix = prefix
        self._clock = clock

    async def revoke(self, session_id: str, *, until: float) -> None:
        if until <= self._clock():
            await trio.lowlevel.checkpoint()
            return  # the credential is already dead: nothing to remember
        key = self.prefix + session_id
        expiry = math.ceil(until)

        async def store(client: coredis.Redis[bytes]) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.set(key, "1", keepttl=True)
                # NX gives a new key its expiry; GT only ever extends it (a
                # later sign-out of the same session never shortens it).
                pipe.expireat(key, expiry, PureToken.NX)
                pipe.expireat(key, expiry, PureToken.GT)

        await self.backplane.command("revoking a session", store)

    async def is_revoked(self, session_id: str) -> bool:
        key = self.prefix + session_id
        found = await self.backplane.command("checking a session", lambda c: c.exists([key]))
        return bool(found)
