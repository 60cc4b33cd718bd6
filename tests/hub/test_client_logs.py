"""What clients make the server log: client mistakes are one INFO line each,
without a traceback, their data clipped, and the same line rate limited per
connection; a failure caused by client data answers the caller instead of
logging an ERROR traceback."""

from __future__ import annotations

import logging
from typing import Any

import msgpack
import pytest
import trio
from hub_support import PATH, StartServer

from triohub import ClientStream, Hub, HubError, HubOptions
from triohub.hub.logs import clip
from triohub.protocol import Completion, Invocation, StreamItem
from triohub.testing import InvocationError, open_test_client

UNEXPECTED = "An unexpected error occurred invoking '{}' on the server."


class ChattyHub(Hub):
    async def broadcast(self, message: Any) -> None:
        await self.clients.all.send("Receive", message)

    async def upload_sum(self, source: ClientStream[float]) -> float:
        return sum([value async for value in source])

    async def throw(self, message: str) -> None:
        raise HubError(message)

    async def echo(self, value: Any) -> Any:
        return value


def lines(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith("triohub") and (level is None or r.levelno == level)
    ]


def messagepack_record(body: bytes) -> bytes:
    size, prefix = len(body), bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        prefix.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(prefix) + body


async def test_a_protocol_error_is_one_clipped_info_line(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A MessagePack body with bytes after its array: the decoder's error
    carries the whole decoded record (30 KB here); the log line does not."""
    caplog.set_level(logging.INFO)
    server = await start_server(ChattyHub)
    body = msgpack.packb([1, {}, "0", "Echo", ["x" * 30_000], []]) + b"\x00"
    async with open_test_client(server, PATH, protocol="messagepack") as client:
        await client.send_raw(messagepack_record(body))
        await client.closed.wait()
    (line,) = [r for r in lines(caplog) if ": protocol error:" in r.getMessage()]
    assert line.levelno == logging.INFO
    assert line.exc_info is None
    assert len(line.getMessage()) < 400
    assert "characters)" in line.getMessage()
    assert not lines(caplog, logging.ERROR)
    assert not lines(caplog, logging.WARNING)


async def test_a_client_value_no_other_client_can_receive_fails_the_caller(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A MessagePack map with integer keys, broadcast: JSON clients cannot be
    sent it. The caller is told why; the log has an INFO line, no traceback."""
    caplog.set_level(logging.INFO)
    server = await start_server(ChattyHub)
    async with open_test_client(server, PATH, protocol="messagepack") as client:
        with pytest.raises(InvocationError) as error:
            await client.invoke("Broadcast", {1: "one"})
        assert await client.invoke("Echo", "still here") == "still here"
    assert str(error.value) == (
        UNEXPECTED.format("Broadcast") + " HubException: Cannot send 'Receive': an argument "
        "cannot be serialized (Cannot encode Invocation as JSON: Dict key must be str)."
    )
    assert not lines(caplog, logging.ERROR)
    (line,) = [r for r in lines(caplog) if "broadcast failed" in r.getMessage()]
    assert (line.levelno, line.exc_info) == (logging.INFO, None)


@pytest.mark.parametrize("detailed", [False, True])
async def test_an_upload_item_of_the_wrong_type_ends_the_stream_and_fails_the_call(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, detailed: bool
) -> None:
    caplog.set_level(logging.INFO)
    server = await start_server(ChattyHub, options=HubOptions(enable_detailed_errors=detailed))
    async with open_test_client(server, PATH) as client:
        await client.send_message(Invocation("UploadSum", (), "0", ("up",)))
        await client.send_message(StreamItem("up", 1))
        await client.send_message(StreamItem("up", "two"))
        await client.send_message(StreamItem("up", 3))  # the stream is over: ignored
        text = UNEXPECTED.format("UploadSum")
        if detailed:
            text += " ClientStreamError: Failed to bind Stream message."
        assert await client.next_message() == Completion.with_error("0", text)
        assert await client.invoke("Echo", "still here") == "still here"
    assert not lines(caplog, logging.ERROR)
    assert all(r.exc_info is None for r in lines(caplog))
    assert any("wrong type" in r.getMessage() for r in lines(caplog, logging.INFO))


async def test_repeated_lines_are_rate_limited_per_connection(
    autojump_clock: trio.abc.Clock, start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = await start_server(ChattyHub)

    def hub_errors() -> list[str]:
        return [r.getMessage() for r in lines(caplog) if "HubException" in r.getMessage()]

    async with open_test_client(server, PATH, connection_id="c") as client:
        for n in range(30):
            with pytest.raises(InvocationError):
                await client.invoke("Throw", f"no {n}")
        assert hub_errors() == [
            f"connection c: throw failed: HubException: no {n}" for n in range(10)
        ]
        await trio.sleep(60)  # a new window: what was held back is reported first
        with pytest.raises(InvocationError):
            await client.invoke("Throw", "again")
        assert hub_errors()[10:] == [
            "connection c: suppressed 20 more lines like '%s failed: HubException: %s'",
            "connection c: throw failed: HubException: again",
        ]
        for n in range(15):
            with pytest.raises(InvocationError):
                await client.invoke("Throw", f"late {n}")
    # The close reports what the last window held back.
    assert hub_errors()[-1] == (
        "connection c: suppressed 6 more lines like '%s failed: HubException: %s'"
    )
    # Another connection has a count of its own.
    async with open_test_client(server, PATH, connection_id="d") as other:
        with pytest.raises(InvocationError):
            await other.invoke("Throw", "first")
    assert hub_errors()[-1] == "connection d: throw failed: HubException: first"


def test_clip_keeps_short_text_and_cuts_long_text() -> None:
    assert clip("short") == "short"
    assert clip("x" * 200) == "x" * 200
    assert clip("x" * 30_000) == "x" * 200 + "... (30000 characters)"
