"""Every server says where it listens, and a failure to listen names the
address and the cause (``ListenError``, an ``OSError``), raised out of
``nursery.start`` and out of ``run_until_signalled``; ``signals=()`` runs a
server with no signal handling, ended by ``server.stop()``."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from functools import partial

import pytest
import trio

from demo.echo import EchoHub
from triohub import HubServer, ListenError
from triohub.transports.lifecycle import run_until_signalled

from .test_run_until_signalled import LISTENERS, Listener


def echo_server() -> HubServer:
    server = HubServer()
    server.map_hub("/hubs/echo", EchoHub)
    return server


def with_port(listener: Listener, server: HubServer, host: str, port: int) -> partial[object]:
    bound = listener(server)
    assert isinstance(bound, partial)
    arguments = list(bound.args)
    arguments[-2:] = [host, port]  # every listener's last two arguments
    return partial(bound.func, *arguments, **bound.keywords)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("kind", sorted(LISTENERS))
async def test_every_server_logs_where_it_listens(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="triohub.transports")
    server = echo_server()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [(host, port)] = await nursery.start(
                partial(run_until_signalled, server, LISTENERS[kind](server), signals=())
            )
            server.stop()
    lines = [r.getMessage() for r in caplog.records if "listening on" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].endswith(f" listening on http://{host}:{port}")


@pytest.mark.parametrize("kind", sorted(LISTENERS))
async def test_a_port_in_use_is_a_listen_error_naming_the_address(
    kind: str, taken_port: int
) -> None:
    server = echo_server()
    with trio.fail_after(10), pytest.RaisesGroup(ListenError, flatten_subgroups=True) as raised:
        await run_until_signalled(
            server, with_port(LISTENERS[kind], server, "127.0.0.1", taken_port), signals=()
        )
    (error,) = _leaves(raised.value)
    assert str(error) == (
        f"cannot listen on http://127.0.0.1:{taken_port}: the port is in use by another process"
    )
    assert isinstance(error, OSError)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for item in group.exceptions:
        found.extend(_leaves(item) if isinstance(item, BaseExceptionGroup) else [item])
    return found


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("192.0.2.1", "this machine has no such address"),
        ("no-such-host.invalid", "the host name does not resolve"),
    ],
)
async def test_an_address_that_cannot_be_bound_says_why(host: str, reason: str) -> None:
    server = echo_server()
    with pytest.RaisesGroup(ListenError, flatten_subgroups=True) as raised:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            try:
                await nursery.start(with_port(LISTENERS["native"], server, host, 0))
            finally:
                server.stop()
    (error,) = _leaves(raised.value)
    assert str(error).startswith(f"cannot listen on http://{host}:0: {reason}")
