"""Golden bytes of the backplane's envelopes, written by hand from
docs/scale-out.md (ASP.NET's RedisProtocol.cs): each decodes, and re-encodes
byte for byte."""

from __future__ import annotations

import pytest

from triohub.backplane import codec
from triohub.backplane.codec import (
    Ack,
    Channels,
    CloseCommand,
    CodecError,
    GroupAction,
    GroupCommand,
    RemoteInvocation,
    ReturnedCompletion,
)

JSON_RECORD = b'{"type":1,"target":"Got","arguments":["hi"]}\x1e'


def s(text: str) -> bytes:
    """A MessagePack fixstr (under 32 bytes)."""
    assert len(text) < 32
    return bytes([0xA0 | len(text)]) + text.encode()


def b(data: bytes) -> bytes:
    """A MessagePack bin 8."""
    return bytes([0xC4, len(data)]) + data


def test_channel_names_are_aspnets() -> None:
    channels = Channels("MyApp.ChatHub")
    assert channels.all == "MyApp.ChatHub:all"
    assert channels.ack("node1") == "MyApp.ChatHub:internal:ack:node1"
    assert channels.return_("node1") == "MyApp.ChatHub:internal:return:node1"
    assert channels.connection("abc") == "MyApp.ChatHub:connection:abc"
    assert channels.group("room") == "MyApp.ChatHub:group:room"
    assert channels.user("bob@x") == "MyApp.ChatHub:user:bob@x"
    assert channels.close == "MyApp.ChatHub:internal:close"  # ours


def test_an_aspnet_invocation_with_excluded_connections() -> None:
    golden = (
        b"\x92"  # [excluded, map]
        + b"\x91"
        + s("c1")
        + b"\x82"
        + s("json")
        + b(JSON_RECORD)
        + s("messagepack")
        + b(b"\x05\x95\x01\x80\xc0\xa3Got")
    )
    message = codec.decode_invocation(golden)
    assert message == RemoteInvocation(
        excluded=("c1",),
        framed={"json": JSON_RECORD, "messagepack": b"\x05\x95\x01\x80\xc0\xa3Got"},
    )
    assert codec.encode_invocation(message.excluded, message.framed) == golden


def test_an_invocation_expecting_a_result() -> None:
    golden = b"\x94\x90\x81" + s("json") + b(b"X\x1e") + s("inv1") + s("P:internal:return:s1")
    message = codec.decode_invocation(golden)
    assert (message.invocation_id, message.return_channel, message.origin) == (
        "inv1",
        "P:internal:return:s1",
        None,
    )
    encoded = codec.encode_invocation(
        (), message.framed, invocation_id="inv1", return_channel="P:internal:return:s1"
    )
    assert encoded == golden


def test_our_trailing_items_origin_and_ordered_groups() -> None:
    golden = (
        b"\x96\x90\x81"
        + s("json")
        + b(b"X\x1e")
        + b"\xc0\xc0"
        + s("s1")
        + b"\x92"
        + s("a")
        + s("b")
    )
    message = codec.decode_invocation(golden)
    assert (message.origin, message.groups, message.invocation_id) == ("s1", ("a", "b"), None)
    encoded = codec.encode_invocation((), message.framed, origin="s1", groups=["a", "b"])
    assert encoded == golden
    # Only the origin: five items.
    five = b"\x95\x90\x81" + s("json") + b(b"X\x1e") + b"\xc0\xc0" + s("s1")
    assert codec.encode_invocation((), {"json": b"X\x1e"}, origin="s1") == five


def test_a_node_skips_its_own_invocations_and_decodes_the_others() -> None:
    golden = b"\x95\x91" + s("c1") + b"\x81" + s("json") + b(b"X\x1e") + b"\xc0\xc0" + s("s1")
    assert codec.decode_foreign_invocation(golden, "s1") is None
    assert codec.decode_foreign_invocation(golden, "s2") == codec.decode_invocation(golden)
    # ASP.NET's two items (no origin): always another node's.
    aspnet = b"\x92\x90\x81" + s("json") + b(b"X\x1e")
    assert codec.decode_foreign_invocation(aspnet, "s1") == RemoteInvocation((), {"json": b"X\x1e"})
    with pytest.raises(CodecError):
        codec.decode_foreign_invocation(b"\x95\x90\x80\xc0\xc0\x01", "s1")


