"""Sessions that can end: a revocation store for session ids.

A signed session cookie is valid until it expires, whatever the server
thinks: signing alone cannot take it back. So every cookie carries a random
session id (``sid``), every request asks the store whether that id was
revoked, and sign-out revokes it.

A revoked id only has to be remembered while a cookie holding it could still
be accepted, so ``revoke`` is told until when (the cookie's own expiry) and
the store forgets it then: memory is bounded by the sign-outs of one cookie
lifetime, not by the life of the process.

``RevocationStore`` is the protocol; ``MemoryRevocationStore`` serves one
process; ``triohub.backplane.sessions.RedisRevocationStore`` is shared by
every node of a cluster (a key per id expiring at ``until``, ``EXISTS``).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import trio

__all__ = ["MemoryRevocationStore", "RevocationStore"]


@runtime_checkable
class RevocationStore(Protocol):
    """Where revoked session ids are kept until their cookies would have expired."""

    async def revoke(self, session_id: str, *, until: float) -> None:
        """Refuse ``session_id`` from now on; it may be forgotten after ``until``
        (Unix time: the expiry of the last credential that carries it)."""
        ...

    async def is_revoked(self, session_id: str) -> bool:
        """Whether ``session_id`` was revoked (and ``until`` has not passed)."""
        ...


class MemoryRevocationStore:
    """Revoked session ids in this process's memory.

    Entries are dropped once their ``until`` has passed (checked on every
    ``revoke``), so the store holds at most the ids revoked during one
    cookie lifetime.

    Args:
        clock: Unix time (injected in tests; the cookie's expiry is Unix time).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._until)

    async def revoke(self, session_id: str, *, until: float) -> None:
        await trio.lowlevel.checkpoint()
        self._forget_expired()
        if until <= self._clock():
            return  # the credential is already dead: nothing to remember
        if until > self._until.get(session_id, float("-inf")):
            self._until[session_id] = until
            heapq.heappush(self._expiries, (until, session_id))

    async def is_revoked(self, session_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        until = self._until.get(session_id)
        return until is not None and until > self._clock()

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            until, session_id = heapq.heappop(self._expiries)
            if self._until.get(session_id) == until:
                del self._until[session_id]
