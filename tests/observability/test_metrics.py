"""The server's metrics, read with the OpenTelemetry SDK's in-memory reader after
scripted sessions: exact values, ASP.NET's names and attributes where it has them.

Each test gives its ``HubServer`` its own ``MeterProvider`` (the global one can
be set only once per process).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from triohub import (
    AuthorizationPolicy,
    Hub,
    HubOptions,
    HubServer,
    JwtBearerAuthenticator,
    JwtBearerOptions,
    PolicyRegistry,
    Principal,
    authorize,
)
from triohub.hub.credentials import RefreshRefused
from triohub.protocol import Invocation, Ping
from triohub.testing import HubTestClient, mint_token, open_test_client
from triohub.transports.asgi import SignalRApp
from triohub.transports.memory import memory_transport_pair

PATH = "/hub"
EPOCH = 1_900_000_000.0


class Reader:
    """The SDK's in-memory reader, with the points flattened for exact asserts."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def points(self, name: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """``{attributes: value}`` of one metric (a histogram's value is its point)."""
        data = self.reader.get_metrics_data()
        found: dict[frozenset[tuple[str, Any]], Any] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        key = frozenset(point.attributes.items())
                        found[key] = getattr(point, "value", point)
        return found

    def value(self, name: str, **attributes: str) -> Any:
        """One point's value; attribute names spell ``.`` as ``__``."""
        return self.points(name).get(attrs_of(**attributes))


def attrs_of(**attributes: str) -> frozenset[tuple[str, str]]:
    return frozenset((key.replace("__", "."), value) for key, value in attributes.items())


@pytest.fixture
def reader() -> Iterator[Reader]:
    made = Reader()
    yield made
    made.provider.shutdown()


class Chat(Hub):
    async def echo(self, text: str) -> str:
        return text

    async def fail(self) -> None:
        raise ValueError("no")

    @authorize("Admins")
    async def ban(self, user: str) -> str:
        return user

    async def wait(self) -> None:
        await trio.sleep_forever()


def policies() -> PolicyRegistry:
    registry = PolicyRegistry()
    registry.add_policy("Admins", AuthorizationPolicy.build(roles="admin"))
    return registry


@asynccontextmanager
async def connect_as(
    server: HubServer, transport: str, connection_id: str, principal: Principal | None = None
) -> AsyncIterator[HubTestClient]:
    """A test client whose server-side transport carries ``transport``'s name
    (what the real transports set), so the per-transport attributes show."""
    registration = server.hubs[PATH]
    server_side, client_side = memory_transport_pair(64)
    server_side.name = transport  # type: ignore[misc]
    client = HubTestClient(client_side, "json", server.protocols)
    async with trio.open_nursery() as nursery:
        kwargs: dict[str, Any] = {"connection_id": connection_id}
        if principal is not None:
            kwargs["principal"] = principal
        nursery.start_soon(lambda: server.connect(registration, server_side, **kwargs))
        await client.send_raw(b'{"protocol":"json","version":1}\x1e')
        assert await client_side.receive() == b"{}\x1e"
        nursery.start_soon(client._read)
        try:
            yield client
        finally:
            await client_side.aclose()


async def start(nursery: trio.Nursery, reader: Reader, **kwargs: Any) -> HubServer:
    server = HubServer(meter_provider=reader.provider, policies=policies(), **kwargs)
    server.map_hub(PATH, Chat)
    await nursery.start(server.run)
    return server


ACTIVE = "signalr.server.active_connections"
DURATION = "signalr.server.connection.duration"


