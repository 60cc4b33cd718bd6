"""Outgoing HTTP for the engine's own needs (JWKS documents), off the event loop."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import trio

__all__ = ["fetch_json"]


async def fetch_json(url: str, *, time_limit: float = 10.0) -> dict[str, Any]:
    """GET ``url`` in a worker thread and parse its JSON object.

    Raises:
        OSError: network failures; ValueError: not a JSON object.
    """
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"only http(s) URLs can be fetched, not {url!r}")

    def get() -> dict[str, Any]:
        with urllib.request.urlopen(url, timeout=time_limit) as response:
            document = json.loads(response.read())
        if not isinstance(document, dict):
            raise ValueError("the document is not a JSON object")
        return document

    return await trio.to_thread.run_sync(get, abandon_on_cancel=True)
