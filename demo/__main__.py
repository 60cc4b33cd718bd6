"""``python -m demo --host 127.0.0.1 --port 8000`` (port 0 picks a free one).

``--server hypercorn`` (the default) serves the demo's ASGI app under hypercorn;
``--server native`` serves the hubs on triohub's own server, every transport, with
the demo's pages and sign-in as its fallback app, on the same port.

SIGTERM (``docker stop``, Kubernetes, systemd) and SIGINT (Ctrl+C) stop it
gracefully: every client is sent a Close record that allows reconnecting, open
work gets ``--shutdown-grace`` seconds, and the process exits 0. A second signal
stops it at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial

import trio

from triohub.transports.hypercorn import serve_hypercorn
from triohub.transports.lifecycle import run_until_signalled
from triohub.transports.native import serve_native

from .app import build_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--server",
        choices=("hypercorn", "native"),
        default="hypercorn",
        help="hypercorn (ASGI, the default) or triohub's own server (native)",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long open connections may finish (default: 5)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def run() -> None:
        app = build_app()
        if args.server == "native":
            serve = partial(serve_native, app.server, args.host, args.port, fallback=app.fallback)
        else:
            serve = partial(serve_hypercorn, app, args.host, args.port)
        async with trio.open_nursery() as nursery:
            [(host, port)] = await nursery.start(
                partial(run_until_signalled, app.server, serve, grace=args.shutdown_grace)
            )
            shown = f"[{host}]" if ":" in host else host
            print(f"triohub demo listening on http://{shown}:{port}", flush=True)

    try:
        trio.run(run)
    except* KeyboardInterrupt:
        pass  # Ctrl+C before the signal handlers were in place (start-up): exit 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
