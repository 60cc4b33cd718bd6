"""The server side of the native server tests: the hubs, bearer tokens, and
``Native``, one running ``HubServer`` + ``serve_native`` (the ``start_native`` and
``native`` fixtures of ``native_fixtures`` make them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import trio

from demo.echo import EchoHub
from triohub import HubServer, JwtBearerAuthenticator, JwtBearerOptions, authorize

from ..auth.support import AUDIENCE, ISSUER, SECRET, claims, sign

HUB = "/hubs/native"
PRIVATE = "/hubs/private"
OTHER = "/hubs/other"


# -- the hubs -----------------------------------------------------------------------


class Journal:
    """How the hub's connections ended (``on_disconnected``'s error, by connection id)."""

    def __init__(self) -> None:
        self.ended: dict[str, str | None] = {}
        self.changed = trio.Event()

    def note(self, connection_id: str, error: BaseException | None) -> None:
        self.ended[connection_id] = None if error is None else str(error)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_ended(self, connection_id: str) -> str | None:
        while connection_id not in self.ended:
            await self.changed.wait()
        return self.ended[connection_id]


class NativeHub(EchoHub):
    """The demo's echo hub, a burst of large broadcasts, and a lifetime journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def blast(self, count: int, size: int) -> int:
        for index in range(count):
            await self.clients.all.send("Blob", index, "x" * size)
        return count

    async def on_disconnected(self, error: BaseException | None) -> None:
        self.journal.note(self.context.connection_id, error)


@authorize
class PrivateHub(EchoHub):
    """Authenticated users only."""


# -- bearer tokens ------------------------------------------------------------------


def authenticator() -> JwtBearerAuthenticator:
    return JwtBearerAuthenticator(
        JwtBearerOptions(algorithms=("HS256",), key=SECRET, issuer=ISSUER, audience=AUDIENCE)
    )


def token_for(user: str, lifetime: float = 3600) -> str:
    return sign(claims(user, lifetime=lifetime))


# -- the server ---------------------------------------------------------------------


@attrs.frozen
class Native:
    server: HubServer
    port: int
    listener: trio.CancelScope
    """Cancel to stop ``serve_native`` (the hub server keeps running)."""
    journal: Journal
    """How the connections of ``HUB`` and ``OTHER`` ended."""

    def ws_url(self, path: str = HUB, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}{path}{'?' + query if query else ''}"


StartNative = Callable[..., Awaitable[Native]]
