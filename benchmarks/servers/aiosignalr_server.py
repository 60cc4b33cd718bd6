"""aiosignalr (asyncio, aiohttp) under benchmark: the same hub methods.

aiosignalr has no authentication or authorization: a connection's user id is
taken from its ``user`` query parameter in ``on_connected``, and scenarios
that need JWTs or policies are marked as not supported for it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aiosignalr.server import Hub, SignalRServer

from benchmarks.servers.common import parse_args, ready


class BenchHub(Hub):
    # aiosignalr matches targets to lower-cased Python names, so the wire names
    # are spelled here; a return annotation makes it send the result.

    async def on_connected(self) -> None:
        self.context.user_id = self.context.query_string.get("user")

    async def Echo(self, value: str) -> str:
        return value

    async def Broadcast(self, value: str) -> None:
        await self.clients.all_.send("Receive", value)

    async def SendToUser(self, user: str, value: str) -> None:
        await self.clients.user(user).send("Receive", value)


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    server = SignalRServer(BenchHub)
    _, port = await server.serve(args.host, args.port, path=args.path)
    ready(port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
