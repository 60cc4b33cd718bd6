"""Trusted reverse proxies: what they say about a request is believed only
when the request comes from one of their addresses.

``TrustedProxies`` reads ``X-Forwarded-Proto`` (was the browser's connection
TLS? then cookies get ``Secure`` and the page's origin is ``https``) and
``X-Forwarded-For`` (the client address that sign-in throttling counts).
``TrustedHeaderAuthenticator`` takes the identity a proxy asserts (the
analogue of Windows authentication behind IIS): the proxy authenticates the
user and passes the name in a header.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection

from .authenticator import AuthenticationRefused
from .principal import Principal
from .request import RequestInfo

__all__ = ["TrustedHeaderAuthenticator", "TrustedProxies"]

log = logging.getLogger("triohub.auth")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class TrustedProxies:
    """The reverse proxies whose ``X-Forwarded-*`` headers are believed.

    With no proxies (the default) nothing forwarded is believed: a client
    could otherwise claim TLS or another address by sending the header itself.

    Args:
        proxies: addresses or networks (``"10.0.0.0/8"``, ``"::1"``).
    """

    def __init__(self, proxies: Collection[str] = ()) -> None:
        self.networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(p.strip(), strict=False) for p in proxies
        )

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        """Whether ``address`` (an IP as text) is one of the proxies."""
        found = _address(address) if address is not None else None
        return found is not None and any(found in network for network in self.networks)

    def from_proxy(self, request: RequestInfo) -> bool:
        """Whether the request's peer is one of the proxies."""
        return request.client is not None and self.trusts(request.client[0])

    def scheme(self, request: RequestInfo) -> str:
        """``http`` or ``https`` (``ws``/``wss`` map to these) as the browser used it.

        ``X-Forwarded-Proto`` counts only from a trusted proxy, and only its
        last value (the one the nearest proxy added).
        """
        scheme = {"ws": "http", "wss": "https"}.get(request.scheme, request.scheme)
        if self.from_proxy(request):
            values = request.headers.get("x-forwarded-proto", ())
            forwarded = values[-1].split(",")[-1].strip().lower() if values else ""
            if forwarded in ("http", "https"):
                return forwarded
        return scheme

    def client_address(self, request: RequestInfo) -> str | None:
        """The address of the client: the peer, or, when the peer is a trusted
        proxy, the right-most ``X-Forwarded-For`` address that is not a trusted
        proxy itself (the ones to its left were written by the client and prove
        nothing)."""
        peer = request.client[0] if request.client is not None else None
        if peer is None or not self.trusts(peer):
            return peer
        hops = [
            hop.strip()
            for value in request.headers.get("x-forwarded-for", ())
            for hop in value.split(",")
        ]
        for hop in reversed(hops):
            if _address(hop) is None:
                return peer  # garbage in the chain: believe only what we saw
            if not self.trusts(hop):
                return hop
        return peer


class TrustedHeaderAuthenticator:
    """Reads the user name from ``header`` on requests from ``trusted_proxies``.

    A request that carries the header from any other address is refused (403):
    someone is trying to claim an identity.

    Args:
        header: e.g. ``X-Authenticated-User``.
        trusted_proxies: addresses or networks (``"10.0.0.0/8"``) of the proxies.
        roles_header: optional header with comma-separated roles.
    """

    def __init__(
        self,
        header: str,
        trusted_proxies: Collection[str],
        *,
        roles_header: str | None = None,
        scheme_name: str = "TrustedHeader",
    ) -> None:
        self.header = header.lower()
        self.proxies = TrustedProxies(trusted_proxies)
        if not self.proxies:
            raise ValueError("TrustedHeaderAuthenticator needs at least one trusted proxy")
        self.roles_header = roles_header.lower() if roles_header else None
        self.scheme_name = scheme_name

    @property
    def challenge(self) -> str | None:
        return None

    async def authenticate(self, request: RequestInfo) -> Principal | None:
        name = request.header(self.header)
        if name is None:
            return None
        if not self.proxies.from_proxy(request):
            raise AuthenticationRefused(f"{self.header} header from an untrusted address")
        name = name.strip()
        if not name:
            return None
        claims: dict[str, object] = {"sub": name, "name": name}
        if self.roles_header is not None:
            roles = request.header(self.roles_header) or ""
            claims["role"] = [r.strip() for r in roles.split(",") if r.strip()]
        return Principal(claims, scheme=self.scheme_name)
