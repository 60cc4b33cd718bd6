"""The floor: a raw trio-websocket server, no hub, the least work per message.

* any message starting with ``{`` is echoed back as it came;
* ``B<payload>`` sends ``<payload>`` to every connection, one ``send_message``
  each, in the sender's task;
* ``U<user>|<payload>`` does the same for the connections whose ``user`` query
  parameter is ``<user>``;
* with ``--key``, the opening request must carry a valid JWT in
  ``access_token`` (validated with pyjwt, as triohub does), else 401.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import parse_qs

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.servers.common import jwt_key, parse_args, ready, token_valid


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    key = jwt_key(args)
    everyone: set[WebSocketConnection] = set()
    users: dict[str, set[WebSocketConnection]] = {}

    async def fan_out(targets: list[WebSocketConnection], payload: str) -> None:
        for target in targets:
            try:
                await target.send_message(payload)
            except ConnectionClosed:
                pass

    async def handle(request: WebSocketRequest) -> None:
        _, _, query_string = request.path.partition("?")
        query = parse_qs(query_string)
        token = (query.get("access_token") or [""])[0]
        if key is not None and not token_valid(args, key, token):
            await request.reject(401)
            return
        user = (query.get("user") or [None])[0]
        ws = await request.accept()
        everyone.add(ws)
        if user is not None:
            users.setdefault(user, set()).add(ws)
        try:
            while True:
                message = await ws.get_message()
                assert isinstance(message, str)
                kind = message[:1]
                if kind == "{":
                    await ws.send_message(message)
                elif kind == "B":
                    await fan_out(list(everyone), message[1:])
                elif kind == "U":
                    name, _, payload = message[1:].partition("|")
                    await fan_out(list(users.get(name, ())), payload)
        except ConnectionClosed:
            pass
        finally:
            everyone.discard(ws)
            if user is not None:
                users[user].discard(ws)

    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            lambda task_status: serve_websocket(
                handle, args.host, args.port, None, task_status=task_status
            )
        )
        ready(listener.port)


if __name__ == "__main__":
    trio.run(main)
