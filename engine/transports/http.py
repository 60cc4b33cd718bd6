"""Small ASGI HTTP helpers: answers, body reading, request metadata."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from ..auth.request import RequestInfo
from ..hub.access import Verdict

__all__ = [
    "Receive",
    "Scope",
    "Send",
    "log_refusal",
    "read_body",
    "request_info",
    "respond",
]

log = logging.getLogger("triohub.transports")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

NO_CACHE = [
    (b"cache-control", b"no-cache, no-store"),
    (b"pragma", b"no-cache"),
    (b"expires", b"Thu, 01 Jan 1970 00:00:00 GMT"),
]


class BodyTooLarge(Exception):
    pass


async def respond(
    send: Send,
    status: int,
    body: bytes = b"",
    *,
    content_type: str | None = "text/plain",
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A complete HTTP response with an explicit Content-Length."""
    raw = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        raw.append((b"content-type", content_type.encode()))
    raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive, limit: int | None) -> bytes:
    """The whole request body.

    Raises:
        BodyTooLarge: more than ``limit`` bytes.
        ConnectionError: the client went away mid-body.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise ConnectionError("client disconnected while sending the body")
        chunk = event.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
        if not event.get("more_body", False):
            return b"".join(chunks)


def parse_query(raw: str) -> dict[str, tuple[str, ...]]:
    """A query string as a multi-map (keys as sent, blank values kept)."""
    found: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        found.setdefault(key, []).append(value)
    return {key: tuple(values) for key, values in found.items()}


def parse_headers(raw: Iterable[tuple[bytes | str, bytes | str]]) -> dict[str, tuple[str, ...]]:
    """Raw header pairs as a multi-map with lower-case names."""
    found: dict[str, list[str]] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        found.setdefault(name.lower(), []).append(value)
    return {name: tuple(values) for name, values in found.items()}


def query_of(scope: Scope) -> dict[str, tuple[str, ...]]:
    return parse_query(scope.get("query_string", b"").decode("latin-1"))


def request_info(scope: Scope, hub_path: str | None) -> RequestInfo:
    client = scope.get("client")
    return RequestInfo(
        method=scope.get("method", "GET"),
        path=scope.get("path", "/"),
        query=query_of(scope),
        headers=parse_headers(scope.get("headers", ())),
        client=(str(client[0]), int(client[1])) if client else None,
        scheme=scope.get("scheme", "http"),
        hub_path=hub_path,
    )


def log_refusal(request: RequestInfo, verdict: Verdict) -> None:
    """One line per refused request (never its credentials)."""
    if not verdict.allowed:
        log.info(
            "%s %s refused with %d: %s",
            request.method,
            request.path,
            verdict.status,
            verdict.reason,
        )
