"""Identity asserted by a trusted reverse proxy (the analogue of Windows
authentication behind IIS): the proxy authenticates the user and passes the
name in a header; only requests from the proxy's addresses are believed."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection

from .authenticator import AuthenticationRefused
from .principal import Principal
from .request import RequestInfo

__all__ = ["TrustedHeaderAuthenticator"]

log = logging.getLogger("triohub.auth")


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
        self.networks = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        if not self.networks:
            raise ValueError("TrustedHeaderAuthenticator needs at least one trusted proxy")
        self.roles_header = roles_header.lower() if roles_header else None
        self.scheme_name = scheme_name

    @property
    def challenge(self) -> str | None:
        return None

    def _trusted(self, request: RequestInfo) -> bool:
        if request.client is None:
            return False
        try:
            address = ipaddress.ip_address(request.client[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    async def authenticate(self, request: RequestInfo) -> Principal | None:
        name = request.header(self.header)
        if name is None:
            return None
        if not self._trusted(request):
            raise AuthenticationRefused(f"{self.header} header from an untrusted address")
        name = name.strip()
        if not name:
            return None
        claims: dict[str, object] = {"sub": name, "name": name}
        if self.roles_header is not None:
            roles = request.header(self.roles_header) or ""
            claims["role"] = [r.strip() for r in roles.split(",") if r.strip()]
        return Principal(claims, scheme=self.scheme_name)
