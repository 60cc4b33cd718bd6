"""``POST {hub}/refresh?id={connectionToken}``: a fresh credential of the same
user replaces a live connection's principal and expiry in place
(``HubServer.refresh_authentication``), whatever its transport.

The wire shape follows what ASP.NET Core 11 adds (as seen in an intermediate
commit of dotnet/aspnetcore; the released source was not available to check,
so names may differ): the credential comes as on every request (a bearer
token in ``Authorization``, or ``access_token`` in the query, or the cookie);
``200 {"connectionId", "refreshedAt", "tokenLifetimeSeconds"}``; errors as
``{"error", "error_description"}``: 400 ``missing_connection_token``, 401
``invalid_token`` (with the scheme's ``WWW-Authenticate`` challenge), 403
``forbidden`` (another user's credential: the connection is unchanged), 404
``refresh_disabled`` / ``connection_not_found``. ``refreshedAt`` is ISO 8601
in UTC. Only connections that negotiated (and so have a token) can be
refreshed, as in ASP.NET (negotiate v1).

The request is authenticated and checked against the hub's policy, bans and
revocations (``check_request``) before anything looks at the id, like every
other request of the hub.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import attrs
import orjson

from ..hub.access import Verdict
from ..hub.credentials import RefreshRefused
from .connections import ConnectionTable
from .http import parse_query

if TYPE_CHECKING:
    from ..hub.server import HubRegistration, HubServer

__all__ = ["RefreshAnswer", "refresh", "refused"]

Header = tuple[bytes, bytes]


@attrs.frozen
class RefreshAnswer:
    """The response to a refresh request (always JSON)."""

    status: int
    body: bytes
    headers: tuple[Header, ...] = ()


def _error(
    status: int, error: str, description: str, headers: tuple[Header, ...] = ()
) -> RefreshAnswer:
    return RefreshAnswer(
        status, orjson.dumps({"error": error, "error_description": description}), headers
    )


def refused(verdict: Verdict) -> RefreshAnswer:
    """A refresh request refused by ``check_request`` (401 / 403), in this route's shape."""
    if verdict.status == 401:
        description = verdict.description or "A valid credential is required."
        return _error(401, "invalid_token", description, verdict.headers)
    return _error(verdict.status, "forbidden", "The credential may not use this hub.")


async def refresh(
    server: HubServer,
    connections: ConnectionTable,
    registration: HubRegistration,
    query: str,
    verdict: Verdict,
) -> RefreshAnswer:
    """Answer an allowed (``verdict.allowed``) refresh request of ``registration``."""
    if not verdict.allowed:
        return refused(verdict)
    token = (parse_query(query).get("id") or ("",))[0]
    if not token:
        return _error(400, "missing_connection_token", "The id query parameter is required.")
    connection = connections.get(token)
    if connection is None or connection.registration is not registration:
        return _error(404, "connection_not_found", "No such connection.")
    try:
        refreshed = await server.refresh_authentication(connection.connection_id, verdict.principal)
    except RefreshRefused as refusal:
        headers = verdict.headers if refusal.status == 401 else ()
        return _error(refusal.status, refusal.error, refusal.description, headers)
    # Later SSE and long-polling requests must come from this user, now with this credential.
    connection.principal = verdict.principal
    at = datetime.datetime.fromtimestamp(refreshed.refreshed_at, datetime.UTC)
    lifetime = refreshed.token_lifetime
    body = {
        "connectionId": refreshed.connection_id,
        "refreshedAt": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "tokenLifetimeSeconds": None if lifetime is None else int(lifetime),
    }
    return RefreshAnswer(200, orjson.dumps(body))