async def test_connections_are_counted_per_transport_up_and_down(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery, reader: Reader
) -> None:
    server = await start(nursery, reader)
    assert reader.points(ACTIVE) == {}
    async with connect_as(server, "WebSockets", "ws1"), connect_as(server, "WebSockets", "ws2"):
        async with connect_as(server, "LongPolling", "lp"):
            await trio.sleep(3)
            async with connect_as(server, "ServerSentEvents", "sse"):
                await trio.testing.wait_all_tasks_blocked()
                assert reader.points(ACTIVE) == {
                    attrs_of(signalr__transport="web_sockets"): 2,
                    attrs_of(signalr__transport="long_polling"): 1,
                    attrs_of(signalr__transport="server_sent_events"): 1,
                }
        await trio.testing.wait_all_tasks_blocked()
        assert reader.points(ACTIVE) == {
            attrs_of(signalr__transport="web_sockets"): 2,
            attrs_of(signalr__transport="long_polling"): 0,
            attrs_of(signalr__transport="server_sent_events"): 0,
        }
    await server.wait_idle()
    assert set(reader.points(ACTIVE).values()) == {0}
    durations = reader.points(DURATION)
    # The client went away (transport closed): ASP.NET's normal_closure.
    lp = durations[
        attrs_of(signalr__transport="long_polling", signalr__connection__status="normal_closure")
    ]
    assert (lp.count, lp.sum) == (1, 3.0)
    ws = durations[
        attrs_of(signalr__transport="web_sockets", signalr__connection__status="normal_closure")
    ]
    assert ws.count == 2
    assert reader.value("triohub.connection.closes", triohub__close_reason="transport_closed") == 4


async def test_a_shutdown_is_app_shutdown(nursery: trio.Nursery, reader: Reader) -> None:
    server = await start(nursery, reader)
    async with connect_as(server, "WebSockets", "ws"):
        server.stop()
        await server.wait_stopped()
    point = reader.points(DURATION)[
        attrs_of(signalr__transport="web_sockets", signalr__connection__status="app_shutdown")
    ]
    assert point.count == 1
    assert reader.value("triohub.connection.closes", triohub__close_reason="shutdown") == 1


async def test_invocations_are_counted_by_method_and_outcome_and_denials_by_policy(
    nursery: trio.Nursery, reader: Reader
) -> None:
    server = await start(nursery, reader)
    bob = Principal({"sub": "bob"}, scheme="Bearer")
    admin = Principal({"sub": "ann", "role": "admin"}, scheme="Bearer")
    async with connect_as(server, "WebSockets", "b", bob) as client:
        assert await client.invoke("Echo", "hi") == "hi"
        assert await client.invoke("Echo", "again") == "again"
        with pytest.raises(Exception, match="An unexpected error occurred invoking 'Fail'"):
            await client.invoke("Fail")
        with pytest.raises(Exception, match="Failed to invoke 'Ban' because user is unauthorized"):
            await client.invoke("Ban", "mallory")
    async with connect_as(server, "WebSockets", "a", admin) as client:
        assert await client.invoke("Ban", "mallory") == "mallory"

    def invocations(method: str, outcome: str) -> Any:
        return reader.value(
            "triohub.invocations",
            triohub__hub="Chat",
            triohub__method=method,
            triohub__outcome=outcome,
        )

    assert invocations("Echo", "ok") == 2
    assert invocations("Fail", "error") == 1
    assert invocations("Ban", "denied") == 1
    assert invocations("Ban", "ok") == 1
    decisions = reader.points("triohub.authorization.decisions")
    assert decisions == {
        attrs_of(
            triohub__hub="Chat",
            triohub__method="Ban",
            triohub__policy="Admins",
            triohub__outcome="denied",
        ): 1,
        attrs_of(
            triohub__hub="Chat",
            triohub__method="Ban",
            triohub__policy="Admins",
            triohub__outcome="allowed",
        ): 1,
    }


