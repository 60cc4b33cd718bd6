"""Small ASGI HTTP helpers: answers, body reading, request metadata."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..auth.request import RequestInfo
from ..hub.access import Verdict
from ..protocol.websocket import valid_key

__all__ = [
    "BAD_UPGRADE",
    "Receive",
    "Scope",
    "Send",
    "host_problem",
    "log_refusal",
    "origin_form",
    "read_body",
    "request_info",
    "respond",
    "route_path",
    "upgrade_problem",
]

log = logging.getLogger("triohub.transports")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

NO_CACHE = (
    (b"cache-control", b"no-cache, no-store"),
    (b"pragma", b"no-cache"),
    (b"expires", b"Thu, 01 Jan 1970 00:00:00 GMT"),
)


BAD_UPGRADE = (400, ((b"sec-websocket-version", b"13"),))
"""Status and headers of a refused WebSocket upgrade request (``upgrade_problem``);
the body is empty, as hypercorn's own refusals of upgrades (the problem is logged)."""

_ENCODED_SLASH = re.compile("%2f", re.IGNORECASE)


def route_path(raw: str) -> str:
    """The path the servers route on: percent-decoded, except ``%2F``.

    An encoded slash is part of a segment, never a separator (as in ASP.NET
    Core): ``/hubs%2Fchat/negotiate`` must not reach the hub at ``/hubs/chat``,
    whatever the server decoded for the ASGI ``path``.

    Args:
        raw: the path as sent (ASGI ``raw_path``, or the request target's path).
    """
    if "%" not in raw:
        return raw
    return unquote(_ENCODED_SLASH.sub("%252F", raw), errors="surrogateescape")


def origin_form(target: bytes) -> bytes:
    """A request target in origin form (path and query): an absolute-form target
    (RFC 9112 3.2.2, ``http://host/path?query``) loses its scheme and authority
    (``Host`` says those), never its query; other forms are returned unchanged."""
    if not target.startswith((b"http://", b"https://")):
        return target
    rest = target.split(b"://", 1)[1]
    slash, query = rest.find(b"/"), rest.find(b"?")
    if slash < 0 or 0 <= query < slash:
        return b"/" + (rest[query:] if query >= 0 else b"")
    return rest[slash:]


def host_problem(http_version: str, hosts: tuple[str, ...]) -> str | None:
    """Why a request's ``Host`` header fields make it a 400 (RFC 9112 3.2: an
    HTTP/1.1 request has exactly one; none may have two), or ``None``."""
    if len(hosts) > 1:
        return "more than one Host header"
    if not hosts and http_version == "1.1":
        return "an HTTP/1.1 request needs a Host header"
    return None


def upgrade_problem(http_version: str, headers: Mapping[str, tuple[str, ...]]) -> str | None:
    """Why a WebSocket upgrade request must be refused (with ``BAD_UPGRADE``),
    or ``None``: RFC 6455 4.2.1 asks for HTTP/1.1 or later, version 13 and a
    key of 16 base64-encoded bytes.

    Args:
        http_version: ``"1.0"``, ``"1.1"``...
        headers: lower-case names to their values (``parse_headers``).
    """
    if http_version in ("0.9", "1.0"):
        return "a WebSocket upgrade needs HTTP/1.1"
    if headers.get("sec-websocket-version") != ("13",):
        return "Sec-WebSocket-Version must be 13"
    keys = headers.get("sec-websocket-key", ())
    if len(keys) != 1 or not valid_key(keys[0]):
        return "Sec-WebSocket-Key must be 16 bytes, base64-encoded"
    return None


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
