"""Send to the demo's chat from a process that serves nobody (a worker, a cron job).

    python -m demo.send --redis redis://127.0.0.1:6379/0 --user bob@contoso.example "hello"

Builds a hub context on the cluster's Redis, sends ``ReceiveMessage`` to the
users named (everyone without ``--user``), waits until Redis has it, and exits.
"""

from __future__ import annotations

import argparse
import sys

import trio

from triohub import HubServer
from triohub.backplane.redis import RedisBackplane

from .chat import ChatHub, ChatState, chat_policies


async def send(url: str, users: list[str], sender: str, message: str) -> None:
    backplane = RedisBackplane(url)
    # The hub's policies are needed to map it (they are checked at mapping), not used.
    server = HubServer(backplane=backplane, policies=chat_policies(ChatState()))
    server.map_hub("/hubs/chat", ChatHub)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        with trio.fail_after(10):
            await backplane.wait_connected()
        clients = server.hub_context(ChatHub).clients
        proxy = clients.users(users) if users else clients.all
        await proxy.send("ReceiveMessage", sender, message)
        await server.hubs["/hubs/chat"].router.barrier()
        with trio.fail_after(10):
            await backplane.flush()
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.send", description=__doc__)
    parser.add_argument("--redis", required=True, metavar="URL")
    parser.add_argument("--user", action="append", default=[], help="a user id (repeatable)")
    parser.add_argument("--sender", default="worker")
    parser.add_argument("message")
    args = parser.parse_args(argv)
    trio.run(send, args.redis, args.user, args.sender, args.message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
