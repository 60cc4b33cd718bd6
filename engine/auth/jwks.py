"""Signing keys from a JWKS document (an OpenID Connect issuer's ``jwks_uri``).

Fetched off the event loop (``urllib`` in a worker thread: ``fetch_json``),
cached, and refreshed when a token names a key id the cache does not know, at
most once per ``min_refresh_interval`` so a flood of forged ``kid`` values
cannot turn into a flood of requests to the issuer.

The one outgoing request of the package lives here, next to the only code that
needs it, rather than in ``transports/`` (which serves clients and never calls
out): authentication decides what to fetch and how far to trust it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import jwt
import trio

__all__ = ["JwksKeySource", "fetch_json"]

log = logging.getLogger("triohub.auth")

Fetch = Callable[[], Awaitable[dict[str, Any]]]


async def fetch_json(url: str, *, time_limit: float = 10.0) -> dict[str, Any]:
    """GET ``url`` in a worker thread and parse its JSON object.

    Raises:
        ValueError: not an http(s) URL, or the document is not a JSON object.
        OSError: network failures.
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


def _secure_url(url: str, allow_http: bool) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if allow_http:
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JwksKeySource:
    """Keys by ``kid`` from a JWKS URL (or any async ``fetch`` returning the document).

    Args:
        url: the JWKS document's address.
        fetch: overrides how the document is fetched (tests, custom HTTP).
        cache_ttl: seconds before the cached keys are refetched anyway.
        min_refresh_interval: seconds between two fetches caused by unknown keys.
        timeout: seconds one fetch may take.
        allow_http: accept a plain ``http://`` URL that is not on loopback
            (ASP.NET's ``RequireHttpsMetadata = false``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        fetch: Fetch | None = None,
        cache_ttl: float = 3600.0,
        min_refresh_interval: float = 30.0,
        timeout: float = 10.0,
        allow_http: bool = False,
    ) -> None:
        if (url is None) == (fetch is None):
            raise ValueError("JwksKeySource needs exactly one of url= and fetch=")
        if url is not None and not _secure_url(url, allow_http):
            raise ValueError(
                f"the JWKS URL {url!r} is not HTTPS: whoever can alter the response "
                "chooses the signing keys; use https (plain http is allowed for "
                "loopback addresses, or with allow_http=True)"
            )
        self.url = url
        self._fetch = fetch or self._fetch_url
        self._cache_ttl = cache_ttl
        self._min_refresh = min_refresh_interval
        self._timeout = timeout
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = trio.Lock()
        self.fetches = 0

    async def _fetch_url(self) -> dict[str, Any]:
        assert self.url is not None
        return await fetch_json(self.url, time_limit=self._timeout)

    async def key_for(self, kid: str | None, algorithm: str) -> Any:
        """The verification key for ``kid``, or ``None`` if the issuer has none."""
        now = trio.current_time()
        stale = self._fetched_at is None or now - self._fetched_at >= self._cache_ttl
        if stale or (
            kid not in self._keys
            and (self._fetched_at is None or now - self._fetched_at >= self._min_refresh)
        ):
            await self._refresh()
        found = self._keys.get(kid)
        if found is None and kid is None and len(self._keys) == 1:
            found = next(iter(self._keys.values()))
        if found is None:
            return None
        if found.algorithm_name and found.algorithm_name != algorithm:
            return None
        return found.key

    async def _refresh(self) -> None:
        async with self._lock:
            now = trio.current_time()
            if self._fetched_at is not None and now - self._fetched_at < min(
                self._min_refresh, self._cache_ttl
            ):
                return  # another task refreshed while we waited
            self.fetches += 1
            try:
                with trio.fail_after(self._timeout):
                    document = await self._fetch()
                key_set = jwt.PyJWKSet.from_dict(document)
            except Exception as error:
                # Keep the old keys; try again after the refresh interval.
                log.warning("could not refresh the JWKS: %s", type(error).__name__)
                self._fetched_at = now
                return
            self._keys = {key.key_id: key for key in key_set.keys}
            self._fetched_at = now
