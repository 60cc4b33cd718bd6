"""The chat page in Chromium on ``python -m demo --workers 2 --redis URL``: one
port, two node processes, no affinity (the kernel spreads the browser's TCP
connections over the workers), the same test as on one process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backplane.redis_server import redis_server

from .conftest import Demo, running_demo
from .test_chat_browser import contexts, test_chat_page

__all__ = ["contexts", "test_chat_page"]


@pytest.fixture(params=["native", "hypercorn"])
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Demo]:
    with redis_server() as redis:
        args = ("--workers", "2", "--redis", redis.url)
        with running_demo(tmp_path / "workers.log", request.param, args) as found:
            yield found
