"""The lines a developer reads: one INFO line when a connection opens and one
when it closes (who, which transport, how long, why; never a credential), one
INFO line for a call that could not be bound (the client still gets only the
reference's answer), audit lines naming the user by the same user id at hub
and method level, and an abort that tells the client why."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from hub_support import PATH

from triohub import (
    ANONYMOUS,
    AuditRecord,
    Hub,
    HubOptions,
    HubServer,
    Principal,
    RequestInfo,
    authorize,
    email_user_id,
)
from triohub.protocol import Close
from triohub.testing import InvocationError, open_test_client

TOKEN = "eyJ.secret-token.sig"


class CountingHub(Hub):
    async def add(self, a: int, b: int) -> int:
        return a + b

    @authorize(roles=["Administrators"])
    async def kick(self, user_id: str) -> None:
        await self.clients.user(user_id).abort(f"You were removed by {self.context.user_id}.")


@authorize()
class LockedHub(Hub):
    async def hello(self) -> str:
        return "hello"


@authorize(roles=["Administrators"])
class AdminsHub(Hub):
    async def hello(self) -> str:
        return "hello"


def alice(*roles: str) -> Principal:
    claims: dict[str, Any] = {"sub": "alice", "email": "alice@contoso.example", "token": TOKEN}
    if roles:
        claims["role"] = list(roles)
    return Principal(claims, scheme="Bearer")


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger]


async def serve(nursery: trio.Nursery, hub: type[Hub], **options: Any) -> HubServer:
    server = HubServer()
    server.map_hub(
        PATH,
        hub,
        user_id_provider=email_user_id,
        options=HubOptions(**options) if options else None,
    )
    await nursery.start(server.run)
    return server


async def test_one_line_when_a_connection_opens_and_one_when_it_closes(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    caplog.set_level(logging.INFO)
    server = await serve(nursery, CountingHub)
    async with open_test_client(server, PATH, principal=alice(), connection_id="c-1") as client:
        await trio.sleep(2.5)
        assert await client.invoke("Add", 1, 2) == 3
        await client.close()
        await client.closed.wait()
    assert messages(caplog, "triohub.connection") == [
        (
            logging.INFO,
            "connection c-1 opened: hub=CountingHub user=alice@contoso.example "
            "transport=memory protocol=json",
        ),
        (
            logging.INFO,
            "connection c-1 closed: hub=CountingHub user=alice@contoso.example "
            "transport=memory after 2.5 s, client closed",
        ),
    ]
    assert TOKEN not in caplog.text


async def test_an_abort_with_an_error_tells_the_client_and_the_log(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = await serve(nursery, CountingHub)
    async with (
        open_test_client(
            server, PATH, principal=alice("Administrators"), connection_id="c-a"
        ) as admin,
        open_test_client(
            server,
            PATH,
            principal=Principal({"sub": "bob", "email": "bob@contoso.example"}, scheme="Bearer"),
            connection_id="c-b",
        ) as bob,
    ):
        await admin.invoke("Kick", "bob@contoso.example")
        await bob.closed.wait()
        assert bob.close_message == Close(error="You were removed by alice@contoso.example.")
        assert await admin.invoke("Add", 2, 2) == 4  # only bob's connections closed
    closed = [m for _, m in messages(caplog, "triohub.connection") if "c-b closed" in m]
    assert closed == [
        "connection c-b closed: hub=CountingHub user=bob@contoso.example transport=memory "
        "after 0.0 s, aborted by the server (You were removed by alice@contoso.example.)"
    ]


@pytest.mark.parametrize("detailed", [False, True])
async def test_a_call_that_cannot_be_bound_keeps_the_reference_answer_and_logs_why(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, detailed: bool
) -> None:
    caplog.set_level(logging.INFO)
    server = await serve(nursery, CountingHub, enable_detailed_errors=detailed)
    async with open_test_client(server, PATH, connection_id="c-1") as client:
        with pytest.raises(InvocationError) as count:
            await client.invoke("Add", 1)
        with pytest.raises(InvocationError) as types:
            await client.invoke("Add", 1, "two")
    base = "Failed to invoke 'Add' due to an error on the server."
    if detailed:
        assert str(count.value) == (
            f"{base} InvalidDataException: Invocation provides 1 argument(s) but target expects 2."
        )
        assert str(types.value).startswith(f"{base} InvalidDataException: Error binding arguments.")
    else:
        assert str(count.value) == str(types.value) == base
    lines = [
        (level, text) for level, text in messages(caplog, "triohub.hub") if "not invoked" in text
    ]
    assert lines[0] == (
        logging.INFO,
        "connection c-1: Add not invoked: Invocation provides 1 argument(s) but target expects 2.",
    )
    level, text = lines[1]
    assert level == logging.INFO
    assert text.startswith("connection c-1: Add not invoked: Error binding arguments.")
    assert text.endswith("(argument 2: expected an integer, got str)")
    assert len(lines) == 2


def negotiate() -> RequestInfo:
    return RequestInfo("POST", f"{PATH}/negotiate", hub_path=PATH)


async def test_audit_lines_name_the_user_by_its_user_id_at_hub_and_method_level(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="triohub.audit")
    records: list[AuditRecord] = []
    server = HubServer(audit_hook=records.append)
    server.map_hub(PATH, LockedHub, user_id_provider=email_user_id)
    server.map_hub("/open", CountingHub, user_id_provider=email_user_id)
    await nursery.start(server.run)
    assert await server.authorize_hub(server.hubs[PATH], alice(), negotiate())
    async with open_test_client(server, "/open", principal=alice(), connection_id="c-1") as client:
        with pytest.raises(InvocationError):
            await client.invoke("Kick", "bob@contoso.example")
    assert [(r.method, r.outcome, r.user_id) for r in records] == [
        (None, "allowed", "alice@contoso.example"),
        ("Kick", "denied", "alice@contoso.example"),
    ]
    assert TOKEN not in caplog.text


async def test_anonymous_requests_refused_by_a_hub_policy_are_info(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A browser asks before it signs in: expected, not a warning. An
    authenticated user refused is still a WARNING."""
    caplog.set_level(logging.INFO)
    server = HubServer()
    server.map_hub(PATH, AdminsHub)
    await nursery.start(server.run)
    assert not await server.authorize_hub(server.hubs[PATH], ANONYMOUS, negotiate())
    assert [level for level, _ in messages(caplog, "triohub.audit")] == [logging.INFO]
    assert not await server.authorize_hub(server.hubs[PATH], alice(), negotiate())
    assert [level for level, _ in messages(caplog, "triohub.audit")] == [
        logging.INFO,
        logging.WARNING,
    ]
