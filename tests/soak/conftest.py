"""Soak tests run only when asked for (``make soak``: ``pytest tests/soak -m soak``).

Deselected here rather than by an ``addopts`` ``-m "not soak"``, which any other
``-m`` (``make test-fast``'s ``-m "not e2e"``) would replace.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SOAK_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.option.markexpr or ""):
        return
    soak = [item for item in items if item.path.is_relative_to(SOAK_DIR)]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if not item.path.is_relative_to(SOAK_DIR)]
