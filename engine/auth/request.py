"""The HTTP metadata of a request, as authenticators see it."""

from __future__ import annotations

from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from types import MappingProxyType
from typing import Any

import attrs

__all__ = ["RequestInfo"]


def _freeze(value: Mapping[str, tuple[str, ...]] | None) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType(dict(value or {}))


@attrs.frozen(repr=False)
class RequestInfo:
    """One negotiate or transport request: method, path, query, headers, cookies.

    Header names are lower-case; query keys are kept as sent (use
    ``query_value`` for the reference's case-insensitive lookup).
    """

    method: str
    path: str
    query: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, converter=_freeze)
    headers: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, converter=_freeze)
    client: tuple[str, int] | None = None
    scheme: str = "http"
    hub_path: str | None = None
    """The hub this request belongs to, or ``None`` for other paths (query-string
    tokens are only honoured on hub paths)."""

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def query_value(self, name: str) -> str | None:
        wanted = name.lower()
        for key, values in self.query.items():
            if key.lower() == wanted and values:
                return values[0]
        return None

    @property
    def cookies(self) -> Mapping[str, str]:
        jar: dict[str, str] = {}
        for header in self.headers.get("cookie", ()):
            parsed: SimpleCookie = SimpleCookie()
            try:
                parsed.load(header)
            except CookieError:
                continue
            jar.update({key: morsel.value for key, morsel in parsed.items()})
        return jar

    @property
    def origin(self) -> str | None:
        return self.header("origin")

    def __repr__(self) -> str:
        # Headers and query carry credentials: never in a repr (logs, tracebacks).
        return f"<RequestInfo {self.method} {self.path}>"

    def redacted(self) -> dict[str, Any]:
        """For logs: no token, no cookie, no Authorization value."""
        return {
            "method": self.method,
            "path": self.path,
            "query": sorted(k for k in self.query if k.lower() != "access_token"),
            "client": self.client,
        }
