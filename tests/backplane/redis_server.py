"""Real redis-server processes for tests: a free port, no persistence, stopped afterwards."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tls import TlsFiles

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server on ``port``; ``stop``/``kill``/``start`` for fault tests
    (a restart keeps the port, so clients reconnect to the same URL)."""

    def __init__(
        self,
        port: int | None = None,
        unix_socket: str | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.port = port or free_port()
        self.unix_socket = unix_socket
        self.password = password
        self.tls = tls
        """With it, a TLS port too (``tls_url``; the plain port stays for ``command``)."""
        self.tls_port = free_port() if tls is not None else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password is not None else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    @property
    def tls_url(self) -> str:
        """``rediss://`` to the TLS port, trusting the test's CA only."""
        assert self.tls is not None
        credentials = f":{self.password}@" if self.password is not None else ""
        return (
            f"rediss://{credentials}127.0.0.1:{self.tls_port}/0"
            f"?ssl_ca_certs={self.tls.ca}&ssl_cert_reqs=required"
        )

    @property
    def unix_url(self) -> str:
        assert self.unix_socket is not None
        return f"unix://{self.unix_socket}?db=0"

    def start(self, *, tcp: bool = True) -> None:
        """``tcp=False``: the unix socket only (``listen_tcp`` opens the port later)."""
        assert self.process is None, "already running"
        args = [REDIS_SERVER, "--port", str(self.port if tcp else 0), "--bind", "127.0.0.1"]
        if self.unix_socket is not None:
            args += ["--unixsocket", self.unix_socket]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.tls is not None:
            args += ["--tls-port", str(self.tls_port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key)]
            args += ["--tls-ca-cert-file", str(self.tls.ca)]
        args += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command("PING") == b"PONG":
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def listen_tcp(self) -> None:
        """Open the TCP port of a server started with ``tcp=False``."""
        assert self.command("CONFIG", "SET", "port", str(self.port)) == b"OK"

    def _connect(self) -> socket.socket:
        if self.unix_socket is not None:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(5)
            try:
                sock.connect(self.unix_socket)
            except OSError:
                sock.close()
                raise
            return sock
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def kill(self) -> None:
        """SIGKILL: Redis vanishes as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def command(self, *args: str) -> Any:
        """One command over a plain socket (RESP 2), the parsed reply."""
        commands = [args]
        if self.password is not None:
            commands.insert(0, ("AUTH", self.password))
        parts = []
        for command in commands:
            parts.append(f"*{len(command)}\r\n".encode())
            for arg in command:
                data = arg.encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with self._connect() as sock:
            sock.sendall(b"".join(parts))
            with sock.makefile("rb") as reader:
                replies = [_read_reply(reader) for _ in commands]
        return replies[-1]

    def numsub(self, *channels: str) -> dict[str, int]:
        """PUBSUB NUMSUB: subscribers per channel."""
        reply = self.command("PUBSUB", "NUMSUB", *channels)
        return {reply[i].decode(): int(reply[i + 1]) for i in range(0, len(reply), 2)}

    def channels(self, pattern: str = "*") -> list[str]:
        """PUBSUB CHANNELS: every channel with at least one subscriber."""
        return sorted(c.decode() for c in self.command("PUBSUB", "CHANNELS", pattern))


def _read_reply(reader: IO[bytes]) -> Any:
    line = reader.readline()
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-"):
        return rest
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)
        return data[:-2]
    if kind == b"*":
        return [_read_reply(reader) for _ in range(int(rest))]
    raise ValueError(f"unexpected RESP reply {line!r}")


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()
