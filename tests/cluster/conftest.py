from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from ..backplane.redis_server import RedisServer, redis_server
from .support import Clock, Node, open_nodes


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def nodes(
    redis: RedisServer, nursery: trio.Nursery, clock: Clock
) -> AsyncIterator[list[Node]]:
    async with open_nodes(redis.url, nursery, clock=clock) as made:
        yield made
