"""``python -m demo`` as Docker, Kubernetes, systemd and a person stop it.

* SIGTERM to a demo holding 500 WebSocket connections: every client gets the
  Close record that allows reconnecting, and the process exits 0 within the
  grace period; ten times, each with a hard deadline.
* SIGINT while clients keep it busy: exit 0 every time (the default handler's
  KeyboardInterrupt used to land in a hypercorn connection task, which logged
  it and carried on, two times in six).
* A second signal during a slow graceful stop ends the process at once.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import attrs
import pytest
import trio

from .hubwire import CLOSE_RECONNECT, Closed, HubWire
from .processes import ServerProcess, demo_command, open_files_limit, start_server

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
CLIENTS = 500
RUNS = 10
GRACE = 5.0
RUN_LIMIT = 30.0
"""Hard deadline of one whole run (start, connect, stop); a hang fails the test."""
CONNECTING_AT_ONCE = 64


@attrs.define
class Outcome:
    """What one run saw."""

    closes: int = 0
    """Clients whose last record was ``{"type":7,"allowReconnect":true}``."""
    other: list[str] = attrs.Factory(list)
    """What the other clients got instead (first few)."""
    exit_code: int | None = None
    stop_seconds: float = 0.0
    """From the signal to the process's exit."""


async def open_clients(port: int, count: int) -> list[HubWire]:
    clients: list[HubWire] = []
    limiter = trio.CapacityLimiter(CONNECTING_AT_ONCE)

    async def one() -> None:
        async with limiter:
            clients.append(await HubWire.open(HOST, port))

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return clients


async def expect_close(client: HubWire, outcome: Outcome) -> None:
    """Read to the Close record (a busy client first reads its answers)."""
    try:
        while True:
            record = await client.record()
            if record.get("type") == 7:
                break
    except Closed as closed:
        outcome.other.append(str(closed))
    else:
        if record == CLOSE_RECONNECT:
            outcome.closes += 1
        else:
            outcome.other.append(repr(record))
    finally:
        await client.hang_up()


async def stop_and_watch(
    server: ServerProcess, clients: list[HubWire], number: signal.Signals
) -> Outcome:
    outcome = Outcome()
    async with trio.open_nursery() as nursery:
        for client in clients:
            nursery.start_soon(expect_close, client, outcome)
        started = time.monotonic()
        server.signal(number)
        # The deadline says "within the grace"; a hang is cut off by RUN_LIMIT.
        outcome.exit_code = await server.exit_code(RUN_LIMIT)
        outcome.stop_seconds = time.monotonic() - started
    return outcome


def describe(outcomes: list[Outcome]) -> str:
    return "\n".join(
        f"run {index}: {o.closes} Close records, exit {o.exit_code} after {o.stop_seconds:.2f} s"
        + (f"; others: {o.other[:3]}" if o.other else "")
        for index, o in enumerate(outcomes)
    )


@attrs.define
class Load:
    """Clients echoing 2 KB as fast as the server answers, until it has answered
    ``replies_wanted`` in all."""

    replies_wanted: int
    replies: int = 0

    async def chatter(self, client: HubWire) -> None:
        index = 0
        while self.replies < self.replies_wanted:
            index += 1
            await client.call(str(index), "Echo", "x" * 2000)
            await client.result(str(index))
            self.replies += 1


async def test_sigterm_closes_500_connections_for_reconnecting_and_exits_0(
    tmp_path: Path,
) -> None:
    outcomes: list[Outcome] = []
    with open_files_limit(CLIENTS * 2 + 200):
        for run in range(RUNS):
            log_path = tmp_path / f"demo-{run}.log"
            server = await start_server(
                demo_command("--shutdown-grace", str(GRACE), "--log-level", "WARNING"), log_path
            )
            try:
                with trio.fail_after(RUN_LIMIT):
                    clients = await open_clients(server.ports[0], CLIENTS)
                    outcomes.append(await stop_and_watch(server, clients, signal.SIGTERM))
            except trio.TooSlowError:
                pytest.fail(f"run {run} hung:\n{describe(outcomes)}\n{server.log()}")
            finally:
                await server.kill()
            last = outcomes[-1]
            assert last.closes == CLIENTS, f"{describe(outcomes)}\n{server.log()}"
            assert last.exit_code == 0, f"{describe(outcomes)}\n{server.log()}"
            assert last.stop_seconds <= GRACE, f"{describe(outcomes)}\n{server.log()}"
    print(f"\n{describe(outcomes)}")


async def test_sigint_under_load_always_exits_0(tmp_path: Path) -> None:
    """Clients keep the event loop busy with echoes (and the KeyboardInterrupt of
    old would land in one of their tasks) when SIGINT comes."""
    outcomes: list[Outcome] = []
    for run in range(6):
        server = await start_server(
            demo_command("--log-level", "WARNING"), tmp_path / f"demo-{run}.log"
        )
        try:
            with trio.fail_after(RUN_LIMIT):
                clients = await open_clients(server.ports[0], 50)
                load = Load(replies_wanted=1000)
                async with trio.open_nursery() as nursery:
                    for client in clients:
                        nursery.start_soon(load.chatter, client)
                # Every client has an invocation in flight again when the signal lands.
                for index, client in enumerate(clients):
                    await client.call(f"last-{index}", "Echo", "x" * 2000)
                outcomes.append(await stop_and_watch(server, clients, signal.SIGINT))
        except trio.TooSlowError:
            pytest.fail(f"run {run} hung:\n{describe(outcomes)}\n{server.log()}")
        finally:
            await server.kill()
        assert outcomes[-1].exit_code == 0, f"{describe(outcomes)}\n{server.log()}"
        assert outcomes[-1].closes == len(clients), f"{describe(outcomes)}\n{server.log()}"
        assert "Traceback" not in server.log_path.read_text(), server.log()
    print(f"\n{describe(outcomes)}")


async def test_a_second_signal_ends_a_slow_graceful_stop_at_once(tmp_path: Path) -> None:
    """A hub whose ``on_disconnected`` takes 60 s (its ``close_timeout``) would hold
    the graceful stop that long; the second SIGTERM ends the process at once."""
    server = await start_server(
        [sys.executable, "-m", "tests.lifecycle.slow_close_app"],
        tmp_path / "slow.log",
    )
    try:
        with trio.fail_after(RUN_LIMIT):
            client = await HubWire.open(HOST, server.ports[0], "/hubs/slow")
            server.signal(signal.SIGTERM)
            assert await client.record() == CLOSE_RECONNECT
            await client.hang_up()
            # The process is inside the 60 s close handler now.
            assert await server.exit_code(1.0) is None, server.log()
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            code = await server.exit_code(RUN_LIMIT)
            elapsed = time.monotonic() - started
    finally:
        await server.kill()
    assert code == -signal.SIGTERM, server.log()
    assert elapsed < 2.0, server.log()
