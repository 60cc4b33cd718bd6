"""Hostile clients for the soak, paced to leave the server's CPU to it.

``python -m tests.soak.hostile --hub-port P --web-port Q --seconds S [--patterns a,b]``
runs every pattern (or the ones named) for S seconds against ``/hubs/echo`` and
the demo's sign-in endpoints, then prints one JSON line: per pattern, how often
each outcome happened (``{"garbage": {"closed 1011": 40, ...}, ...}``). SIGTERM
ends it early, with the same line. Its own process, at nice 19 (``--nice``), so
the load it makes does not delay the soak's measuring clients: it gets the CPU
the server and the measuring clients leave; the rates below are what it offers
at most (a hostile client slowed down is a slow client, which the server must
cope with too).
"""

from __future__ import annotations

import argparse
import os
import signal
import struct
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
import trio

from ..lifecycle.hubwire import (
    BINARY,
    JSON_HANDSHAKE,
    TEXT,
    Closed,
    HubWire,
    frame,
    upgrade_request,
)

HUB = "/hubs/echo"
STEP_LIMIT = 10.0
"""Seconds any one request or handshake may take before it counts as ``timeout``."""
NO_READ_SECONDS = 15.0
"""How long ``no-read`` stops reading: past the send timeout (10 s) with room to spare."""