async def test_an_expiry_close_is_counted(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery, reader: Reader
) -> None:
    server = HubServer(
        meter_provider=reader.provider,
        policies=policies(),
        clock=lambda: EPOCH + trio.current_time(),
        options=HubOptions(close_on_authentication_expiration=True),
    )
    server.map_hub(PATH, Chat)
    await nursery.start(server.run)
    expiring = Principal(
        {"sub": "eve"}, scheme="Bearer", expires_at=EPOCH + trio.current_time() + 60
    )
    async with connect_as(server, "WebSockets", "e", expiring) as client:
        async for _ in client.inbox:
            pass  # until the server closes it at the deadline
    await server.wait_idle()
    assert reader.value("triohub.connection.closes", triohub__close_reason="expired") == 1
    point = reader.points(DURATION)[
        attrs_of(signalr__transport="web_sockets", signalr__connection__status="normal_closure")
    ]
    assert (point.count, point.sum) == (1, 60.0)
    assert reader.points(ACTIVE) == {attrs_of(signalr__transport="web_sockets"): 0}


async def test_a_slow_consumer_is_counted_and_outbox_depth_reported(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery, reader: Reader
) -> None:
    server = await start(nursery, reader, options=HubOptions(outbox_size=8))
    everyone = server.hub_context(PATH).clients.all
    async with open_test_client(server, PATH, connection_id="slow", buffer=1) as slow:
        # Nothing queued yet.
        assert reader.points("triohub.outbox.depth") == {
            attrs_of(triohub__aggregation="sum"): 0,
            attrs_of(triohub__aggregation="max"): 0,
        }
        sent = 0
        deepest = queued = 0
        while (await server.stats(PATH)).slow_consumers == 0:
            assert sent < 5_000, "the slow client was never closed"
            await everyone.send("Receive", sent)
            sent += 1
            await trio.testing.wait_all_tasks_blocked()
            depth = reader.points("triohub.outbox.depth")
            deepest = max(deepest, depth[attrs_of(triohub__aggregation="max")])
            size = reader.points("triohub.outbox.queued_bytes")
            queued = max(queued, size[attrs_of(triohub__aggregation="sum")])
        # Just before the close the outbox held all it could (outbox_size=8).
        assert deepest == 8
        assert queued > 0
        messages = [m async for m in slow.inbox if not isinstance(m, Ping | Invocation)]
        assert messages  # the error close
    await server.wait_idle()
    assert reader.value("triohub.connection.closes", triohub__close_reason="slow_consumer") == 1
    assert reader.points("triohub.outbox.depth") == {
        attrs_of(triohub__aggregation="sum"): 0,
        attrs_of(triohub__aggregation="max"): 0,
    }


def test_backplane_and_authentication_instruments(reader: Reader) -> None:
    server = HubServer(meter_provider=reader.provider)
    metrics = server.telemetry.metrics
    metrics.backplane_connection(True)
    metrics.backplane_published(0.002)
    metrics.backplane_published(0.004)
    assert reader.value("triohub.backplane.connected", triohub__backplane="redis") == 1
    metrics.backplane_connection(False)
    metrics.backplane_failed("publish")
    metrics.backplane_dropped_messages(3, "disconnected")
    metrics.authentication_failed("expired")
    metrics.authentication_failed("expired")
    assert reader.value("triohub.backplane.connected", triohub__backplane="redis") == 0
    publish = reader.value("triohub.backplane.publish.duration", triohub__backplane="redis")
    assert publish.count == 2
    assert (
        reader.value(
            "triohub.backplane.errors", triohub__backplane="redis", triohub__operation="publish"
        )
        == 1
    )
    assert (
        reader.value(
            "triohub.backplane.dropped", triohub__backplane="redis", triohub__reason="disconnected"
        )
        == 3
    )
    assert reader.value("triohub.authentication.failures", triohub__reason="expired") == 2


