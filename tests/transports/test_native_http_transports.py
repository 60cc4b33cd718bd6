"""Server-Sent Events and long polling on triohub's own server (``serve_native``), on
real sockets: the I/O the native server adds to the shared endpoint (chunked event
streams, held polls on a kept-alive connection, a client that leaves mid-poll or
closes its event stream). The answers themselves are the endpoint's, asserted for
both servers in test_raw_http.py and end to end by the official client in tests/e2e.

Real time; the waits are short.
"""

from __future__ import annotations

import orjson
import pytest
import trio

from .native_fixtures import native_fixture, start_native_fixture  # noqa: F401
from .native_support import HUB, Native
from .native_wire import Wire, connect
from .support import HANDSHAKE_OK, JSON_HANDSHAKE, completion, invocation

pytestmark = pytest.mark.usefixtures("hang_guard")


async def negotiate(native: Native) -> tuple[str, str]:
    """A negotiated connection's token and id."""
    wire = await connect(native)
    response = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1")
    await wire.aclose()
    body = orjson.loads(response.body)
    return body["connectionToken"], body["connectionId"]


async def test_long_polling_on_one_kept_alive_connection(native: Native) -> None:
    token, connection_id = await negotiate(native)
    wire = await connect(native)
    first = await wire.request("GET", f"{HUB}?id={token}")
    assert (first.status, first.header("content-type"), first.body) == (
        200,
        "application/octet-stream",
        b"",
    )
    sent = await wire.request("POST", f"{HUB}?id={token}", body=JSON_HANDSHAKE)
    assert (sent.status, sent.body) == (200, b"")
    assert (await wire.request("GET", f"{HUB}?id={token}")).body == HANDSHAKE_OK
    call = invocation("Add", 2, 3, invocation_id="1")
    assert (await wire.request("POST", f"{HUB}?id={token}", body=call)).status == 200
    assert (await wire.request("GET", f"{HUB}?id={token}")).body == completion("1", 5)
    # DELETE from a second connection ends the poll held on the first with 204.
    await wire.send(Wire.format("GET", f"{HUB}?id={token}"))
    other = await connect(native)
    assert (await other.request("DELETE", f"{HUB}?id={token}")).status == 202
    assert (await wire.response()).status == 204
    with trio.fail_after(5):
        await native.journal.wait_ended(connection_id)  # the hub saw it end


async def test_a_client_that_leaves_mid_poll_is_no_error(
    native: Native, caplog: pytest.LogCaptureFixture
) -> None:
    token, _ = await negotiate(native)
    wire = await connect(native)
    assert (await wire.request("GET", f"{HUB}?id={token}")).status == 200
    await wire.send(Wire.format("GET", f"{HUB}?id={token}"))
    await trio.sleep(0.05)
    await wire.aclose()  # the held poll's client is gone
    again = await connect(native)
    # The connection lives on: a new poll on a new TCP connection is served.
    assert (await again.request("POST", f"{HUB}?id={token}", body=JSON_HANDSHAKE)).status == 200
    assert (await again.request("GET", f"{HUB}?id={token}")).body == HANDSHAKE_OK
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_an_event_stream_is_chunked_and_closing_it_ends_the_connection(
    native: Native,
) -> None:
    token, connection_id = await negotiate(native)
    stream = await connect(native)
    await stream.send(Wire.format("GET", f"{HUB}?id={token}", (("Accept", "text/event-stream"),)))
    head = (await stream._until(b"\r\n\r\n")).decode("latin-1").lower()
    assert head.startswith("http/1.1 200 ok\r\n"), head
    assert "content-type: text/event-stream" in head
    assert "transfer-encoding: chunked" in head
    sender = await connect(native)
    assert (await sender.request("POST", f"{HUB}?id={token}", body=JSON_HANDSHAKE)).status == 200
    with trio.fail_after(5):
        while b"data: {}\x1e" not in stream.buffer:
            await stream._fill()
    # A second event stream for the same id is refused while this one runs.
    second = await connect(native)
    accept = ("Accept", "text/event-stream")
    assert (await second.request("GET", f"{HUB}?id={token}", accept)).status == 409
    await stream.aclose()  # the client closes its EventSource
    with trio.fail_after(5):
        await native.journal.wait_ended(connection_id)  # the hub saw it end