class Soak:
    def __init__(self, host: str, hub_port: int, web_port: int) -> None:
        self.host = host
        self.hub_port = hub_port
        self.web_port = web_port
        self.outcomes: dict[str, Counter[str]] = {}

    def count(self, pattern: str, outcome: str) -> None:
        self.outcomes.setdefault(pattern, Counter())[outcome] += 1

    async def attempt(self, pattern: str, body: Callable[[], Awaitable[str]]) -> None:
        """Run one try of a pattern, counting how it ended."""
        outcome = "cut by the end of the run"  # unless it ends on its own
        try:
            with trio.fail_after(STEP_LIMIT * 3):
                outcome = await body()
        except Closed as closed:
            outcome = f"closed {closed.close_code}" if closed.close_code else "closed by EOF"
        except trio.TooSlowError:
            outcome = "timeout"
        except OSError as error:
            outcome = f"os error {error.errno}"
        except trio.BrokenResourceError:
            outcome = "reset"
        finally:
            self.count(pattern, outcome)
        if outcome.startswith("os error"):
            await trio.sleep(1.0)  # the server is gone or full: do not spin

    async def open(self, **options: Any) -> HubWire:
        with trio.fail_after(STEP_LIMIT):
            return await HubWire.open(self.host, self.hub_port, HUB, **options)

    # -- the patterns ------------------------------------------------------------------
    # Each loops until cancelled, paced; each try ends with the connection dropped.

    async def upgrade_extra(self) -> None:
        """The upgrade request and the SignalR handshake in one write (browsers
        never do, but nothing forbids it)."""

        async def once() -> str:
            wire = await HubWire.connect(self.host, self.hub_port)
            try:
                await wire.send(
                    upgrade_request(HUB, f"{self.host}:{self.hub_port}")
                    + frame(TEXT, JSON_HANDSHAKE)
                )
                with trio.fail_after(STEP_LIMIT):
                    status = await wire.response_status()
                    if status != 101:
                        return f"answered {status}"
                    _, payload = await wire.frame()
                    if payload != b"{}\x1e":
                        return "bad handshake answer"
                    await wire.call("1", "Echo", "after extra bytes")
                    result = await wire.result("1")
                return "ok" if result.get("result") == "after extra bytes" else "bad echo"
            finally:
                await wire.hang_up()

        while True:
            await self.attempt("upgrade-extra", once)
            await trio.sleep(0.5)

    async def uploads(self) -> None:
        """Many UploadSum invocations left open (items sent, never completed)."""

        async def once() -> str:
            wire = await self.open()
            try:
                for index in range(50):
                    await wire.send_text(
                        orjson.dumps(
                            {
                                "type": 1,
                                "invocationId": f"u{index}",
                                "target": "UploadSum",
                                "arguments": [],
                                "streamIds": [f"s{index}"],
                            }
                        )
                        + b"\x1e"
                        + orjson.dumps({"type": 2, "invocationId": f"s{index}", "item": index})
                        + b"\x1e"
                    )
                return await hold(wire, 5.0)
            finally:
                await wire.aclose()

        while True:
            await self.attempt("uploads", once)

    async def streams(self) -> None:
        """Many concurrent server streams (``Counter``, 50 items a second each),
        half cancelled, then dropped."""

        async def once() -> str:
            wire = await self.open()
            try:
                for index in range(50):
                    await wire.send_text(
                        orjson.dumps(
                            {
                                "type": 4,
                                "invocationId": f"c{index}",
                                "target": "Counter",
                                "arguments": [100000, 20],
                            }
                        )
                        + b"\x1e"
                    )
                    # Spread over one 20 ms period: the same 2500 items/s, not
                    # 50 streams ticking in lockstep (a burst every 20 ms).
                    await trio.sleep(0.020 / 50)
                outcome = await hold(wire, 3.0)
                for index in range(0, 50, 2):
                    await wire.send_text(
                        orjson.dumps({"type": 5, "invocationId": f"c{index}"}) + b"\x1e"
                    )
                return outcome + "; " + await hold(wire, 3.0)
            finally:
                await wire.aclose()

        while True:
            await self.attempt("streams", once)

    async def big_groups(self) -> None:
        """Joins to many groups with 30 KB names, a send to one, then a drop."""

        async def once() -> str:
            wire = await self.open()
            try:
                seed = os.urandom(4).hex()
                for index in range(20):
                    name = f"{seed}-{index}-" + "g" * 30_000
                    await wire.call(f"j{index}", "JoinGroup", name)
                    record = await wire.result(f"j{index}")
                    if "error" in record:
                        return "join refused: " + str(record["error"])[:60]
                await wire.call("s", "SendToGroup", f"{seed}-0-" + "g" * 30_000, "hi")
                await wire.result("s")
                return "joined 20"
            finally:
                await wire.aclose()

        while True:
            await self.attempt("groups-30k", once)
            await trio.sleep(1.0)

    async def no_read(self) -> None:
        """A client that asks for a fast stream and stops reading (tiny receive
        buffer) for longer than the servers' send timeout (``HubOptions``: 10 s),
        so the server must have closed it by the time it reads again."""

        async def once() -> str:
            wire = await self.open(receive_buffer=4096)
            try:
                await wire.send_text(
                    orjson.dumps(
                        {
                            "type": 4,
                            "invocationId": "flood",
                            "target": "Counter",
                            "arguments": [10_000_000, 0],
                        }
                    )
                    + b"\x1e"
                )
                await trio.sleep(NO_READ_SECONDS)  # not reading: the server must cut us
                return await drained_to_close(wire, limit=5.0)
            finally:
                await wire.aclose()

        while True:
            await self.attempt("no-read", once)

    async def pipeline(self) -> None:
        """8 KB echoes sent back to back without reading any answer."""

        async def once() -> str:
            wire = await self.open()
            sent = 0
            try:
                payload = "p" * 8192
                with trio.move_on_after(3.0):  # until our writes block, at most 3 s
                    while True:
                        await wire.call(str(sent), "Echo", payload)
                        sent += 1
                await trio.sleep(1.0)
                return f"{'blocked' if sent < 1000 else 'flowing'}; " + await drained_to_close(
                    wire, limit=2.0
                )
            finally:
                await wire.aclose()

        while True:
            await self.attempt("pipeline-8k", once)

    async def wrong_passwords(self) -> None:
        """Wrong passwords on both sign-in endpoints."""

        async def login(path: str, body: bytes, content_type: str) -> str:
            wire = await HubWire.connect(self.host, self.web_port)
            try:
                await wire.send(
                    (
                        f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                        "Connection: close\r\n\r\n"
                    ).encode()
                    + body
                )
                with trio.fail_after(STEP_LIMIT):
                    return f"{path} {await wire.response_status()}"
            finally:
                await wire.aclose()

        while True:
            await self.attempt(
                "wrong-passwords",
                lambda: login(
                    "/account/login",
                    b"username=alice&password=guess",
                    "application/x-www-form-urlencoded",
                ),
            )
            await self.attempt(
                "wrong-passwords",
                lambda: login(
                    "/api/token",
                    orjson.dumps({"username": "alice", "password": "guess"}),
                    "application/json",
                ),
            )
            await trio.sleep(0.2)

    async def garbage(self) -> None:
        """Protocol garbage after a good handshake."""
        junk = [
            frame(TEXT, b"\x00\xffnot json at all\x1e"),
            frame(TEXT, b'{"type":99,"x":1}\x1e'),
            frame(TEXT, b'{"type":1,"target":"Echo","arguments":[1]'),  # no separator, no end
            frame(TEXT, b"\xc3\x28\x1e"),  # not UTF-8
            frame(BINARY, os.urandom(64)),
            bytes((0xF1, 0x80)) + os.urandom(4),  # reserved bits set
            bytes((0x81, 0x05)) + b"hello",  # unmasked client frame
            frame(TEXT, b'{"type":1,"invocationId":"1","target":"Echo","arguments":' + b"[" * 500),
        ]

        async def once(index: int) -> str:
            wire = await self.open()
            try:
                await wire.send(junk[index % len(junk)])
                return f"junk {index % len(junk)}: " + await drained_to_close(wire, limit=2.0)
            finally:
                await wire.aclose()

        index = 0
        while True:
            index += 1
            await self.attempt("garbage", partial(once, index))
            await trio.sleep(0.3)

    async def connect_drop(self) -> None:
        """Connections dropped at every stage: after TCP connect, after the upgrade
        request, after the handshake; 30 a second, evenly."""

        async def once(stage: int) -> str:
            wire = await HubWire.connect(self.host, self.hub_port)
            try:
                if stage == 0:
                    return "dropped after connect"
                await wire.send(upgrade_request(HUB, f"{self.host}:{self.hub_port}"))
                if stage == 1:
                    return "dropped after upgrade request"
                with trio.fail_after(STEP_LIMIT):
                    await wire.response_status()
                    await wire.send_text(JSON_HANDSHAKE)
                    await wire.frame()
                return "dropped after handshake"
            finally:
                # An abortive close (RST), as a crashing client or a dead NAT does.
                wire.stream.socket.setsockopt(
                    trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                await wire.aclose()

        while True:
            async with trio.open_nursery() as burst:
                for stage in range(30):
                    burst.start_soon(self.attempt, "connect-drop", partial(once, stage % 3))
                    await trio.sleep(1.0 / 30)  # 30 a second, evenly


async def hold(wire: HubWire, seconds: float) -> str:
    """Read (and drop) what the server sends for ``seconds``; how it went."""
    records: Counter[int] = Counter()
    with trio.move_on_after(seconds):
        while True:
            record = await wire.record()
            records[int(record.get("type", -1))] += 1
            if record.get("type") == 7:
                return f"closed: {record.get('error')}"
    return "held"


async def drained_to_close(wire: HubWire, limit: float = 10.0) -> str:
    """Read to the end; the Close record's error or the close code, if any came."""
    with trio.move_on_after(limit):
        while True:
            try:
                record = await wire.record()
            except Closed as closed:
                return f"closed {closed.close_code}"
            except orjson.JSONDecodeError:
                continue
            if record.get("type") == 7:
                return f"Close record: {record.get('error')}"
    return "still open"


PATTERNS: dict[str, Callable[[Soak], Callable[[], Awaitable[None]]]] = {
    "upgrade-extra": lambda soak: soak.upgrade_extra,
    "uploads": lambda soak: soak.uploads,
    "streams": lambda soak: soak.streams,
    "groups-30k": lambda soak: soak.big_groups,
    "no-read": lambda soak: soak.no_read,
    "pipeline-8k": lambda soak: soak.pipeline,
    "wrong-passwords": lambda soak: soak.wrong_passwords,
    "garbage": lambda soak: soak.garbage,
    "connect-drop": lambda soak: soak.connect_drop,
}


async def run(soak: Soak, patterns: list[str], seconds: float) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            nursery.cancel_scope.deadline = trio.current_time() + seconds
            for name in patterns:
                nursery.start_soon(PATTERNS[name](soak))
                # Two of each connection-holding pattern at a time.
                if name in ("uploads", "streams", "no-read", "pipeline-8k", "groups-30k"):
                    nursery.start_soon(PATTERNS[name](soak))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.hostile")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--hub-port", type=int, required=True)
    parser.add_argument("--web-port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--patterns", default=",".join(PATTERNS))
    parser.add_argument(
        "--nice", type=int, default=19, help="niceness to run at (default 19: idle CPU only)"
    )
    args = parser.parse_args()
    os.nice(args.nice)
    patterns = [name for name in args.patterns.split(",") if name]
    unknown = set(patterns) - set(PATTERNS)
    if unknown:
        parser.error(f"unknown patterns {sorted(unknown)}; known: {', '.join(PATTERNS)}")
    soak = Soak(args.host, args.hub_port, args.web_port)
    trio.run(run, soak, patterns, args.seconds)
    sys.stdout.write(orjson.dumps(soak.outcomes).decode() + "\n")


if __name__ == "__main__":
    main()
