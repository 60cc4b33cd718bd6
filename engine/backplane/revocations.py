"""Revocations shared by every node on the backplane.

A revocation made on one node (``server.revoke``, or a process that serves
nobody and runs a ``HubServer`` on the same broker) is:

1. kept in the broker (``Link.keep``: a Redis sorted set scored by the
   revocation's ``until``, whose entries and key expire with it), then
2. published on ``triohub:internal:revocations``; every other node puts it in
   force (``Credentials.apply_revocation``) and closes the connections it
   matches there, one broker round trip after the call.

A node that starts, or whose link to the broker comes back, subscribes first
and then loads what is kept, so a revocation made while it was away (down,
restarting, cut off) is in force before it serves (``run`` reports started
once the first load is done, or after ``load_timeout`` when the broker cannot
be reached: the node then serves and loads on the first link). A revocation
made while the broker is unreachable is in force on its node at once, and
kept and published when the link comes back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ..authorization.revocation import Revocation
from . import codec
from .hub import BackplaneUnavailable, Link

__all__ = ["REVOCATIONS_KEY", "SharedRevocations"]

log = logging.getLogger("triohub.backplane")

REVOCATIONS_KEY = "triohub:revocations"
"""The broker key that keeps the revocations in force."""


class SharedRevocations:
    """One server's side of the shared revocations.

    Args:
        link: the server's link to the broker.
        apply: puts a revocation in force on this node and closes the
            connections it matches (``Credentials.apply_revocation``).
        clock: Unix time.
        load_timeout: how long ``run`` waits for the first load before it
            reports started anyway (seconds).
    """

    def __init__(
        self,
        link: Link,
        apply: Callable[[Revocation], Awaitable[int]],
        *,
        clock: Callable[[], float],
        load_timeout: float = 5.0,
    ) -> None:
        self.link = link
        self._apply = apply
        self._clock = clock
        self.load_timeout = load_timeout
        self._unsent: list[Revocation] = []
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the other nodes' revocations until cancelled."""
        channel = codec.REVOCATIONS_CHANNEL
        self.link.subscribe(channel, self._on_revocation)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                loaded = trio.Event()
                nursery.start_soon(self._follow_links, loaded)
                with trio.move_on_after(self.load_timeout):
                    await loaded.wait()
                if not loaded.is_set():
                    log.warning(
                        "revocations: the broker was not reached within %.1f s; serving, "
                        "and loading the revocations when it is",
                        self.load_timeout,
                    )
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self.link.unsubscribe(channel)

    async def share(self, revocation: Revocation) -> None:
        """Keep ``revocation`` in the broker, then publish it to the other nodes
        (returns once Redis has delivered it). While the broker is unreachable
        it is kept and published when the link comes back."""
        try:
            await self._send(revocation)
        except BackplaneUnavailable as error:
            log.warning("revocations: %s; sharing the revocation when the link is back", error)
            self._unsent.append(revocation)

    async def _send(self, revocation: Revocation) -> None:
        data = codec.encode_revocation(self.link.server_name, revocation)
        # Kept before it is published: a node that subscribes in between loads it.
        await self.link.keep(REVOCATIONS_KEY, data, revocation.until)
        await self.link.publish(codec.REVOCATIONS_CHANNEL, data)

    async def _follow_links(self, loaded: trio.Event) -> None:
        """On every link to the broker: send what waited, then load what is kept."""
        while True:
            await self.link.wait_connected()
            try:
                await self.link.sync()  # subscribed before loading: nothing falls between
                while self._unsent:
                    await self._send(self._unsent[0])
                    self._unsent.pop(0)
                count = await self._load()
            except BackplaneUnavailable as error:
                log.warning("revocations: loading failed (%s); retrying on the next link", error)
            else:
                if count:
                    log.info("revocations: %d in force loaded from the broker", count)
                loaded.set()
            await self.link.wait_disconnected()

    async def _load(self) -> int:
        now = self._clock()
        count = 0
        for data in await self.link.kept(REVOCATIONS_KEY, now):
            try:
                _, revocation = codec.decode_revocation(data)
            except codec.CodecError as error:
                log.warning("revocations: skipped a kept entry that is not one (%s)", error)
                continue
            await self._apply(revocation)
            count += 1
        return count

    def _on_revocation(self, data: bytes) -> None:
        origin, revocation = codec.decode_revocation(data)
        if origin != self.link.server_name and self._nursery is not None:
            self._nursery.start_soon(self._apply, revocation)
