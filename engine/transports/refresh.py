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
other request of the hub. In a cluster, a node that does not hold the
connection checks the token and the user too, then forwards the request (its
credential included) to the holder, which checks it again and applies it
(``forwarding.py``); the holder's answer comes back as it is.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import attrs
import orjson

from ..hub.access import Verdict
from ..hub.credentials import ANOTHER_USER, CREDENTIAL_REQUIRED, RefreshRefused
from .connections import ConnectionTable
from .http import parse_query

if TYPE_CHECKING:
    from ..hub.server import HubRegistration, HubServer

__all__ = ["RefreshAnswer", "refresh", "refused", "refused_elsewhere"]

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


_NOT_FOUND = _error(404, "connection_not_found", "No such connection.")


def refused(verdict: Verdict) -> RefreshAnswer:
    """A refresh request refused by ``check_request`` (401 / 403), in this route's shape."""
    if verdict.status == 401:
        description = verdict.description or CREDENTIAL_REQUIRED
        return _error(401, "invalid_token", description, verdict.headers)
    return _error(verdict.status, "forbidden", "The credential may not use this hub.")


def refused_elsewhere(status: int, headers: tuple[Header, ...] = ()) -> RefreshAnswer:
    """A refresh of a connection another node may hold, refused on the node
    that received it before (or instead of) forwarding it there
    (``cluster.ClusterTokens.elsewhere``): 401 no valid credential (``headers``:
    its challenge), 403 another user's, 404 no such connection (a token that
    is not ours, or nobody holds it), 503 the holder cannot be asked."""
    if status == 401:
        return _error(401, "invalid_token", CREDENTIAL_REQUIRED, headers)
    if status == 403:
        return _error(403, "forbidden", ANOTHER_USER)
    if status == 404:
        return _NOT_FOUND
    return _error(status, "unavailable", "The node holding the connection cannot be asked.")


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
        return _NOT_FOUND
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
