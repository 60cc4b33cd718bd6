"""A server in a process with few file descriptors, for the EMFILE tests.

``python -m tests.transports.fd_limited_server KIND LIMIT`` serves ``NativeHub`` at
``HUB`` with KIND ("hypercorn", "native", "trio-websocket") on a free port, lowers
RLIMIT_NOFILE to LIMIT, prints the port, logs to stderr (level, logger, message:
one line each, tracebacks as they come) and stops when stdin closes.
"""

from __future__ import annotations

import logging
import resource
import sys

import trio

from .hardening_support import running


async def main(kind: str, limit: int) -> None:
    async with running(kind) as served:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        print(served.port, flush=True)
        stdin = trio.lowlevel.FdStream(0)
        while await stdin.receive_some():
            pass


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    trio.run(main, sys.argv[1], int(sys.argv[2]))
