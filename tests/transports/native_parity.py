"""The requests the native server and the ASGI app (under hypercorn) must answer
alike, and how one is asked and its answer reduced to what can be compared (the
random connection ids are replaced by ``<id>``)."""

from __future__ import annotations

from typing import Any

import attrs
import orjson
import pytest

from triohub import TransportType

from .native_support import HUB, PRIVATE
from .native_wire import Wire
from .support import ID


@attrs.frozen
class Ask:
    """One request, asked of both servers. ``{anonymous}`` / ``{alice}`` in the target
    stand for the token of a connection negotiated anonymously / by alice."""

    method: str
    target: str
    user: str | None = None
    """Whose bearer token goes with it (on the query for an upgrade)."""
    upgrade: bool = False
    accept: str | None = None


WEBSOCKETS_ONLY: frozenset[TransportType] = frozenset({TransportType.WEBSOCKETS})


PARITY = [
    pytest.param(Ask("POST", f"{HUB}/negotiate?negotiateVersion=1"), id="negotiate-v1"),
    pytest.param(Ask("POST", f"{HUB}/negotiate"), id="negotiate-v0"),
    pytest.param(Ask("POST", f"{HUB}/negotiate", user="expired"), id="negotiate-expired"),
    pytest.param(Ask("GET", f"{HUB}/negotiate"), id="negotiate-get"),
    pytest.param(Ask("POST", "/hubs/none/negotiate"), id="unknown-path"),
    pytest.param(Ask("PUT", HUB), id="put"),
    pytest.param(Ask("POST", HUB), id="post-without-id"),
    pytest.param(Ask("POST", f"{HUB}?id=nope"), id="post-unknown-id"),
    pytest.param(
        Ask("POST", f"{HUB}?id={{anonymous}}"),
        id="post-unbound-id",
    ),
    pytest.param(
        Ask("POST", f"{HUB}?id={{alice}}", user="bob"),
        id="post-another-users-id",
    ),
    pytest.param(Ask("DELETE", f"{HUB}?id={{anonymous}}"), id="delete-unbound-id"),
    pytest.param(
        Ask("DELETE", f"{HUB}?id={{alice}}", user="bob"),
        id="delete-another-users-id",
    ),
    pytest.param(
        Ask("GET", HUB),
        id="get-without-id",
    ),
    pytest.param(
        Ask("GET", f"{HUB}?id=nope"),
        id="get-unknown-id",
    ),
    pytest.param(Ask("GET", f"{HUB}?id={{anonymous}}"), id="get-negotiated-id"),
    pytest.param(
        Ask("GET", f"{HUB}?id={{anonymous}}", accept="text/event-stream"), id="sse-negotiated-id"
    ),
    pytest.param(
        Ask("GET", f"{HUB}?id={{alice}}", user="bob"),
        id="get-another-users-id",
    ),
    pytest.param(Ask("GET", f"{HUB}?id=nope", upgrade=True), id="upgrade-unknown-id"),
    pytest.param(
        Ask("GET", f"{HUB}?id={{alice}}", user="bob", upgrade=True), id="upgrade-another-user"
    ),
    pytest.param(Ask("GET", f"{HUB}?id={{alice}}", upgrade=True), id="upgrade-anonymous"),
    pytest.param(Ask("GET", PRIVATE, upgrade=True), id="upgrade-private-anonymous"),
    pytest.param(Ask("GET", PRIVATE, user="expired", upgrade=True), id="upgrade-private-expired"),
]


async def ask_answer(port: int, ask: Ask, tokens: dict[str, str]) -> tuple[Any, ...]:
    wire = await Wire.connect(port)
    ids: dict[str, str] = {}
    for name, user in (("anonymous", None), ("alice", "alice")):
        auth = (("Authorization", f"Bearer {tokens[user]}"),) if user else ()
        negotiate = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1", *auth)
        ids[name] = orjson.loads(negotiate.body)["connectionToken"]
    target = ask.target.format(**ids)
    headers: tuple[tuple[str, str], ...] = (("Accept", ask.accept),) if ask.accept else ()
    if ask.upgrade:
        if ask.user:
            target += f"{'&' if '?' in target else '?'}access_token={tokens[ask.user]}"
        response = await wire.upgrade(target, *headers)
    else:
        if ask.user:
            headers += (("Authorization", f"Bearer {tokens[ask.user]}"),)
        response = await wire.request(ask.method, target, *headers)
    body: Any = response.body
    if response.header("content-type") == "application/json":
        body = orjson.loads(body)
        for key in ("connectionId", "connectionToken"):
            if key in body:
                assert ID.fullmatch(body[key]), body
                body[key] = "<id>"
    challenge = tuple(response.all("www-authenticate"))
    return response.status, response.header("content-type"), body, challenge
