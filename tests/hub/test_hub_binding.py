"""Hub method binding: which names reach which method, and which hubs are refused
at ``map_hub`` (``signalr-protocol.md`` section 4.3: case-insensitive targets,
no overloads, exact argument count)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hub_support import PATH, StartServer

from triohub import BindingError, ClientStream, Hub, HubServer, hub_method, not_hub_method
from triohub.testing import InvocationError, open_test_client


class NamesHub(Hub):
    async def do_thing(self, x: int) -> int:
        return x * 2

    @hub_method("Send")
    async def send_message(self, text: str) -> str:
        return f"sent {text}"

    async def _private(self) -> str:
        return "private"

    @not_hub_method
    async def helper(self) -> str:
        return "helper"

    @staticmethod
    async def static() -> str:
        return "static"

    @property
    def prop(self) -> str:
        return "prop"

    def _sync_private(self) -> None:
        """Sync methods are fine when they are private."""


class DerivedHub(NamesHub):
    async def extra(self) -> str:
        return "extra"


def not_found(target: str) -> str:
    return (
        f"Failed to invoke '{target}' due to an error on the server. "
        "HubException: Method does not exist."
    )


@pytest.mark.parametrize(
    "target", ["DoThing", "doThing", "do_thing", "DOTHING", "dothing", "Do_Thing"]
)
async def test_snake_case_is_reachable_as_pascal_camel_and_snake_case_insensitively(
    start_server: StartServer, target: str
) -> None:
    server = await start_server(NamesHub)
    async with open_test_client(server, PATH) as client:
        assert await client.invoke(target, 21) == 42


@pytest.mark.parametrize("target", ["Send", "send", "SEND"])
async def test_an_explicit_name_replaces_the_derived_ones(
    start_server: StartServer, target: str
) -> None:
    server = await start_server(NamesHub)
    async with open_test_client(server, PATH) as client:
        assert await client.invoke(target, "hi") == "sent hi"


@pytest.mark.parametrize(
    "target",
    [
        "SendMessage",
        "send_message",
        "_private",
        "Private",
        "helper",
        "Helper",
        "static",
        "prop",
        "OnConnected",
        "on_connected",
        "OnDisconnected",
        "Nope",
    ],
)
async def test_names_that_are_not_hub_methods(start_server: StartServer, target: str) -> None:
    server = await start_server(NamesHub)
    async with open_test_client(server, PATH) as client:
        with pytest.raises(InvocationError) as error:
            await client.invoke(target)
        assert str(error.value) == not_found(target)


async def test_inherited_methods_are_bound(start_server: StartServer) -> None:
    server = await start_server(DerivedHub)
    async with open_test_client(server, PATH) as client:
        assert await client.invoke("Extra") == "extra"
        assert await client.invoke("DoThing", 1) == 2
        assert await client.invoke("send", "x") == "sent x"


def map_hub(hub_class: type[Hub]) -> None:
    HubServer().map_hub(PATH, hub_class)


def test_a_name_clash_is_refused_at_map_hub() -> None:
    class ClashHub(Hub):
        async def do_it(self) -> None: ...

        @hub_method("DoIt")
        async def other(self) -> None: ...

    with pytest.raises(
        BindingError,
        match=r"^ClashHub: hub methods 'do_it' and 'other' both answer to 'DoIt'; "
        r"give one an explicit @hub_method\(name\)$",
    ):
        map_hub(ClashHub)


def test_derived_names_clash_too() -> None:
    class CaseClashHub(Hub):
        async def foo_bar(self) -> None: ...

        async def fooBar(self) -> None: ...

    with pytest.raises(BindingError, match="both answer to 'FooBar'"):
        map_hub(CaseClashHub)


def test_a_non_async_method_is_refused() -> None:
    class SyncHub(Hub):
        def compute(self) -> int:
            return 1

    with pytest.raises(
        BindingError, match=r"^SyncHub\.compute must be 'async def' \(hub methods run on"
    ):
        map_hub(SyncHub)


def test_a_keyword_only_parameter_is_refused() -> None:
    class KeywordHub(Hub):
        async def call(self, a: int, *, b: int) -> None: ...

    with pytest.raises(
        BindingError,
        match=r"^KeywordHub\.call: parameter 'b' must be positional \(SignalR passes arguments",
    ):
        map_hub(KeywordHub)


@pytest.mark.parametrize("kind", ["args", "kwargs"])
def test_variadic_parameters_are_refused(kind: str) -> None:
    class VariadicHub(Hub):
        if kind == "args":

            async def call(self, *items: Any) -> None: ...
        else:

            async def call(self, **items: Any) -> None: ...

    with pytest.raises(BindingError, match=r"parameter 'items' must be positional"):
        map_hub(VariadicHub)


def test_a_default_value_is_refused() -> None:
    class DefaultHub(Hub):
        async def call(self, a: int, b: int = 2) -> None: ...

    with pytest.raises(
        BindingError,
        match=r"^DefaultHub\.call: parameter 'b' has a default, but SignalR requires the "
        r"exact argument count; remove the default$",
    ):
        map_hub(DefaultHub)


def test_a_refused_hub_is_not_mapped() -> None:
    class SyncHub(Hub):
        def compute(self) -> None: ...

    server = HubServer()
    with pytest.raises(BindingError):
        server.map_hub(PATH, SyncHub)
    assert PATH not in server.hubs
    server.map_hub(PATH, NamesHub)  # the path is still free
    assert server.hubs[PATH].hub_class is NamesHub


def test_hub_method_needs_a_name() -> None:
    with pytest.raises(BindingError, match=r"^hub_method\(\) needs a non-empty name, got ''$"):
        hub_method("")


def test_stream_parameters_and_kinds_are_read_at_registration() -> None:
    class KindsHub(Hub):
        async def plain(self, a: int, upload: ClientStream[int], b: str) -> None: ...

        async def stream(self, n: int) -> AsyncIterator[int]:
            yield n

    methods = HubServer().map_hub(PATH, KindsHub).methods
    plain, stream = methods["plain"], methods["stream"]
    assert (plain.wire_name, plain.kind.value, plain.argument_count) == ("Plain", "plain", 2)
    assert plain.stream_positions == (1,)
    assert (stream.wire_name, stream.kind.value, stream.stream_positions) == (
        "Stream",
        "stream",
        (),
    )
