"""Servers as real processes for the signal and soak tests: started, read for
their listening lines, signalled, measured (RSS) and waited for, each step with
a deadline."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs
import trio

REPO_ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(rb"listening on http://(\S+):(\d+)\r?\n")
"""``triohub demo listening on http://127.0.0.1:PORT`` (and the scripts' lines)."""


@attrs.define
class ServerProcess:
    process: trio.Process
    log_path: Path
    ports: list[int]
    """Every listening line's port, in the order they were printed."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self, last_lines: int = 150) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        state = (
            "running"
            if self.process.returncode is None
            else f"EXITED with code {self.process.returncode}"
        )
        return f"server ({state}), log {self.log_path}:\n" + "\n".join(lines[-last_lines:])

    def rss_kib(self) -> int:
        """The process's resident set (``VmRSS`` of ``/proc/PID/status``) in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise LookupError(f"no VmRSS for process {self.pid}")

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    async def exit_code(self, within: float) -> int | None:
        """The exit status once it has exited, ``None`` if still running after ``within``."""
        with trio.move_on_after(within):
            return await self.process.wait()
        return None

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            with trio.CancelScope(shield=True):
                await self.process.wait()


async def start_server(
    command: Sequence[str], log_path: Path, *, listeners: int = 1, within: float = 30.0
) -> ServerProcess:
    """Start ``command`` (``python -m demo ...`` and the like); returns once it has
    printed ``listeners`` listening lines. Its stderr goes to ``log_path``."""
    with log_path.open("ab") as log:
        process = await trio.lowlevel.open_process(
            list(command),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert process.stdout is not None
    seen = b""
    try:
        with trio.fail_after(within):
            while len(LISTENING.findall(seen)) < listeners:
                chunk = await process.stdout.receive_some(4096)
                if not chunk:
                    raise EOFError(f"exited before listening (code {await process.wait()})")
                seen += chunk
    except BaseException:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
        with log_path.open("ab") as log:
            log.write(b"stdout:\n" + seen)
        raise
    with log_path.open("ab") as log:
        log.write(seen)
    ports = [int(port) for _, port in LISTENING.findall(seen)]
    return ServerProcess(process, log_path, ports)


def demo_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "demo", "--host", "127.0.0.1", "--port", "0", *arguments]


@contextmanager
def open_files_limit(needed: int) -> Iterator[None]:
    """Raise this process's ``RLIMIT_NOFILE`` (children inherit it) for a while."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = soft if soft >= needed else needed if hard == resource.RLIM_INFINITY else hard
    if wanted < needed:
        raise RuntimeError(f"need {needed} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


SIGNAL_NAMES = {int(number): number.name for number in signal.Signals}
