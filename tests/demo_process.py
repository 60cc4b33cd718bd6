"""``python -m demo`` as a subprocess, for the end-to-end and browser suites.

``start_demo`` starts it on a free port and returns once it printed its listening
line; its stdout and stderr go to a log file (attached to failing tests' reports
by each suite's conftest). ``interrupt_demo`` stops it as Ctrl+C does, which it
must obey within ``SHUTDOWN_TIMEOUT``. ``running_demo`` does both around a block.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 20.0
SHUTDOWN_TIMEOUT = 15.0
LISTENING = re.compile(rb"triohub demo listening on (http://\S+)\r?\n")
SERVERS = ["hypercorn", "native"]
"""``python -m demo --server``: every demo test runs on each."""
WORKERS = "workers"
"""A deployment of ``deployed_demo``: ``python -m demo --workers 2 --redis URL`` (on
hypercorn) with a redis-server of its own: two processes on one port, the kernel
spreading the connections (SO_REUSEPORT), so a page's requests land on both."""
DEPLOYMENTS = [*SERVERS, WORKERS]
"""What the browser suite's ``demo`` runs on: each server, and the workers."""


@dataclass(frozen=True)
class DemoServer:
    base_url: str
    """``http://127.0.0.1:PORT``"""
    process: subprocess.Popen[bytes]
    log_path: Path
    cluster: bool = False
    """It runs with ``--redis`` (``WORKERS``): connection tokens are signed, and a
    negotiate version 0 connection's id is its whole token."""

    def url(self, path: str = "/hubs/echo") -> str:
        return self.base_url + path

    def text(self) -> str:
        """Everything it wrote so far, stdout and stderr."""
        return self.log_path.read_text(errors="replace")

    def log(self, last_lines: int = 200) -> str:
        """Its state and its last lines, for a failing test's report."""
        shown = "\n".join(self.text().splitlines()[-last_lines:])
        state = (
            "running"
            if self.process.poll() is None
            else f"EXITED with code {self.process.returncode}"
        )
        return f"demo server ({state}), log {self.log_path}:\n{shown}"


def _wait_for_listening_line(process: subprocess.Popen[bytes], log_path: Path) -> str:
    """Read the demo's stdout until its listening line; returns the base URL."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            match = LISTENING.search(seen)
            if match is not None:
                with log_path.open("ab") as log:
                    log.write(seen)
                return match.group(1).decode()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise TimeoutError(f"no listening line within {STARTUP_TIMEOUT} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError(f"demo exited before listening (code {process.wait()})")
            seen += chunk


def _copy_rest(stream: IO[bytes], log_path: Path) -> None:
    with log_path.open("ab") as log:
        for line in stream:
            log.write(line)
            log.flush()


def start_demo(
    log_path: Path,
    server: str = "hypercorn",
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> DemoServer:
    """Start ``python -m demo --server SERVER`` on a free port (plus ``args``, e.g.
    ``("--redis", URL)``; ``env``: more environment variables, such as
    ``DEMO_SESSION_MAX_AGE``); returns once it printed its listening line."""
    # Append mode: the child's stderr and the stdout copier share the file safely.
    with log_path.open("ab") as stderr_log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "demo",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--server",
                server,
                *args,
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr_log,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    try:
        base_url = _wait_for_listening_line(process, log_path)
    except (TimeoutError, EOFError) as error:
        process.kill()
        process.wait()
        pytest.fail(
            f"the demo server did not start: {error}\n{log_path.read_text(errors='replace')}",
            pytrace=False,
        )
    assert process.stdout is not None
    threading.Thread(
        target=_copy_rest, args=(process.stdout, log_path), name="demo-stdout", daemon=True
    ).start()
    return DemoServer(base_url, process, log_path)


def interrupt_demo(server: DemoServer) -> int:
    """Stop the demo as Ctrl+C does (SIGINT); returns its exit code once it has exited."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(
            f"the demo server did not exit within {SHUTDOWN_TIMEOUT} s of SIGINT\n{server.log()}",
            pytrace=False,
        )


@contextmanager
def running_demo(
    log_path: Path,
    server: str = "hypercorn",
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[DemoServer]:
    """``start_demo`` for the length of a block, then ``interrupt_demo``."""
    demo = start_demo(log_path, server, args=args, env=env)
    try:
        yield demo
    finally:
        interrupt_demo(demo)


@contextmanager
def deployed_demo(
    log_path: Path, deployment: str, *, env: dict[str, str] | None = None
) -> Iterator[DemoServer]:
    """``running_demo`` on one of ``DEPLOYMENTS``: a server of ``SERVERS`` (one
    process), or ``WORKERS`` (two, on a redis-server started and stopped here)."""
    if deployment != WORKERS:
        with running_demo(log_path, deployment, env=env) as demo:
            yield demo
        return
    from tests.backplane.redis_server import redis_server

    with (
        redis_server() as redis,
        running_demo(log_path, args=("--workers", "2", "--redis", redis.url), env=env) as demo,
    ):
        yield replace(demo, cluster=True)
