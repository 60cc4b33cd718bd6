"""The hypercorn floor: a raw ASGI WebSocket app under hypercorn's own trio
worker, no hub, the least work per message on the stack triohub's ASGI app runs on.

The same rules as ``floor_server.py`` (the trio-websocket floor):

* any message starting with ``{`` is echoed back as it came;
* ``B<payload>`` sends ``<payload>`` to every connection, one ``websocket.send``
  each, in the sender's task;
* ``U<user>|<payload>`` does the same for the connections whose ``user`` query
  parameter is ``<user>``;
* with ``--key``, the opening request must carry a valid JWT in
  ``access_token`` (validated with pyjwt, as triohub does), else 403 (a close
  before accepting).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.servers.common import jwt_key, parse_args, ready, token_valid

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def build_app(args: Any) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    key = jwt_key(args)
    everyone: set[Send] = set()
    users: dict[str, set[Send]] = {}

    async def fan_out(targets: list[Send], payload: str) -> None:
        event = {"type": "websocket.send", "text": payload}
        for target in targets:
            try:
                await target(event)
            except Exception:
                pass  # that socket is gone

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "websocket":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        query = parse_qs(scope["query_string"].decode("latin-1"))
        if (await receive())["type"] != "websocket.connect":
            return
        token = (query.get("access_token") or [""])[0]
        if key is not None and not token_valid(args, key, token):
            await send({"type": "websocket.close", "code": 1008})
            return
        user = (query.get("user") or [None])[0]
        await send({"type": "websocket.accept"})
        everyone.add(send)
        if user is not None:
            users.setdefault(user, set()).add(send)
        try:
            while True:
                event = await receive()
                if event["type"] != "websocket.receive":
                    return
                message = event.get("text") or ""
                kind = message[:1]
                if kind == "{":
                    await send({"type": "websocket.send", "text": message})
                elif kind == "B":
                    await fan_out(list(everyone), message[1:])
                elif kind == "U":
                    name, _, payload = message[1:].partition("|")
                    await fan_out(list(users.get(name, ())), payload)
        finally:
            everyone.discard(send)
            if user is not None:
                users[user].discard(send)

    return app


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.backlog = 1024
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            lambda task_status: serve(build_app(args), config, task_status=task_status)
        )
        ready(int(binds[0].rsplit(":", 1)[1]))


if __name__ == "__main__":
    trio.run(main)
