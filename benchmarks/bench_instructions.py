"""Server instructions per echo, counted by valgrind: the figure a noisy machine
cannot move.

Timings on a shared machine swing 2-4x between repetitions (``bench.py`` pairs its
servers round by round for that reason), so a change of a few per cent to the echo
path cannot be seen in them. ``valgrind --tool=callgrind`` counts the instructions a
process executes instead: the same binary, inputs and environment give the same
count, whatever else the machine is doing. Each server runs under it twice, serving
``--connections`` WebSocket clients that make ``--calls`` sequential ``Echo`` calls
each (a small count, then a large one; the clients run in this process, outside
valgrind); the difference of the two totals divided by the difference of the calls
is the server's instructions per echo, start-up and connection set-up cancelled out.

What this does not see: the kernel's share (valgrind counts user space only) and how
a change moves the system calls or the batching of a busy server; ``bench.py`` stays
the judge of throughput. This is the instrument for a change to the per-call path.

Servers: ``native`` (triohub's own HTTP/WebSocket server), ``hypercorn`` (triohub's
ASGI app under hypercorn), ``aiosignalr`` (the asyncio peer). No authentication: the
clients open ``ws://.../hubs/bench`` without negotiating, the ``skipNegotiation``
way, JSON protocol, a 64-character string argument as ``bench.py`` sends.

Usage: ``python benchmarks/bench_instructions.py [--quick] [--servers a,b]
[--connections N] [--calls SMALL,LARGE]``
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The servers as bench.py starts them (script and arguments), and a client's frame.
from benchmarks.bench import PATH, SERVERS  # noqa: E402
from benchmarks.bench_framing import client_frame  # noqa: E402

MEASURED = ("native", "hypercorn", "aiosignalr")
"""The servers this can count (no JWTs: the clients do not authenticate)."""
PAYLOAD = "x" * 64


async def client(port: int, calls: int) -> None:
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await sock.send(
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = await sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection before accepting it")
        received += chunk
    if not received.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"upgrade refused: {received[:200]!r}")
    received = received.split(b"\r\n\r\n", 1)[1]
    await sock.send(client_frame(b'{"protocol":"json","version":1}\x1e'))
    while b"\x1e" not in received:
        received += await sock.recv(65536)
    record = {"type": 1, "invocationId": "1", "target": "Echo", "arguments": [PAYLOAD]}
    request = client_frame(json.dumps(record).encode() + b"\x1e")
    for _ in range(calls):
        await sock.send(request)
        answer = b""
        while b'"type":3' not in answer:  # pings may come first
            chunk = await sock.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed the connection")
            answer += chunk
        if PAYLOAD.encode() not in answer:
            raise RuntimeError(f"not an echo: {answer[:200]!r}")
    sock.close()


async def drive(port: int, connections: int, calls: int) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(client, port, calls)


def total_instructions(server: str, connections: int, calls: int, python: str) -> int:
    """The server's instructions, start to exit, serving ``connections`` x ``calls``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            python,
            str(ROOT / "benchmarks" / "servers" / SERVERS[server].script),
            "--path",
            PATH,
            *SERVERS[server].args,
        ]
        log = Path(tmp) / "server.log"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        with log.open("wb") as err:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, env=env
            )
        try:
            assert process.stdout is not None
            line = process.stdout.readline().decode()  # start-up under valgrind: ~30 s
            if not line.startswith("READY "):
                raise RuntimeError(f"{server} did not start: {log.read_text()[-2000:]}")
            trio.run(drive, int(line.split()[1]), connections, calls)
            # The counts so far, written now (to callgrind.out.1): a server's
            # shutdown is not what is measured, nor waited for.
            subprocess.run(
                ["callgrind_control", "--dump", str(process.pid)], check=True, capture_output=True
            )
        finally:
            process.kill()
            process.wait()
        dump = out.with_name(out.name + ".1")
        text = dump.read_text() if dump.exists() else ""
        if not text:
            raise RuntimeError(f"{server} wrote no counts: {log.read_text()[-2000:]}")
    match = re.search(r"^totals: (\d+)", text, re.MULTILINE) or re.search(
        r"^summary: (\d+)", text, re.MULTILINE
    )
    if match is None:
        raise RuntimeError(f"no instruction total for {server}")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument("--servers", default="native,aiosignalr")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--calls", help="SMALL,LARGE calls per connection (default 100,300)")
    args = parser.parse_args()
    small, large = (20, 60) if args.quick else (100, 300)
    if args.calls:
        small, large = (int(n) for n in args.calls.split(","))
    servers = args.servers.split(",")
    unknown = set(servers) - set(MEASURED)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    print(
        f"server instructions per echo (valgrind callgrind): {args.connections} connections, "
        f"{small} then {large} calls each"
    )
    figures: dict[str, float] = {}
    for server in servers:
        started = time.monotonic()
        few = total_instructions(server, args.connections, small, sys.executable)
        many = total_instructions(server, args.connections, large, sys.executable)
        figures[server] = (many - few) / ((large - small) * args.connections)
        print(
            f"  {server:<11} {figures[server]:>10,.0f}  ({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    if "native" in figures and "aiosignalr" in figures:
        print(f"  native / aiosignalr: {figures['native'] / figures['aiosignalr']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
