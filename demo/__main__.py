"""``python -m demo --host 127.0.0.1 --port 8000`` (port 0 picks a free one).

Serves the chat demo (the page, sign-in, ``/api/token``, ``/hubs/chat``) and the
anonymous conformance hub ``/hubs/echo`` on one port.

``--server hypercorn`` (the default) serves the demo's ASGI app under hypercorn;
``--server native`` serves the hubs on triohub's own server, every transport, with
the demo's pages and sign-in as its fallback app, on the same port.

``--redis redis://127.0.0.1:6379/0``: one node of a cluster; every node on that
Redis (with the same ``DEMO_JWT_SECRET``) shares the hubs and the ban list, and
any node answers any request of any connection (no sticky sessions).
``--workers N --redis URL``: N such nodes, one process each, on one port.

SIGTERM (``docker stop``, Kubernetes, systemd) and SIGINT (Ctrl+C) stop it
gracefully: every client is sent a Close record that allows reconnecting, open
work gets ``--shutdown-grace`` seconds, and the process exits 0. A second signal
stops it at once.
"""

from __future__ import annotations

import argparse
import errno
import sys
from functools import partial

import trio

from triohub import ListenError, run_until_signalled, serve_hypercorn, serve_native
from triohub.transports.listening import http_address

from .app import build_app
from .observability import configure_logging, prometheus

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

ENVIRONMENT = """\
environment variables:
  DEMO_JWT_SECRET               key of the bearer tokens and session cookies; keeps them
                                valid across restarts (default: a random key per process)
  DEMO_SESSION_MAX_AGE          seconds a browser sign-in lasts (default: 28800, 8 hours)
  DEMO_SIGNIN_ACCOUNT_FAILURES  failed sign-ins per account before 429 (default: 5)
  DEMO_SIGNIN_ADDRESS_FAILURES  failed sign-ins per client address before 429 (default: 20)
  DEMO_SIGNIN_WINDOW            seconds over which failed sign-ins are forgiven (default: 300)
  DEMO_TRUSTED_PROXIES          comma-separated proxy addresses or networks whose
                                X-Forwarded-For / -Proto are believed (default: none)
"""


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description=__doc__,
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port to listen on; 0 picks a free one (default: 8000)",
    )
    parser.add_argument(
        "--server",
        choices=("hypercorn", "native"),
        default="hypercorn",
        help="hypercorn (ASGI, the default) or triohub's own server (native); both serve "
        "every transport and the pages on one port",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        help="what the server logs to stderr (default: INFO)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="text lines, or one JSON object per line for log pipelines (default: text)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="serve the server's metrics as Prometheus text on GET /metrics (default: off; "
        "needs the metrics extra: pip install -e '.[metrics]')",
    )
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
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve the port from N processes (SO_REUSEPORT), each a node of the "
        "--redis cluster (default: 1, this process)",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT, sharing the port with other processes (what "
        "--workers starts its workers with)",
    )
    return parser


def cannot_listen(error: ListenError) -> str:
    """The one line printed when the demo cannot listen, with the fix."""
    if error.errno == errno.EADDRINUSE:
        fix = f"choose another port: make demo PORT={error.port + 1} (PORT=0 picks a free one)"
    else:
        fix = "choose another address: make demo HOST=127.0.0.1"
    return f"error: {error}; {fix}"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.workers > 1:
        if not args.redis:
            parser().error("--workers needs --redis: the workers are nodes of one cluster")
        from .workers import run_workers

        return run_workers(args)
    configure_logging(args.log_level, args.log_format, worker=args.reuse_port)
    metrics = prometheus() if args.metrics else None

    async def run() -> None:
        app = build_app(redis_url=args.redis, metrics=metrics)
        if args.server == "native":
            serve = partial(
                serve_native,
                app.server,
                args.host,
                args.port,
                fallback=app.fallback,
                reuse_port=args.reuse_port,
            )
        else:
            serve = partial(serve_hypercorn, app, args.host, args.port, reuse_port=args.reuse_port)
        async with trio.open_nursery() as nursery:
            [(host, port)] = await nursery.start(
                partial(run_until_signalled, app.server, serve, grace=args.shutdown_grace)
            )
            backplane = app.server.backplane
            if backplane is not None:
                with trio.move_on_after(10):
                    await backplane.wait_connected()
                    # The hubs' channels too (asked for as the routers started,
                    # maybe after the link came up): reachable across the cluster.
                    await backplane.sync()
            print(f"triohub demo listening on {http_address(host, port)}", flush=True)

    status = 0
    try:
        trio.run(run)
    except* ListenError as group:
        # One line, no traceback: the address and the fix.
        print(cannot_listen(first_leaf(group)), file=sys.stderr, flush=True)
        status = 1
    except* KeyboardInterrupt:
        pass  # Ctrl+C before the signal handlers were in place (start-up): exit 0
    return status


def first_leaf(group: BaseExceptionGroup[ListenError]) -> ListenError:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, ListenError)
    return leaf


if __name__ == "__main__":
    sys.exit(main())
