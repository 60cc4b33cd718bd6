"""``python -m demo --host 127.0.0.1 --port 8000`` (port 0 picks a free one).

``--redis redis://127.0.0.1:6379/0``: one node of a cluster; every node on that
Redis (with the same ``DEMO_JWT_SECRET``) shares the hubs and the ban list.

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

from .app import build_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long open connections may finish (default: 5)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="scale out on this Redis (redis://[:password@]host:port/db, rediss:// for TLS)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def run() -> None:
        app = build_app(redis_url=args.redis)
        async with trio.open_nursery() as nursery:
            [(host, port)] = await nursery.start(
                partial(
                    run_until_signalled,
                    app.server,
                    partial(serve_hypercorn, app, args.host, args.port),
                    grace=args.shutdown_grace,
                )
            )
            backplane = app.server.backplane
            if backplane is not None:
                with trio.move_on_after(10):
                    await backplane.wait_connected()
            shown = f"[{host}]" if ":" in host else host
            print(f"triohub demo listening on http://{shown}:{port}", flush=True)

    try:
        trio.run(run)
    except* KeyboardInterrupt:
        pass  # Ctrl+C before the signal handlers were in place (start-up): exit 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