def test_readers_ignore_trailing_items_they_do_not_know() -> None:
    data = b"\x97\x90\x80\xc0\xc0" + s("s1") + b"\x90" + s("a later item")
    assert codec.decode_invocation(data).origin == "s1"
    assert codec.decode_ack(b"\x93\x07\xc2\xc0") == Ack(7, False)


def test_a_group_command_and_its_ack() -> None:
    golden = b"\x95\x01" + s("s1") + b"\x01" + s("g") + s("c1")
    command = codec.decode_connection_message(golden)
    assert command == GroupCommand(1, "s1", GroupAction.ADD, "g", "c1")
    assert codec.encode_group_command(command) == golden
    remove = GroupCommand(300, "s1", GroupAction.REMOVE, "g", "c1")
    assert codec.encode_group_command(remove) == b"\x95\xcd\x01\x2c" + s("s1") + b"\x02" + s(
        "g"
    ) + s("c1")
    assert codec.decode_ack(b"\x91\x01") == Ack(1, True)  # ASP.NET's ack: [id]
    assert codec.encode_ack(Ack(1, True)) == b"\x92\x01\xc3"
    assert codec.decode_ack(b"\x92\x01\xc2") == Ack(1, False)


def test_a_connection_channel_tells_invocations_from_group_commands() -> None:
    invocation = codec.encode_invocation(["x"], {"json": b"X\x1e"})
    assert isinstance(codec.decode_connection_message(invocation), RemoteInvocation)


def test_a_returned_completion() -> None:
    golden = b"\x92" + s("json") + b(b'{"type":3,"invocationId":"i","result":1}\x1e')
    returned = codec.decode_return(golden)
    assert returned == ReturnedCompletion("json", b'{"type":3,"invocationId":"i","result":1}\x1e')
    assert codec.encode_return(returned) == golden


def test_a_close_command() -> None:
    golden = b"\x98\xc2\x90\x91" + s("bob") + b"\x90\x90" + s("ABORTED") + s("s1") + s("why")
    command = codec.decode_close(golden)
    assert command == CloseCommand(False, (), ("bob",), (), (), "ABORTED", "s1", "why")
    assert codec.encode_close(command) == golden
    # Seven items (no detail) still read.
    assert codec.decode_close(golden[:1].replace(b"\x98", b"\x97") + golden[1:-4]).detail == ""


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # never used in MessagePack
        b"\x01",  # not an array
        b"\x90",  # empty
        b"\x92\x01\x80",  # excluded is not an array
        b"\x92\x90\x81\x01\x02",  # map of int to int
        b"\x92\x90\x81" + s("json") + s("text, not bin"),
    ],
)
def test_malformed_invocations_are_refused(data: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode_invocation(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x95\x01" + s("s1") + b"\x09" + s("g") + s("c1"),  # unknown action
        b"\x94\x01" + s("s1") + b"\x01" + s("g"),  # four items
        b"\x95\x01\x02\x01" + s("g") + s("c1"),  # server is not a string
    ],
)
def test_malformed_group_commands_are_refused(data: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode_connection_message(data)


def test_a_revocation_envelope() -> None:
    from triohub.authorization import Revocation

    golden = (
        b"\x95"  # [origin, until, user_id, token_id, issued_before]
        + s("node1")
        + b"\xcb\x41\xda\xd2\x74\x80\x20\x00\x00"  # float 64: 1800000000.5
        + s("bob@x")
        + b"\xc0"  # nil: no token id
        + b"\xcb\x41\xda\xd2\x74\x80\x00\x00\x00"  # float 64: 1800000000.0
    )
    origin, revocation = codec.decode_revocation(golden)
    assert origin == "node1"
    assert revocation == Revocation(
        until=1800000000.5, user_id="bob@x", token_id=None, issued_before=1800000000.0
    )
    assert codec.encode_revocation("node1", revocation) == golden
    assert codec.REVOCATIONS_CHANNEL == "triohub:internal:revocations"


@pytest.mark.parametrize(
    "data",
    [
        b"\x92\xa1n\x01",  # too short
        b"\x95\x01\x01\xc0\xc0\x01",  # the origin is not a string
        b"\x95\xa1n\x01\xc0\xc0\xc0",  # neither a token id nor issued_before
        b"\x95\xa1n\xa1x\xc0\xa1t\xc0",  # until is not a time
    ],
)
def test_what_is_not_a_revocation_is_refused(data: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode_revocation(data)