async def test_authentication_failures_are_counted_by_reason_never_the_credential(
    nursery: trio.Nursery, reader: Reader
) -> None:
    key = "k" * 32
    server = HubServer(
        meter_provider=reader.provider,
        policies=policies(),
        authenticator=JwtBearerAuthenticator(
            JwtBearerOptions(algorithms=("HS256",), key=key, issuer="i", audience="a")
        ),
    )
    server.map_hub(PATH, Chat)
    await nursery.start(server.run)
    expired = mint_token(key, subject="bob", issuer="i", audience="a", lifetime=-60)
    forged = mint_token("f" * 32, subject="bob", issuer="i", audience="a")
    good = mint_token(key, subject="bob", issuer="i", audience="a")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=SignalRApp(server)), base_url="http://test"
    ) as client:
        # Chat allows anonymous callers: a bad credential is only counted (and logged).
        for token in [expired, forged, forged, good]:
            response = await client.post(
                f"{PATH}/negotiate?negotiateVersion=1",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200
    assert reader.points("triohub.authentication.failures") == {
        attrs_of(triohub__reason="expired"): 1,
        attrs_of(triohub__reason="invalid_signature"): 2,
    }
    everything = repr(reader.reader.get_metrics_data())
    assert expired not in everything
    assert forged not in everything


@authorize("Admins")
class Guarded(Hub):
    async def echo(self, text: str) -> str:
        return text


async def test_hub_level_decisions_are_counted_under_connect(
    nursery: trio.Nursery, reader: Reader
) -> None:
    key = "k" * 32
    server = HubServer(
        meter_provider=reader.provider,
        policies=policies(),
        authenticator=JwtBearerAuthenticator(
            JwtBearerOptions(algorithms=("HS256",), key=key, issuer="i", audience="a")
        ),
    )
    server.map_hub(PATH, Guarded)
    await nursery.start(server.run)
    admin = mint_token(key, subject="ann", issuer="i", audience="a", roles=["admin"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=SignalRApp(server)), base_url="http://test"
    ) as client:
        negotiate = f"{PATH}/negotiate?negotiateVersion=1"
        assert (await client.post(negotiate)).status_code == 401
        response = await client.post(negotiate, headers={"Authorization": f"Bearer {admin}"})
        assert response.status_code == 200
    assert reader.points("triohub.authorization.decisions") == {
        attrs_of(
            triohub__hub="Guarded",
            triohub__method="<connect>",
            triohub__policy="Admins",
            triohub__outcome=outcome,
        ): 1
        for outcome in ("allowed", "denied")
    }


async def test_refreshes_and_revocations_are_counted(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery, reader: Reader
) -> None:
    def wall_clock() -> float:
        return EPOCH + trio.current_time()

    server = HubServer(meter_provider=reader.provider, policies=policies(), clock=wall_clock)
    server.map_hub(PATH, Chat, options=HubOptions(allow_authentication_refresh=True))
    await nursery.start(server.run)

    def alice(n: int) -> Principal:
        return Principal({"sub": "alice", "n": n}, scheme="Bearer", expires_at=wall_clock() + 60)

    async with open_test_client(server, PATH, principal=alice(1), connection_id="c-1") as client:
        assert await client.invoke("Echo", "hi") == "hi"
        await server.refresh_authentication("c-1", alice(2))
        other = Principal({"sub": "bob"}, scheme="Bearer", expires_at=wall_clock() + 60)
        with pytest.raises(RefreshRefused):
            await server.refresh_authentication("c-1", other)
        with pytest.raises(RefreshRefused):
            await server.refresh_authentication("nobody", alice(3))
        await server.revoke(token_id="t-1")
        await server.revoke(user="alice")
        await client.closed.wait()
    refreshes = "triohub.authentication.refreshes"
    assert reader.value(refreshes, triohub__outcome="ok") == 1
    assert reader.value(refreshes, triohub__outcome="forbidden") == 1
    assert reader.value(refreshes, triohub__outcome="connection_not_found") == 1
    revocations = "triohub.authentication.revocations"
    assert reader.value(revocations, triohub__kind="token") == 1
    assert reader.value(revocations, triohub__kind="user") == 1
    assert reader.value(revocations, triohub__kind="issued_before") is None
