"""Hostile clients against the real servers (hypercorn, triohub's own, trio-websocket):
each one may end its own connection, never the server, never the log.

* an upgrade request with more bytes in the same write (pgjones/hypercorn#225 took
  the whole hypercorn server down);
* a WebSocket protocol error right after the handshake (hypercorn's close raced the
  handshake reply: two tracebacks per connection);
* a client that stops reading (hypercorn shields its writes with no deadline);
* the listen backlog is a parameter of every server, 1024 by default;
* a process out of file descriptors says so once and retries slowly (a child
  process with a low RLIMIT_NOFILE).

Real sockets, real time; every wait is bounded by the (shortened) server timeouts.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
import subprocess
import sys

import orjson
import pytest
import trio

from triohub import HubOptions

from .hardening_support import (
    SERVERS,
    UPGRADE,
    assert_serves,
    established,
    listen_backlog,
    running,
)
from .native_wire import TEXT, Wire, invocation
from .support import JSON_HANDSHAKE

pytestmark = pytest.mark.usefixtures("hang_guard")


LIFECYCLE = re.compile(r"( listening on http://|^connection \S+ (opened|closed): )")
"""The start-up line and a hub connection's open and close lines: every server and
connection has them, hostile or not."""


def noise(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the servers logged about the hostile clients."""
    return [r for r in caplog.records if not LIFECYCLE.search(r.getMessage())]


def assert_quiet(caplog: pytest.LogCaptureFixture, connections: int) -> None:
    """At most one INFO line per hostile connection; nothing louder, no traceback."""
    records = noise(caplog)
    loud = [r for r in records if r.levelno > logging.INFO or r.exc_info]
    assert not loud, caplog.text
    assert len(records) <= connections, caplog.text


@pytest.mark.parametrize("kind", SERVERS)
@pytest.mark.parametrize("trailing", [b"hello", b"\x81\x85abcd" + bytes(5), b"x" * 70000])
async def test_bytes_after_the_upgrade_request_end_that_connection_only(
    kind: str, trailing: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(kind) as served:
        wire = await served.wire()
        await wire.send(UPGRADE + trailing)
        # hypercorn refuses (the client did not wait for the 101); the native
        # server takes the bytes as the first frames.
        response = await wire.response()
        assert response.status == (400 if kind == "hypercorn" else 101), response
        await wire.aclose()
        await assert_serves(served.port)
    assert_quiet(caplog, 1)


@pytest.mark.parametrize("kind", SERVERS)
async def test_a_protocol_error_after_the_handshake_is_one_quiet_line(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    count = 30
    async with running(kind) as served:

        async def hostile() -> None:
            wire = await served.wire()
            response = await wire.upgrade("/hubs/native")
            assert response.status == 101, response
            # The SignalR handshake and an unmasked frame in one write: the
            # server's close races its handshake reply.
            await wire.send(Wire.encode(TEXT, JSON_HANDSHAKE) + b"\x81\x05hello")
            await wire.closed(limit=5)
            await wire.aclose()

        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(hostile)
        await assert_serves(served.port)
    assert_quiet(caplog, count)


@pytest.mark.parametrize("kind", SERVERS)
async def test_a_client_that_stops_reading_is_cut_at_the_send_timeout(kind: str) -> None:
    send_timeout = 0.5
    options = HubOptions(send_timeout=send_timeout, close_timeout=0.5)
    async with running(kind, options=options) as served:
        # A small receive window, set before connecting: the server's writes
        # block soon after the client stops reading.
        wire = await Wire.connect(served.port, receive_buffer=4096)
        await wire.hub_open("/hubs/native")
        payload = "x" * 30_000

        async def flood() -> None:
            try:
                for index in range(300):
                    await wire.send(Wire.encode(TEXT, invocation(str(index), "Echo", payload)))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the server cut us off: what this test wants

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            with trio.fail_after(send_timeout + 5):
                while not served.journal.ended:
                    await served.journal.changed.wait()
            # The hub gave up on the connection; the socket must be closed too
            # (the kernel may still hold bytes for the client, the server not).
            assert established(served.port) == 0
            nursery.cancel_scope.cancel()
        assert trio.current_time() - started < send_timeout + 5
        await wire.aclose()
        await assert_serves(served.port)
        shutdown = trio.current_time()
    # ``running`` stops the hub server and the listener on exit.
    assert served.stopped.is_set()
    assert trio.current_time() - shutdown < 5


@pytest.mark.parametrize("kind", [*SERVERS, "trio-websocket"])
async def test_the_listen_backlog_is_a_parameter(kind: str) -> None:
    async with running(kind) as served:
        assert listen_backlog(served.port) == 1024
    async with running(kind, backlog=2048) as served:
        assert listen_backlog(served.port) == 2048


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("kind", [*SERVERS, "trio-websocket"])
async def test_out_of_file_descriptors_is_one_warning_and_a_slow_retry(
    kind: str, tmp_path: pathlib.Path
) -> None:
    limit = 40
    episode = 1.5
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.transports.fd_limited_server", kind, str(limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        with trio.fail_after(20):
            port = int((await process.stdout.receive_some()).decode())
        # More connections than the server has descriptors left: it accepts
        # until EMFILE, and the rest wait in the backlog.
        started = trio.current_time()
        held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(limit)]
        cpu = cpu_seconds(process.pid)
        await trio.sleep(episode)  # the episode under test: how often it retries
        cpu = cpu_seconds(process.pid) - cpu
        for stream in held:
            await stream.aclose()
        with trio.fail_after(10):
            await assert_serves(port, negotiated=kind != "trio-websocket")
        elapsed = trio.current_time() - started
    finally:
        await process.stdin.aclose()
        with trio.move_on_after(15):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = log_path.read_text().splitlines()
    failed = [line for line in lines if "accept failed with EMFILE" in line]
    again = [line for line in lines if "accepting again" in line]
    assert len(failed) == 1, lines
    assert failed[0].startswith("WARNING "), failed
    assert len(again) == 1, lines
    assert not [line for line in lines if "Traceback" in line or line.startswith("ERROR")], lines
    # Backing off from 10 ms to 1 s: 7 tries in the first 1.3 s, then one a
    # second (not one per 100 ms), and next to no CPU.
    tries = int(again[0].rsplit(" after ", 1)[1].split()[0])
    assert tries <= 8 + elapsed, (again, elapsed)
    assert cpu < 0.2 * episode, cpu


@pytest.mark.parametrize("kind", SERVERS)
async def test_a_client_that_stops_reading_a_fast_stream_is_cut_at_the_send_timeout(
    kind: str,
) -> None:
    # The soak's ``no-read``: the client asks for a stream of ten million items
    # with no delay, reads nothing, and keeps its connection open. Every item
    # waits for room in the outbox, so the stream is throttled to the writer,
    # and the writer's write blocks: the send timeout must end it.
    send_timeout = 0.5
    options = HubOptions(send_timeout=send_timeout, close_timeout=0.5)
    async with running(kind, options=options) as served:
        wire = await Wire.connect(served.port, receive_buffer=4096)
        await wire.hub_open("/hubs/native")
        stream = orjson.dumps(
            {"type": 4, "invocationId": "flood", "target": "Counter", "arguments": [10_000_000, 0]}
        )
        started = trio.current_time()
        await wire.send(Wire.encode(TEXT, stream + b"\x1e"))
        with trio.fail_after(send_timeout + 5):
            while not served.journal.ended:
                await served.journal.changed.wait()
        assert established(served.port) == 0
        assert trio.current_time() - started < send_timeout + 5
        await wire.aclose()
        await assert_serves(served.port)
