"""What each ``client.mjs`` scenario must have observed, whatever the transport.

``CHECKS[scenario](observations, protocol)`` asserts on the JSON the scenario printed.
Transport test modules (WebSockets now; Server-Sent Events and long polling next) run a
scenario with their transport and hand the observations to the same check.

Wire messages (``wire``) are the messages the official client parsed. For JSON they are
compared exactly, which also proves the server omits absent optionals (no ``headers``,
no ``invocationId`` on a broadcast, no ``result`` on a stream completion). MessagePack
always carries a header map and, on Invocations, a stream-id array, so ``normalized``
drops those when empty before comparing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Observations = dict[str, Any]

THROW_BOOM = "An unexpected error occurred invoking 'Throw' on the server. HubException: boom"
NOPE = "Failed to invoke 'Nope' due to an error on the server. HubException: Method does not exist."
BAD_ARGUMENT_COUNT = "Failed to invoke 'Add' due to an error on the server."
STREAMING_VIA_INVOKE = (
    "The client attempted to invoke the streaming 'Counter' method with a non-streaming invocation."
)
INVOKE_VIA_STREAM = (
    "The client attempted to invoke the non-streaming 'Add' method with a streaming invocation."
)
ASK_CALLER_NO_RESULT = (
    "An unexpected error occurred invoking 'AskCaller' on the server. "
    "HubException: Client didn't provide a result."
)
ASK_CALLER_HANDLER_THREW = (
    "An unexpected error occurred invoking 'AskCaller' on the server. "
    "HubException: Error: client handler failed"
)

# The Completion of Void() with invocationId "0" (signalr-protocol.md section 13, vectors 7
# and 14): JSON text, and MessagePack as hex.
VOID_COMPLETION = {
    "json": '{"type":3,"invocationId":"0","result":null}\x1e',
    "messagepack": "07950380a13003c0",
}


def value(outcome: dict[str, Any]) -> Any:
    assert "error" not in outcome, f"the call failed: {outcome['error']!r}"
    return outcome["value"]


def error(outcome: dict[str, Any]) -> str:
    assert "error" in outcome, (
        f"the call succeeded with {outcome.get('value')!r}; expected an error"
    )
    text: str = outcome["error"]
    return text


def normalized(messages: list[dict[str, Any]], protocol: str) -> list[dict[str, Any]]:
    if protocol != "messagepack":
        return messages
    out = []
    for message in messages:
        message = dict(message)
        if message.get("headers") == {}:
            del message["headers"]
        if message.get("streamIds") == []:
            del message["streamIds"]
        out.append(message)
    return out


def assert_clean_closes(observed: Observations) -> None:
    closes = observed["closes"]
    unclean = {label: error for label, error in closes.items() if error is not None}
    assert not unclean, f"connections closed with an error after stop(): {unclean}"


# -- scenarios --------------------------------------------------------------------------


def check_invoke(observed: Observations, protocol: str) -> None:
    assert value(observed["void"]) is None, (
        "Void() must complete with result null (JSON 'result':null, MessagePack ResultKind 3 "
        f"with nil), got {observed['void']!r}"
    )
    raw = "".join(observed["frames"])
    assert VOID_COMPLETION[protocol] in raw, (
        f"the Void() completion is not byte-exact: expected {VOID_COMPLETION[protocol]!r} "
        f"in the frames {observed['frames'][:2]!r}"
    )
    assert value(observed["echo"]) == observed["expectedEcho"], "Echo of a nested object differs"
    assert value(observed["echoString"]) == "just a string"
    assert value(observed["echoNull"]) is None
    assert value(observed["echoCaseInsensitiveTarget"]) == 1, "hub targets are case-insensitive"
    assert value(observed["addInts"]) == 5
    assert value(observed["addNegative"]) == -6
    assert value(observed["addBig"]) == 2**40 + 1
    assert value(observed["addFloats"]) == 3.75
    assert value(observed["addMixed"]) == 1.5
    completions = normalized(observed["wire"], protocol)
    assert [m["type"] for m in completions] == [3] * 10, f"unexpected messages: {completions}"
    assert [m["invocationId"] for m in completions] == [str(i) for i in range(10)]
    for message in completions:
        assert set(message) == {"type", "invocationId", "result"}, f"extra fields: {message}"
    assert_clean_closes(observed)


def check_send(observed: Observations, protocol: str) -> None:
    message = observed["message"]
    assert value(observed["sendReturned"]) == "<undefined>", "send() resolves with nothing"
    assert observed["received"] == [message], "the Broadcast sent with send() came back once"
    assert value(observed["after"]) == 2
    assert normalized(observed["wire"], protocol) == [
        {"type": 1, "target": "Receive", "arguments": [message]},
        {"type": 3, "invocationId": "0", "result": 2},
    ], "the server must not answer a send() (no invocationId) with anything"
    assert_clean_closes(observed)


def check_stream(observed: Observations, protocol: str) -> None:
    assert observed["items"] == [0, 1, 2, 3, 4], "Counter(5, 0) items"
    assert observed["completion"] == {"complete": True}, observed["completion"]
    assert normalized(observed["wholeWire"], protocol)[-1] == {"type": 3, "invocationId": "0"}, (
        "a stream's completion carries no result and no error"
    )
    cancelled = observed["cancelledAfter"]
    assert cancelled[:3] == [0, 1, 2], f"first items of Counter(1000, 10): {cancelled}"
    assert normalized([observed["cancelCompletion"]], protocol) == [
        {"type": 3, "invocationId": observed["cancelCompletion"]["invocationId"]}
    ], f"a cancelled stream ends with a plain Completion: {observed['cancelCompletion']}"
    assert observed["itemsOnWireForCancelled"] < 1000, "the cancelled stream kept running"
    assert observed["longEndCallbacks"] == [], "a disposed subscription gets no callbacks"
    assert value(observed["afterCancel"]) == 42, "the connection must survive a cancellation"
    assert_clean_closes(observed)


def check_upload(observed: Observations, protocol: str) -> None:
    assert value(observed["mixed"]) == 16.5, "UploadSum of 1, 2, 3.5, 10"
    assert value(observed["hundred"]) == 4950, "UploadSum of 0..99 (past the 10-item buffer)"
    assert value(observed["none"]) == 0, "UploadSum of an empty stream"
    assert value(observed["after"]) == 3
    assert_clean_closes(observed)


def check_upload_while_invoking(observed: Observations, protocol: str) -> None:
    invoked = observed["invoked"]
    assert invoked["add"] == {"value": 3}, (
        "Add sent while UploadSum waits for its stream items must answer: a method with "
        "stream parameters does not hold the one-plain-invocation slot in ASP.NET Core "
        f"(DefaultHubDispatcher: '!isStreamCall'); got {invoked['add']}"
    )
    assert invoked["upload"] == {"value": 3}, f"UploadSum of 1, 2: {invoked['upload']}"
    sent = observed["sent"]
    assert value(sent["sendReturned"]) == "<undefined>"
    assert sent["add"] == {"value": 7}, (
        f"Add after send('UploadSum', subject), before its items, must answer; got {sent['add']}"
    )
    assert sent["flushed"] == {"value": "flushed"}, sent
    assert_clean_closes(observed)


def check_broadcast(observed: Observations, protocol: str) -> None:
    message = observed["message"]
    assert value(observed["invoked"]) is None
    assert observed["a"] == [message], "the sender receives its own broadcast"
    assert observed["b"] == [message], "the other connection receives the broadcast"
    assert normalized(observed["wireB"], protocol) == [
        {"type": 1, "target": "Receive", "arguments": [message]}
    ], "a broadcast is a non-blocking Invocation (no invocationId)"
    assert_clean_closes(observed)


def check_groups(observed: Observations, protocol: str) -> None:
    for step, outcome in observed["steps"].items():
        assert value(outcome) is None, f"{step}: {outcome}"
    expected = observed["expected"]
    assert observed["a"] == expected["a"], "A (member throughout)"
    assert observed["b"] == expected["b"], "B (member, then left: no m3)"
    assert observed["c"] == expected["c"], "C (never a member: broadcasts only)"
    assert_clean_closes(observed)


def check_client_results(observed: Observations, protocol: str) -> None:
    assert value(observed["answer"]) == 42, "AskCaller('getAnswer', 21) -> client's 21 * 2"
    assert value(observed["upperCase"]) == 10, "the JS client matches handler names any case"
    assert value(observed["asyncAnswer"]) == {"got": "q", "list": ["q", "q"]}
    assert error(observed["noHandler"]) == ASK_CALLER_NO_RESULT
    assert error(observed["failing"]) == ASK_CALLER_HANDLER_THREW
    assert error(observed["returnsNothing"]) == ASK_CALLER_NO_RESULT
    assert value(observed["after"]) == 4
    invocations = normalized(observed["serverInvocations"], protocol)
    assert [(m["target"], m["arguments"]) for m in invocations] == [
        ("getAnswer", [21]),
        ("GETANSWER", [5]),
        ("asyncAnswer", ["q"]),
        ("noSuchHandler", [1]),
        ("failing", [1]),
        ("returnsNothing", [1]),
    ]
    ids = [m.get("invocationId") for m in invocations]
    assert all(isinstance(i, str) and i.startswith("s") for i in ids), ids
    assert len(set(ids)) == len(ids), f"client-result invocation ids repeat: {ids}"
    assert_clean_closes(observed)


def check_errors(observed: Observations, protocol: str) -> None:
    assert error(observed["throw"]) == THROW_BOOM
    assert error(observed["unknown"]) == NOPE
    assert error(observed["tooFewArguments"]) == BAD_ARGUMENT_COUNT
    assert error(observed["tooManyArguments"]) == BAD_ARGUMENT_COUNT
    assert error(observed["streamingViaInvoke"]) == STREAMING_VIA_INVOKE
    assert error(observed["invokeViaStream"]) == INVOKE_VIA_STREAM
    assert value(observed["sendThrow"]) == "<undefined>"
    assert value(observed["after"]) == 42, "the connection survives errors"
    wire = normalized(observed["wire"], protocol)
    assert [(m["type"], m["invocationId"]) for m in wire] == [(3, str(i)) for i in range(7)], (
        f"one Completion per invoke and none for the failing send(): {wire}"
    )
    assert_clean_closes(observed)


def check_concurrent(observed: Observations, protocol: str) -> None:
    assert [value(o) for o in observed["adds"]] == [i + 1000 for i in range(50)], (
        "50 concurrent Add invocations (sent batched in one frame)"
    )
    assert [value(o) for o in observed["echoes"]] == [{"i": i} for i in range(10)]
    for s, stream in enumerate(observed["streams"]):
        assert stream == {"items": list(range(10 + s))}, f"concurrent stream Counter({10 + s}, 0)"
    assert_clean_closes(observed)


def check_limits(observed: Observations, protocol: str) -> None:
    assert observed["fitsLength"] == 30000, (
        f"a 30000-character Echo is under the 32 KB limit: {observed['fitsLength']!r}"
    )
    assert observed["fitsSame"], "the 30000-character Echo came back changed"
    assert observed["close"] == {
        "type": 7,
        "error": "Connection closed with an error.",
        "allowReconnect": True,
    }, "an oversize record closes the connection with the error Close record"
    assert error(observed["over"]) == (
        "Server returned an error on close: Connection closed with an error."
    )
    assert observed["closeError"] == (
        "Error: Server returned an error on close: Connection closed with an error."
    )


def check_whoami(observed: Observations, protocol: str) -> None:
    connection_id = observed["connectionId"]
    assert isinstance(connection_id, str), f"negotiated connection id: {connection_id!r}"
    assert len(connection_id) == 22, f"connection ids are 22 Base64Url chars: {connection_id!r}"
    assert value(observed["whoami"]) == {
        "userId": None,
        "name": None,
        "roles": [],
        "connectionId": connection_id,
    }
    assert_clean_closes(observed)


CHECKS: dict[str, Callable[[Observations, str], None]] = {
    "invoke": check_invoke,
    "send": check_send,
    "stream": check_stream,
    "upload": check_upload,
    "uploadWhileInvoking": check_upload_while_invoking,
    "broadcast": check_broadcast,
    "groups": check_groups,
    "clientResults": check_client_results,
    "errors": check_errors,
    "whoami": check_whoami,
    "concurrent": check_concurrent,
    "limits": check_limits,
}
