"""The HTTP side of triohub's own server (``serve_native``) on a real socket.

Raw Trio sockets send exact requests and read exact answers: negotiate and
keep-alive, the WebSocket upgrade and its refusals (bad keys and versions, unknown or
reused ids, oversized or malformed heads and bodies), bearer authentication and the
rule that only the negotiating user may use a negotiated id, and refusals that log no
token. The answers both servers share are in test_raw_http.py (one table).
trio-websocket's client stands in for a real client where framing is not the point.

Real time throughout (real sockets); the waits are short.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionRejected, open_websocket_url

from triohub.protocol import Texts

from ..auth.support import HubSocket, claims, sign
from .native_fixtures import native_fixture, start_native_fixture  # noqa: F401
from .native_support import HUB, OTHER, PRIVATE, Native, StartNative, authenticator, token_for
from .native_wire import (
    RFC_ACCEPT,
    RFC_KEY,
    TEXT,
    Frame,
    Response,
    Wire,
    connect,
    expected_accept,
    invocation,
    new_key,
)
from .support import HANDSHAKE_OK, ID, JSON_HANDSHAKE

# -- 1. negotiate and plain HTTP ----------------------------------------------------


async def test_negotiate_v1_offers_every_transport(native: Native) -> None:
    wire = await connect(native)
    response = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1")
    assert (response.status, response.reason) == (200, "OK")
    assert response.header("content-type") == "application/json"
    assert response.header("content-length") == str(len(response.body))
    body = orjson.loads(response.body)
    assert list(body) == [
        "negotiateVersion",
        "connectionId",
        "connectionToken",
        "availableTransports",
    ]
    assert body["negotiateVersion"] == 1
    assert ID.fullmatch(body["connectionId"]), body
    assert ID.fullmatch(body["connectionToken"]), body
    assert body["connectionId"] != body["connectionToken"]
    assert body["availableTransports"] == [
        {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
        {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
        {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
    ]


async def test_negotiate_v0_has_no_separate_token(native: Native) -> None:
    wire = await connect(native)
    response = await wire.request("POST", f"{HUB}/negotiate")
    assert response.status == 200
    body = orjson.loads(response.body)
    assert body["negotiateVersion"] == 0
    assert ID.fullmatch(body["connectionId"]), body
    assert "connectionToken" not in body
    # v0 clients send the id as the token: it must be usable as one.
    hub = await connect(native)
    await hub.hub_open(f"{HUB}?id={body['connectionId']}")
    await hub.send_frame(TEXT, invocation("1", "WhoAmI"))
    record = await hub.record()
    assert record["result"]["connectionId"] == body["connectionId"]


async def test_negotiate_error_is_a_200_with_the_text(native: Native) -> None:
    wire = await connect(native)
    response = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=x")
    assert (response.status, response.header("content-type")) == (200, "application/json")
    assert orjson.loads(response.body) == {"error": Texts.NEGOTIATE_NON_INTEGER}


async def test_get_negotiate_is_405_and_unknown_paths_404(native: Native) -> None:
    wire = await connect(native)
    get = await wire.request("GET", f"{HUB}/negotiate?negotiateVersion=1")
    assert (get.status, get.reason, get.body) == (405, "Method Not Allowed", b"")
    unknown = await wire.request("POST", "/hubs/nothing/negotiate?negotiateVersion=1")
    assert (unknown.status, unknown.body) == (404, b"Not Found")
    assert unknown.header("content-type") == "text/plain"
    root = await wire.request("GET", "/")
    assert (root.status, root.body) == (404, b"Not Found")
    # Each answer kept the connection open.
    assert get.header("connection") is None
    assert (await wire.request("POST", f"{HUB}/negotiate")).status == 200


async def test_keep_alive_answers_each_request_in_turn(native: Native) -> None:
    wire = await connect(native)
    first = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1")
    second = await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1")
    assert (first.status, second.status) == (200, 200)
    assert orjson.loads(first.body)["connectionId"] != orjson.loads(second.body)["connectionId"]
    # Pipelined: three requests in one write, answered in order.
    await wire.send(
        Wire.format("POST", f"{HUB}/negotiate?negotiateVersion=1")
        + Wire.format("GET", "/missing")
        + Wire.format("POST", f"{HUB}/negotiate", body=b"ignored body")
    )
    answers = [await wire.response() for _ in range(3)]
    assert [answer.status for answer in answers] == [200, 404, 200]
    assert orjson.loads(answers[2].body)["negotiateVersion"] == 0


async def test_connection_close_ends_the_connection_after_the_answer(native: Native) -> None:
    wire = await connect(native)
    response = await wire.request(
        "POST", f"{HUB}/negotiate?negotiateVersion=1", ("Connection", "close")
    )
    assert response.status == 200
    assert await wire.closed() == b""


async def test_http_1_0_closes_after_the_answer(native: Native) -> None:
    # h11 keeps no HTTP/1.0 connection alive, even when asked to.
    for extra in (b"", b"Connection: keep-alive\r\n"):
        wire = await connect(native)
        await wire.send(b"POST " + HUB.encode() + b"/negotiate HTTP/1.0\r\n" + extra + b"\r\n")
        response = await wire.response()
        assert (response.status, response.header("connection")) == (200, "close")
        assert await wire.closed() == b""


# -- 2. the upgrade and the HTTP refusals -------------------------------------------


async def test_upgrade_handshake_and_invocation(native: Native) -> None:
    wire = await connect(native)
    response = await wire.upgrade(HUB)
    assert (response.status, response.reason) == (101, "Switching Protocols")
    assert response.header("upgrade") == "websocket"
    assert response.header("connection") == "Upgrade"
    assert response.header("sec-websocket-accept") == RFC_ACCEPT
    assert response.body == b""
    await wire.send_frame(TEXT, JSON_HANDSHAKE)
    assert await wire.frame() == Frame(True, TEXT, HANDSHAKE_OK)
    await wire.send_frame(TEXT, invocation("7", "Add", 40, 2))
    assert await wire.frame() == Frame(True, TEXT, b'{"type":3,"invocationId":"7","result":42}\x1e')


async def test_frames_sent_with_the_upgrade_request_are_not_lost(native: Native) -> None:
    """The handshake and two invocations in the same write as the upgrade request:
    the bytes read past the head are handed to the WebSocket."""
    wire = await connect(native)
    upgrade = Wire.format(
        "GET",
        HUB,
        (
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Key", RFC_KEY),
            ("Sec-WebSocket-Version", "13"),
        ),
    )
    frames = [JSON_HANDSHAKE, invocation("1", "Echo", "one"), invocation("2", "Echo", "two")]
    await wire.send(upgrade + b"".join(Wire.encode(TEXT, frame) for frame in frames))
    response = await wire.response()
    assert (response.status, response.header("sec-websocket-accept")) == (101, RFC_ACCEPT)
    assert await wire.frame() == Frame(True, TEXT, HANDSHAKE_OK)
    assert [(await wire.record())["result"] for _ in range(2)] == ["one", "two"]


async def test_a_request_arriving_in_pieces_is_answered(native: Native) -> None:
    wire = await connect(native)
    request = Wire.format("POST", f"{HUB}/negotiate?negotiateVersion=1", body=b"{}")
    for index in range(0, len(request), 7):
        await wire.send(request[index : index + 7])
        await trio.sleep(0.001)
    response = await wire.response()
    assert response.status == 200
    assert orjson.loads(response.body)["negotiateVersion"] == 1


async def test_accept_value_follows_the_key(native: Native) -> None:
    for _ in range(3):
        key = new_key()
        wire = await connect(native)
        response = await wire.upgrade(HUB, key=key)
        assert response.header("sec-websocket-accept") == expected_accept(key)
        await wire.aclose()


async def test_negotiated_id_is_used_once(native: Native) -> None:
    wire = await connect(native)
    body = orjson.loads((await wire.request("POST", f"{HUB}/negotiate?negotiateVersion=1")).body)
    token, connection_id = body["connectionToken"], body["connectionId"]
    async with open_websocket_url(native.ws_url(HUB, f"id={token}")) as ws:
        hub = HubSocket(ws)
        await hub.handshake()
        assert (await hub.invoke("WhoAmI"))["result"]["connectionId"] == connection_id
        # The same id again while the first socket is connected.
        again = await connect(native)
        refused = await again.upgrade(f"{HUB}?id={token}")
        assert (refused.status, refused.reason, refused.body) == (409, "Conflict", b"")
        # That connection stays usable for HTTP.
        assert (await again.request("POST", f"{HUB}/negotiate")).status == 200
        # POST and DELETE on a WebSocket connection.
        post = await again.request("POST", f"{HUB}?id={token}", body=b"{}\x1e")
        assert (post.status, post.body) == (405, Texts.POST_NOT_ALLOWED_FOR_WEBSOCKETS.encode())
        delete = await again.request("DELETE", f"{HUB}?id={token}")
        assert (delete.status, delete.body) == (400, Texts.DELETE_NOT_ALLOWED.encode())
    # Once that socket has ended the id is gone.
    with trio.fail_after(5):
        await native.journal.wait_ended(connection_id)
        # Gone with the hub connection, with no scheduling point in between.
        await trio.testing.wait_all_tasks_blocked()
    gone = await connect(native)
    response = await gone.upgrade(f"{HUB}?id={token}")
    assert (response.status, response.body) == (404, Texts.NO_CONNECTION.encode())


async def test_unknown_id_is_404(native: Native) -> None:
    wire = await connect(native)
    response = await wire.upgrade(f"{HUB}?id=not-a-connection")
    assert (response.status, response.reason) == (404, "Not Found")
    assert (response.body, response.header("content-type")) == (
        Texts.NO_CONNECTION.encode(),
        "text/plain",
    )
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(native.ws_url(HUB, "id=also-unknown")):
            pass  # pragma: no cover
    assert rejected.value.status_code == 404
    assert rejected.value.body == Texts.NO_CONNECTION.encode()


async def test_id_of_another_hub_is_404(native: Native) -> None:
    wire = await connect(native)
    token = orjson.loads((await wire.request("POST", f"{HUB}/negotiate")).body)["connectionId"]
    response = await wire.upgrade(f"{OTHER}?id={token}")
    assert (response.status, response.body) == (404, Texts.NO_CONNECTION.encode())
    # Still unused: it works on its own hub.
    await wire.aclose()
    mine = await connect(native)
    await mine.hub_open(f"{HUB}?id={token}")


@pytest.mark.parametrize(
    ("key", "version"),
    [
        (RFC_KEY, "12"),
        (RFC_KEY, ""),
        ("not base64!", "13"),
        (base64.b64encode(b"fifteen bytes..").decode(), "13"),
        ("", "13"),
    ],
    ids=["version-12", "no-version", "key-not-base64", "key-15-bytes", "no-key"],
)
async def test_bad_upgrade_is_400(native: Native, key: str, version: str) -> None:
    wire = await connect(native)
    response = await wire.upgrade(HUB, key=key, version=version)
    assert (response.status, response.reason) == (400, "Bad Request")
    assert response.header("sec-websocket-version") == "13"
    assert response.header("connection") == "close"
    assert response.header("sec-websocket-accept") is None
    assert await wire.closed() == b""


async def test_post_without_id_is_400_and_with_unknown_id_404(native: Native) -> None:
    wire = await connect(native)
    response = await wire.request("POST", HUB, body=b"{}\x1e")
    assert (response.status, response.body) == (400, b"Connection ID required")
    unknown = await wire.request("POST", f"{HUB}?id=nope", body=b"{}\x1e")
    assert (unknown.status, unknown.body) == (404, b"No Connection with that ID")
    put = await wire.request("PUT", HUB)
    assert put.status == 405


async def test_a_head_growing_past_16_kib_is_431(native: Native) -> None:
    wire = await connect(native)
    # 20 KiB of headers, and the head never ends.
    await wire.send(b"GET " + HUB.encode() + b" HTTP/1.1\r\nX-Filler: " + b"a" * 20480)
    response = await wire.response()
    assert (response.status, response.reason) == (431, "Request Header Fields Too Large")
    assert response.header("connection") == "close"
    assert await wire.closed() == b""


async def test_a_whole_head_over_16_kib_is_431(native: Native) -> None:
    wire = await connect(native)
    filler = ("X-Filler", "a" * (20 * 1024))
    response = await wire.request("POST", f"{HUB}/negotiate", filler)
    assert response.status == 431


@pytest.mark.parametrize(
    "request_line",
    [b"GARBAGE", b"GET /hubs/native", b"GET hubs/native HTTP/1.1", b"GET / HTTP/2.0"],
    ids=["one-word", "no-version", "relative-target", "http-2"],
)
async def test_malformed_request_line_is_400(native: Native, request_line: bytes) -> None:
    wire = await connect(native)
    await wire.send(request_line + b"\r\nHost: 127.0.0.1\r\n\r\n")
    response = await wire.response()
    assert response.status == 400
    assert response.header("connection") == "close"
    assert await wire.closed() == b""


async def test_malformed_header_line_is_400(native: Native) -> None:
    wire = await connect(native)
    await wire.send(b"POST /hubs/native/negotiate HTTP/1.1\r\nNo colon here\r\n\r\n")
    assert (await wire.response()).status == 400
    assert await wire.closed() == b""


async def test_a_chunked_body_is_read_and_one_too_big_to_skip_ends_the_connection(
    native: Native,
) -> None:
    wire = await connect(native)
    await wire.send(
        Wire.format("POST", f"{HUB}/negotiate", (("Transfer-Encoding", "chunked"),))
        + b"5\r\nhello\r\n0\r\n\r\n"
    )
    assert (await wire.response()).status == 200
    assert (await wire.request("POST", f"{HUB}/negotiate")).status == 200  # kept alive
    big = await connect(native)
    await big.send(Wire.format("POST", f"{HUB}/negotiate", (("Content-Length", str(1024 * 1024)),)))
    response = await big.response()
    assert response.status == 200  # negotiate reads no body; the rest is not skipped
    assert await big.closed() == b""


# -- 3. authentication --------------------------------------------------------------


async def test_anonymous_negotiate_and_upgrade_get_the_challenge(
    start_native: StartNative,
) -> None:
    native = await start_native(authenticator=authenticator())
    wire = await connect(native)
    negotiate = await wire.request("POST", f"{PRIVATE}/negotiate?negotiateVersion=1")
    assert (negotiate.status, negotiate.reason, negotiate.body) == (401, "Unauthorized", b"")
    assert negotiate.all("www-authenticate") == ["Bearer"]
    upgrade = await wire.upgrade(PRIVATE)
    assert (upgrade.status, upgrade.all("www-authenticate")) == (401, ["Bearer"])
    # A refusal keeps the HTTP connection; the public hub stays open to anyone.
    assert (await wire.request("POST", f"{HUB}/negotiate")).status == 200


async def negotiate_as(wire: Wire, path: str, token: str) -> Response:
    """POST negotiate (version 1) with ``token`` as the bearer."""
    return await wire.request(
        "POST", f"{path}/negotiate?negotiateVersion=1", ("Authorization", f"Bearer {token}")
    )


async def who_am_i(url: str) -> dict[str, Any]:
    """Open ``url``, do the hub handshake and invoke ``WhoAmI``: its result."""
    async with open_websocket_url(url) as ws:
        hub = HubSocket(ws)
        await hub.handshake()
        result: dict[str, Any] = (await hub.invoke("WhoAmI"))["result"]
        return result


async def test_expired_token_is_401_with_the_reason(start_native: StartNative) -> None:
    native = await start_native(authenticator=authenticator())
    expired = sign(claims("alice", now=time.time() - 7200, lifetime=3600))
    wire = await connect(native)
    negotiate = await negotiate_as(wire, PRIVATE, expired)
    assert negotiate.status == 401
    assert negotiate.all("www-authenticate") == [
        'Bearer error="invalid_token", error_description="The token expired."'
    ]
    upgrade = await wire.upgrade(f"{PRIVATE}?access_token={expired}")
    assert upgrade.status == 401


async def test_token_on_the_upgrade_query_sets_the_principal(start_native: StartNative) -> None:
    native = await start_native(authenticator=authenticator())
    alice = token_for("alice")
    # With negotiation: the bearer header on negotiate, the query on the upgrade.
    wire = await connect(native)
    negotiate = await negotiate_as(wire, PRIVATE, alice)
    assert negotiate.status == 200
    body = orjson.loads(negotiate.body)
    url = native.ws_url(PRIVATE, f"id={body['connectionToken']}&access_token={alice}")
    result = await who_am_i(url)
    assert (result["userId"], result["connectionId"]) == ("alice", body["connectionId"])
    # Without negotiation.
    assert (await who_am_i(native.ws_url(PRIVATE, f"access_token={alice}")))["userId"] == "alice"


async def test_only_the_negotiating_user_may_use_a_negotiated_id(
    start_native: StartNative, caplog: pytest.LogCaptureFixture
) -> None:
    """Negotiate binds the negotiating principal; the upgrade must come from the same
    user (``check_bound``): another user's token is 403, no token 401 with the challenge,
    a fresh token of the same user is fine."""
    native = await start_native(authenticator=authenticator())
    alice, bob = token_for("alice"), token_for("bob")
    for path in (PRIVATE, HUB):
        wire = await connect(native)
        negotiate = await negotiate_as(wire, path, alice)
        body = orjson.loads(negotiate.body)
        token = body["connectionToken"]
        as_bob = await wire.upgrade(f"{path}?id={token}&access_token={bob}")
        assert (as_bob.status, as_bob.body) == (403, b""), path
        anonymous = await wire.upgrade(f"{path}?id={token}")
        assert anonymous.status == 401, path
        assert anonymous.all("www-authenticate") == ["Bearer"], path
        # The refusals did not use the id up: alice (another token of hers) connects.
        alice_again = sign(claims("alice", lifetime=600))
        assert alice_again != alice
        url = native.ws_url(path, f"id={token}&access_token={alice_again}")
        result = await who_am_i(url)
        assert (result["userId"], result["connectionId"]) == ("alice", body["connectionId"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("another user" in message for message in warnings), warnings
    for record in caplog.records:
        assert bob not in record.getMessage() + repr(record.args)
        assert alice not in record.getMessage() + repr(record.args)


async def test_refused_requests_log_no_token(
    start_native: StartNative, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    native = await start_native(authenticator=authenticator())
    expired = sign(claims("alice", now=time.time() - 7200, lifetime=3600))
    forged = sign(claims("mallory"), "another-secret-of-the-right-length-0123456789")
    wire = await connect(native)
    for token in (expired, forged):
        negotiate = await wire.request(
            "POST",
            f"{PRIVATE}/negotiate?access_token={token}",
            ("Authorization", f"Bearer {token}"),
        )
        assert negotiate.status == 401
        upgrade = await wire.upgrade(f"{PRIVATE}?access_token={token}")
        assert upgrade.status == 401
        post = await wire.request("POST", f"{PRIVATE}?id=x&access_token={token}")
        assert post.status == 401
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert refusals, "the refusals were not logged"
    for record in caplog.records:
        text = record.getMessage() + repr(record.args)
        for token in (expired, forged):
            assert token not in text
            assert token.split(".")[2] not in text, "a token signature was logged"
        assert "access_token" not in text
