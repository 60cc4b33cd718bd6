"""Shutting down: ``python -m demo`` on Ctrl+C, and an embedded ``HubServer``."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import trio

from demo.echo import EchoHub
from tests.demo_process import SERVERS, interrupt_demo, start_demo
from triohub import HubServer

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("kind", SERVERS)
def test_demo_exits_cleanly_on_sigint(tmp_path: Path, kind: str) -> None:
    server = start_demo(tmp_path / "demo-server.log", kind)
    code = interrupt_demo(server)
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, f"Ctrl+C (SIGINT) printed a traceback:\n{log}"
    assert code == 0, f"python -m demo exited with {code} on SIGINT (expected 0):\n{log}"


def test_hub_server_stop_then_cancel_ends_quietly() -> None:
    """``server.stop()`` and, in the same tick, cancelling the nursery that runs it (a
    natural way to end an embedded server, as test_trio_websocket_server does) must end
    ``run`` by cancellation only. Trio shuffles its run queue, so the race is tried often."""

    async def stop_and_cancel() -> None:
        server = HubServer()
        server.map_hub("/hubs/echo", EchoHub)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            server.stop()
            nursery.cancel_scope.cancel()

    failures: list[BaseException] = []
    for _ in range(30):
        try:
            trio.run(stop_and_cancel)
        except BaseException as error:
            failures.append(error)
    assert not failures, (
        f"{len(failures)} of 30 runs raised instead of ending cancelled, e.g.:\n"
        + "".join(traceback.format_exception(failures[0]))
    )
