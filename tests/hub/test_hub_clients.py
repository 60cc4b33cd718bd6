"""Who a send reaches (``signalr-protocol.md`` section 11), client results, the
hub context for code outside hubs, and isolation between servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from hub_support import HANDSHAKE_OK, PATH, StartServer, drain, open_raw_client

from triohub import ANONYMOUS, Hub, HubError, HubOptions, HubServer, Principal
from triohub.protocol import Completion, Invocation
from triohub.testing import HubTestClient, InvocationError, open_test_client


class TargetsHub(Hub):
    """``Target(kind, arg)`` sends ``Receive(kind, arg)`` to ``clients.<kind>(arg)``."""

    async def target(self, kind: str, arg: Any) -> None:
        clients = self.clients
        proxy = {
            "all": lambda: clients.all,
            "caller": lambda: clients.caller,
            "others": lambda: clients.others,
            "client": lambda: clients.client(arg),
            "clients": lambda: clients.clients(arg),
            "all_except": lambda: clients.all_except(arg),
            "group": lambda: clients.group(arg),
            "groups": lambda: clients.groups(arg),
            "group_except": lambda: clients.group_except(arg[0], arg[1]),
            "others_in_group": lambda: clients.others_in_group(arg),
            "user": lambda: clients.user(arg),
            "users": lambda: clients.users(arg),
        }[kind]()
        await proxy.send("Receive", kind, arg)

    async def join(self, group: str) -> None:
        await self.groups.add(self.context.connection_id, group)

    async def leave(self, group: str) -> None:
        await self.groups.remove(self.context.connection_id, group)

    async def add_other(self, connection_id: str, group: str) -> None:
        await self.groups.add(connection_id, group)

    async def whoami(self) -> list[Any]:
        return [self.context.connection_id, self.context.user_id]

    async def send_unserializable(self) -> None:
        await self.clients.all.send("Receive", object())


def user(sub: str) -> Principal:
    return Principal({"sub": sub}, scheme="Test")


@asynccontextmanager
async def four_clients(server: HubServer) -> AsyncIterator[dict[str, HubTestClient]]:
    """a, b (user u1), c (user u2), d (anonymous); groups g1 = {a, c}, g2 = {b}."""
    principals = {"a": user("u1"), "b": user("u1"), "c": user("u2"), "d": ANONYMOUS}
    async with AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(
                open_test_client(server, PATH, connection_id=name, principal=principal)
            )
            for name, principal in principals.items()
        }
        for name, group in [("a", "g1"), ("c", "g1"), ("b", "g2")]:
            await clients[name].invoke("Join", group)
        yield clients


TARGETS: list[tuple[str, Any, str]] = [
    ("all", None, "abcd"),
    ("caller", None, "a"),
    ("others", None, "bcd"),
    ("client", "c", "c"),
    ("client", "unknown", ""),
    ("clients", ["b", "d", "unknown"], "bd"),
    ("all_except", ["a", "b"], "cd"),
    ("group", "g1", "ac"),
    ("group", "nobody-here", ""),
    ("groups", ["g1", "g2"], "abc"),
    ("group_except", ["g1", ["c"]], "a"),
    ("others_in_group", "g1", "c"),
    ("others_in_group", "g2", "b"),
    ("user", "u1", "ab"),
    ("user", "U1", ""),  # user ids are compared case-sensitively
    ("users", ["u1", "u2"], "abc"),
]


@pytest.mark.parametrize(
    ("kind", "arg", "reached"), TARGETS, ids=[f"{k}-{a}" for k, a, _ in TARGETS]
)
async def test_clients_targets(
    start_server: StartServer, kind: str, arg: Any, reached: str
) -> None:
    server = await start_server(TargetsHub)
    async with four_clients(server) as clients:
        await clients["a"].invoke("Target", kind, arg)
        await trio.testing.wait_all_tasks_blocked()
        got = {name: drain(client) for name, client in clients.items()}
    expected = [Invocation("Receive", (kind, arg))]
    assert got == {name: (expected if name in reached else []) for name in "abcd"}


async def test_user_id_comes_from_the_sub_claim(start_server: StartServer) -> None:
    server = await start_server(TargetsHub)
    async with four_clients(server) as clients:
        assert await clients["a"].invoke("Whoami") == ["a", "u1"]
        assert await clients["d"].invoke("Whoami") == ["d", None]
    assert (await server.stats(PATH)).users == 0


async def test_group_membership_follows_join_and_leave(start_server: StartServer) -> None:
    server = await start_server(TargetsHub)
    async with four_clients(server) as clients:
        await clients["a"].invoke("Leave", "g1")
        await clients["a"].invoke("Leave", "g1")  # idempotent
        await clients["d"].invoke("AddOther", "b", "g1")
        await clients["d"].invoke("AddOther", "ghost", "g1")  # unknown id: a no-op
        await clients["d"].invoke("Target", "group", "g1")
        await trio.testing.wait_all_tasks_blocked()
        got = {name: len(drain(client)) for name, client in clients.items()}
        assert got == {"a": 0, "b": 1, "c": 1, "d": 0}
        assert (await server.stats(PATH)).groups == 2


async def test_bad_group_names_and_ids_are_refused_in_the_hub(start_server: StartServer) -> None:
    server = await start_server(TargetsHub)
    async with open_test_client(server, PATH) as client:
        for kind, arg in [("groups", ["g", ""]), ("group", ""), ("clients", "abc")]:
            with pytest.raises(InvocationError) as error:
                await client.invoke("Target", kind, arg)
            assert str(error.value) == (
                "An unexpected error occurred invoking 'Target' on the server."
            )


async def test_a_send_with_an_unserializable_argument_fails_the_sender(
    start_server: StartServer,
) -> None:
    server = await start_server(TargetsHub)
    async with open_test_client(server, PATH) as client:
        with pytest.raises(InvocationError) as error:
            await client.invoke("SendUnserializable")
        # A HubError since hardening: the values usually come from a client.
        assert str(error.value) == (
            "An unexpected error occurred invoking 'SendUnserializable' on the server. "
            "HubException: Cannot send 'Receive': an argument cannot be serialized "
            "(Cannot encode Invocation as JSON: Type is not JSON serializable: object)."
        )
        await trio.testing.wait_all_tasks_blocked()
        assert drain(client) == []


async def test_a_broadcast_reaches_json_and_messagepack_clients_alike(
    start_server: StartServer,
) -> None:
    server = await start_server(TargetsHub)
    async with (
        open_test_client(server, PATH, connection_id="j") as json_client,
        open_test_client(server, PATH, connection_id="m", protocol="messagepack") as msgpack_client,
        open_raw_client(
            server, handshake=b'{"protocol":"messagepack","version":1}\x1e', connection_id="r"
        ) as raw,
    ):
        assert await raw.transport.receive() == HANDSHAKE_OK
        await json_client.invoke("Target", "all", None)
        assert await json_client.next_message() == Invocation("Receive", ("all", None))
        assert await msgpack_client.next_message() == Invocation("Receive", ("all", None))
        # [1, {}, nil, "Receive", ["all", nil], []] with its varint length prefix
        assert await raw.transport.receive() == bytes.fromhex(
            "13 96 01 80 C0 A7 52 65 63 65 69 76 65 92 A3 61 6C 6C C0 90"
        )


# -- hub context ----------------------------------------------------------------------


async def test_hub_context_sends_from_outside_any_hub(start_server: StartServer) -> None:
    server = await start_server(TargetsHub)
    by_class = server.hub_context(TargetsHub)
    by_path = server.hub_context(PATH)
    async with four_clients(server) as clients:
        await by_class.clients.all.send("Notice", 1)
        await by_path.groups.add("d", "g3")
        await by_path.clients.group("g3").send("Notice", 2)
        await by_class.clients.user("u2").send("Notice", 3)
        await by_class.clients.all_except(["a"]).send("Notice", 4)
        await by_path.groups.remove("d", "g3")
        await by_path.clients.group("g3").send("Notice", 5)
        await trio.testing.wait_all_tasks_blocked()
        got = {
            name: [m.arguments[0] for m in drain(client) if isinstance(m, Invocation)]
            for name, client in clients.items()
        }
    assert got == {"a": [1], "b": [1, 4], "c": [1, 3, 4], "d": [1, 2, 4]}


async def test_hub_context_of_an_unmapped_hub() -> None:
    server = HubServer()
    server.map_hub(PATH, TargetsHub)
    with pytest.raises(KeyError):
        server.hub_context("/elsewhere")

    class OtherHub(Hub):
        pass

    with pytest.raises(KeyError):
        server.hub_context(OtherHub)
    server.map_hub("/second", TargetsHub)
    with pytest.raises(ValueError, match="mapped at several paths"):
        server.hub_context(TargetsHub)


async def test_two_servers_in_one_process_do_not_see_each_other(
    start_server: StartServer,
) -> None:
    first = await start_server(TargetsHub)
    second = await start_server(TargetsHub)
    async with (
        # The same connection id and user on both: nothing is shared.
        open_test_client(first, PATH, connection_id="x", principal=user("u1")) as one,
        open_test_client(second, PATH, connection_id="x", principal=user("u1")) as two,
    ):
        await one.invoke("Join", "g")
        await one.invoke("Target", "all", None)
        await first.hub_context(PATH).clients.user("u1").send("Notice", "first")
        await second.hub_context(PATH).clients.group("g").send("Notice", "second")
        await trio.testing.wait_all_tasks_blocked()
        assert drain(one) == [
            Invocation("Receive", ("all", None)),
            Invocation("Notice", ("first",)),
        ]
        assert drain(two) == []
        assert (await first.stats(PATH)).groups == 1
        assert (await second.stats(PATH)).groups == 0


# -- client results -------------------------------------------------------------------


class ResultsHub(Hub):
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    async def on_connected(self) -> None:
        if self.context.principal.has_claim("ask_on_connect"):
            try:
                await self.clients.caller.invoke("GetName")
            except HubError as error:
                self.seen.append(str(error))

    async def ask_caller(self, method: str, argument: Any) -> Any:
        return await self.clients.caller.invoke(method, argument)

    async def ask_client(self, connection_id: str, method: str) -> Any:
        return await self.clients.client(connection_id).invoke(method, "from hub")


@pytest.fixture
def seen() -> list[str]:
    return []


@pytest.fixture
def start_results(start_server: StartServer, seen: list[str]) -> StartServer:
    async def start(**kwargs: Any) -> HubServer:
        return await start_server(ResultsHub, factory=lambda: ResultsHub(seen), **kwargs)

    return start


async def test_a_client_result(start_results: StartServer) -> None:
    server = await start_results()
    async with open_test_client(server, PATH) as client:
        client.handlers["getname"] = lambda n: f"name-{n}"
        assert await client.invoke("AskCaller", "GetName", 5) == "name-5"
        assert await client.invoke("AskCaller", "GETNAME", 6) == "name-6"


async def test_a_client_result_from_another_connection(start_results: StartServer) -> None:
    server = await start_results()
    async with (
        open_test_client(server, PATH, connection_id="asker") as asker,
        open_test_client(server, PATH, connection_id="answerer") as answerer,
    ):
        answerer.handlers["whoareyou"] = lambda text: f"answerer got {text}"
        assert await asker.invoke("AskClient", "answerer", "WhoAreYou") == "answerer got from hub"
        with pytest.raises(InvocationError) as error:
            await asker.invoke("AskClient", "gone", "WhoAreYou")
        assert str(error.value) == (
            "An unexpected error occurred invoking 'AskClient' on the server. "
            "HubException: Connection 'gone' is not connected."
        )


async def test_client_result_invocation_ids_on_the_wire(start_results: StartServer) -> None:
    server = await start_results()
    async with open_raw_client(server) as client:
        assert await client.record() == HANDSHAKE_OK
        for n, answer in [(1, b"true"), (2, b"null")]:
            await client.send(
                b'{"type":1,"invocationId":"%d","target":"AskCaller","arguments":["M",%d]}\x1e'
                % (n, n)
            )
            assert await client.record() == (
                b'{"type":1,"invocationId":"s%d","target":"M","arguments":[%d]}\x1e' % (n, n)
            )
            await client.send(b'{"type":3,"invocationId":"s%d","result":%s}\x1e' % (n, answer))
            assert await client.record() == (
                b'{"type":3,"invocationId":"%d","result":%s}\x1e' % (n, answer)
            )


async def test_a_client_error_reaches_the_hub_method(start_results: StartServer) -> None:
    server = await start_results()

    def refuse(_: Any) -> None:
        raise ValueError("no way")

    async with open_test_client(server, PATH) as client:
        client.handlers["refuse"] = refuse
        with pytest.raises(InvocationError) as error:
            await client.invoke("AskCaller", "Refuse", 1)
        assert str(error.value) == (
            "An unexpected error occurred invoking 'AskCaller' on the server. HubException: no way"
        )
        with pytest.raises(InvocationError) as error:
            await client.invoke("AskCaller", "NoHandler", 1)
        assert str(error.value) == (
            "An unexpected error occurred invoking 'AskCaller' on the server. "
            "HubException: Client didn't provide a result."
        )


async def test_a_client_result_times_out(
    autojump_clock: trio.abc.Clock, start_results: StartServer
) -> None:
    server = await start_results(options=HubOptions(client_result_timeout=2))
    async with open_raw_client(server, connection_id="quiet") as client:
        assert await client.record() == HANDSHAKE_OK
        await client.send(
            b'{"type":1,"invocationId":"0","target":"AskCaller","arguments":["Slow",1]}\x1e'
        )
        assert await client.record() == (
            b'{"type":1,"invocationId":"s1","target":"Slow","arguments":[1]}\x1e'
        )
        asked = trio.current_time()
        assert await client.record() == (
            b'{"type":3,"invocationId":"0","error":"An unexpected error occurred invoking '
            b"'AskCaller' on the server. HubException: Client 'quiet' did not answer 'Slow' "
            b'within 2 s."}\x1e'
        )
        assert trio.current_time() - asked == pytest.approx(2)
        # A late answer is ignored; the connection carries on.
        await client.send(b'{"type":3,"invocationId":"s1","result":1}\x1e')
        await client.send(
            b'{"type":1,"invocationId":"1","target":"AskCaller","arguments":["M",2]}\x1e'
        )
        assert await client.record() == (
            b'{"type":1,"invocationId":"s2","target":"M","arguments":[2]}\x1e'
        )


async def test_client_results_are_refused_inside_on_connected(
    start_results: StartServer, seen: list[str]
) -> None:
    server = await start_results()
    principal = Principal({"ask_on_connect": True}, scheme="Test")
    async with open_test_client(server, PATH, principal=principal) as client:
        client.handlers["getname"] = lambda n: f"name-{n}"
        # Refused in on_connected; allowed from a hub method afterwards.
        assert await client.invoke("AskCaller", "GetName", 1) == "name-1"
    assert seen == ["Client results inside OnConnectedAsync Hub methods are not allowed."]


async def test_a_pending_client_result_fails_when_that_client_goes_away(
    start_results: StartServer,
) -> None:
    server = await start_results()
    async with (
        open_raw_client(server, connection_id="target") as target,
        open_test_client(server, PATH, connection_id="asker") as asker,
    ):
        assert await target.record() == HANDSHAKE_OK
        async with trio.open_nursery() as nursery:
            failure: list[str] = []

            async def ask() -> None:
                with pytest.raises(InvocationError) as error:
                    await asker.invoke("AskClient", "target", "Hang")
                failure.append(str(error.value))

            nursery.start_soon(ask)
            assert await target.record() == (
                b'{"type":1,"invocationId":"s1","target":"Hang","arguments":["from hub"]}\x1e'
            )
            await target.transport.aclose()  # gone without answering
    assert failure == [
        "An unexpected error occurred invoking 'AskClient' on the server. "
        "HubException: Connection 'target' closed (transport closed)."
    ]


async def test_a_completion_for_an_unknown_invocation_is_ignored(
    start_results: StartServer,
) -> None:
    server = await start_results()
    async with open_test_client(server, PATH) as client:
        await client.send_message(Completion.with_result("s99", 1))
        client.handlers["m"] = lambda x: x
        assert await client.invoke("AskCaller", "M", 3) == 3
