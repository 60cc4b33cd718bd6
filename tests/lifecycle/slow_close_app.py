"""A hub server whose connections take 60 s to close (``on_disconnected`` sleeps),
under ``run_until_signalled`` on triohub's own server: the second-signal test's
process. ``python -m tests.lifecycle.slow_close_app`` prints its listening line."""

from __future__ import annotations

from functools import partial

import trio

from demo.echo import EchoHub
from triohub import HubOptions, HubServer
from triohub.transports.lifecycle import run_until_signalled
from triohub.transports.native import serve_native

SLOW = 60.0


class SlowHub(EchoHub):
    async def on_disconnected(self, error: BaseException | None) -> None:
        await trio.sleep(SLOW)


async def main() -> None:
    server = HubServer(options=HubOptions(close_timeout=SLOW))
    server.map_hub("/hubs/slow", SlowHub)
    async with trio.open_nursery() as nursery:
        [(host, port)] = await nursery.start(
            partial(run_until_signalled, server, partial(serve_native, server, "127.0.0.1", 0)),
        )
        print(f"slow hub listening on http://{host}:{port}", flush=True)


if __name__ == "__main__":
    trio.run(main)
