"""The backplane's metrics through a Redis outage, on a real redis-server: the
link's state, publish round trips, failures and the publishes dropped past the
outage buffer, read with the OpenTelemetry SDK's in-memory reader."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from tests.observability.test_metrics import Reader, attrs_of
from triohub import HubServer
from triohub.backplane.hub import BackplaneUnavailable
from triohub.backplane.redis import RedisBackplane

from .redis_server import RedisServer
from .support import PATH, PREFIX, ClusterHub

REDIS = attrs_of(triohub__backplane="redis")


@pytest.fixture
def reader() -> Iterator[Reader]:
    made = Reader()
    yield made
    made.provider.shutdown()


def published(reader: Reader) -> int:
    point = reader.value("triohub.backplane.publish.duration", triohub__backplane="redis")
    return 0 if point is None else int(point.count)


async def test_a_redis_outage_in_the_metrics(redis: RedisServer, reader: Reader) -> None:
    link = RedisBackplane(redis.url, buffer_size=3)
    server = HubServer(backplane=link, meter_provider=reader.provider)
    server.map_hub(PATH, ClusterHub, channel_prefix=PREFIX)
    clients = server.hub_context(PATH).clients
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        await link.wait_connected()
        await link.sync()
        assert reader.points("triohub.backplane.connected") == {REDIS: 1}

        await clients.all.send("Got", "up")
        await server.hubs[PATH].router.barrier()
        await link.flush()
        assert published(reader) >= 1  # one round trip per batch

        redis.kill()
        await link.wait_disconnected()
        assert reader.points("triohub.backplane.connected") == {REDIS: 0}
        # Each failed reconnect attempt counts too: at least the loss itself.
        lost = reader.value(
            "triohub.backplane.errors", triohub__backplane="redis", triohub__operation="link"
        )
        assert lost >= 1
        with pytest.raises(BackplaneUnavailable):
            await link.publish(f"{PREFIX}:all", b"x")
        assert (
            reader.value(
                "triohub.backplane.errors",
                triohub__backplane="redis",
                triohub__operation="request",
            )
            == 1
        )
        before = published(reader)
        for n in range(6):  # three more than the outage buffer holds
            await clients.all.send("Got", f"m{n}")
        await server.hubs[PATH].router.barrier()
        assert link.dropped == 3
        assert reader.points("triohub.backplane.dropped") == {
            attrs_of(triohub__backplane="redis", triohub__reason="buffer_full"): 3
        }

        redis.start()
        await link.wait_connected()
        await link.flush()
        assert reader.points("triohub.backplane.connected") == {REDIS: 1}
        assert published(reader) > before  # what was held went out after the outage
        nursery.cancel_scope.cancel()
