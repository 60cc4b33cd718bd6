"""The demo's hubs on triohub's own server, for the soak.

``serve_native`` serves hubs only (negotiate and WebSockets), so
``python -m demo`` cannot run on it as a whole; this runs the demo's
``HubServer`` (``build_app``) on it, and the rest of the demo (sign-in, tokens)
on hypercorn on a second port, both under ``run_until_signalled``.

``python -m tests.soak.native_app`` prints two listening lines: hubs, then web.
"""

from __future__ import annotations

import argparse
import logging
from functools import partial

import trio

from demo.app import build_app
from triohub.transports.hypercorn import serve_hypercorn
from triohub.transports.lifecycle import run_until_signalled
from triohub.transports.native import serve_native


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.native_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def run() -> None:
        app = build_app()
        async with trio.open_nursery() as nursery:
            [(host, hubs), (_, web)] = await nursery.start(
                partial(
                    run_until_signalled,
                    app.server,
                    partial(serve_native, app.server, args.host, 0),
                    partial(serve_hypercorn, app, args.host, 0),
                )
            )
            print(f"hubs (native) listening on http://{host}:{hubs}", flush=True)
            print(f"web (hypercorn) listening on http://{host}:{web}", flush=True)

    trio.run(run)


if __name__ == "__main__":
    main()
