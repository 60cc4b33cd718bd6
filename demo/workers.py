"""``python -m demo --workers N --redis URL``: one port served by N processes.

Each worker is a whole demo node (``python -m demo --redis URL``) that binds the
same address with ``SO_REUSEPORT``, so the kernel spreads new TCP connections
over the workers, and the workers are one cluster through Redis: a connection
negotiated on one worker is carried on by whichever worker the next request
reaches (signed connection tokens, forwarding; no affinity needed).

The parent only starts, watches and stops the workers: SIGINT / SIGTERM is
passed on to every worker, which stops gracefully as a single node does.
With ``--port 0`` the parent picks the free port the workers share.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from typing import IO

from triohub.transports.listening import http_address

__all__ = ["run_workers"]

LISTENING = "triohub demo listening on "


def _reserve(host: str, port: int) -> socket.socket:
    """A bound (not listening) ``SO_REUSEPORT`` socket: the port the workers share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reserved = socket.socket(family, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reserved.bind((host, port))
    return reserved


def _relay(stream: IO[bytes]) -> None:
    for line in stream:
        sys.stdout.buffer.write(line)
        sys.stdout.flush()


def run_workers(args: argparse.Namespace) -> int:
    try:
        reserved = _reserve(args.host, args.port)
    except OSError as error:
        print(f"error: cannot bind {http_address(args.host, args.port)}: {error}", file=sys.stderr)
        return 1
    port = reserved.getsockname()[1]
    # One secret for every worker: a bearer token or cookie from one is valid on all.
    env = {**os.environ}
    env.setdefault("DEMO_JWT_SECRET", secrets.token_urlsafe(48))
    command = [sys.executable, "-m", "demo", "--host", args.host, "--port", str(port)]
    command += ["--server", args.server, "--log-level", args.log_level]
    command += ["--log-format", args.log_format, *(["--metrics"] if args.metrics else [])]
    command += ["--shutdown-grace", str(args.shutdown_grace), "--redis", args.redis]
    command.append("--reuse-port")
    workers: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, frame: object) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for _ in range(args.workers):
            workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE))
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline().decode(errors="replace")
            if not line.startswith(LISTENING):
                stop(signal.SIGTERM, None)
                print("error: a worker did not start", file=sys.stderr)
                break
            threading.Thread(target=_relay, args=(worker.stdout,), daemon=True).start()
        else:
            print(f"{args.workers} worker processes, one cluster on Redis", flush=True)
            print(f"{LISTENING}{http_address(args.host, port)}", flush=True)
        codes = [worker.wait() for worker in workers]
    finally:
        reserved.close()
    return 0 if all(code == 0 for code in codes) else 1
