"""The router actor on its own: registry, users, groups, audiences, fan-out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from triohub.actors.kit import ActorStopped
from triohub.actors.router import Router
from triohub.actors.routing import Audience, ConnectionEntry, JoinResult, RouterStats
from triohub.actors.supervisor import CloseReason


class Conn:
    """One registered connection: its outbox and what the router asked of it."""

    def __init__(
        self, connection_id: str, *, protocol: str = "json", user: str | None = None, size: int = 16
    ) -> None:
        self.id = connection_id
        send, self.outbox = trio.open_memory_channel[bytes](size)
        self.closes: list[CloseReason] = []
        self.details: list[str] = []
        self.entry = ConnectionEntry(
            connection_id=connection_id,
            protocol=protocol,
            outbox=send,
            close=self.close,
            user_id=user,
            handle=f"handle-{connection_id}",
        )

    def close(self, reason: CloseReason, detail: str) -> None:
        self.closes.append(reason)
        self.details.append(detail)

    def received(self) -> list[bytes]:
        found = []
        while True:
            try:
                found.append(self.outbox.receive_nowait())
            except trio.WouldBlock:
                return found


class CountingPayload:
    """Encodes to ``b"<key>:<text>"`` and counts how often each key was encoded."""

    def __init__(self, text: str = "hello") -> None:
        self.text = text
        self.calls: Counter[str] = Counter()

    def encode(self, key: str) -> bytes:
        self.calls[key] += 1
        return f"{key}:{self.text}".encode()


@pytest.fixture
async def router(nursery: trio.Nursery) -> Router:
    router = Router()
    await nursery.start(router.run)
    return router


async def register(router: Router, *conns: Conn) -> None:
    for conn in conns:
        await router.register(conn.entry)


async def test_register_and_unregister(router: Router) -> None:
    a, b = Conn("a", user="u1"), Conn("b")
    await register(router, a, b)
    assert await router.stats() == RouterStats(connections=2, users=1, groups=0, slow_consumers=0)
    assert await router.lookup("a") == "handle-a"
    assert await router.lookup("nope") is None

    await router.unregister("a")
    await router.unregister("a")  # twice: a no-op
    await router.unregister("never-registered")
    assert await router.lookup("a") is None
    assert await router.stats() == RouterStats(connections=1, users=0, groups=0, slow_consumers=0)

    router.unregister_nowait("b")
    assert await router.stats() == RouterStats(connections=0, users=0, groups=0, slow_consumers=0)


async def test_a_duplicate_connection_id_is_refused_and_the_first_kept(router: Router) -> None:
    first, second = Conn("same"), Conn("same")
    await register(router, first, second)
    assert (await router.stats()).connections == 1
    assert second.closes == [CloseReason.INTERNAL_ERROR]
    assert first.closes == []
    await router.send(Audience(everyone=True), CountingPayload())
    await router.stats()
    assert first.received() == [b"json:hello"]
    assert second.received() == []


async def test_a_user_with_several_connections(router: Router) -> None:
    a, b, c = Conn("a", user="u1"), Conn("b", user="u1"), Conn("c", user="u2")
    await register(router, a, b, c)
    assert (await router.stats()).users == 2

    await router.send(Audience(users=frozenset({"u1"})), CountingPayload())
    await router.stats()
    assert [a.received(), b.received(), c.received()] == [[b"json:hello"], [b"json:hello"], []]

    await router.unregister("a")
    await router.send(Audience(users=frozenset({"u1"})), CountingPayload("again"))
    assert (await router.stats()).users == 2  # u1 still has b
    assert [a.received(), b.received()] == [[], [b"json:again"]]

    await router.unregister("b")
    assert (await router.stats()).users == 1


async def test_group_add_and_remove_are_idempotent(router: Router) -> None:
    a, b = Conn("a"), Conn("b")
    await register(router, a, b)
    await router.add_to_group("a", "g")
    await router.add_to_group("a", "g")
    await router.send(Audience(groups=frozenset({"g"})), CountingPayload())
    assert await router.stats() == RouterStats(connections=2, users=0, groups=1, slow_consumers=0)
    assert a.received() == [b"json:hello"]  # once, although added twice
    assert b.received() == []

    await router.remove_from_group("b", "g")  # not a member: nothing happens
    await router.remove_from_group("a", "other")  # no such group
    assert (await router.stats()).groups == 1
    await router.remove_from_group("a", "g")
    await router.remove_from_group("a", "g")
    await router.send(Audience(groups=frozenset({"g"})), CountingPayload())
    assert (await router.stats()).groups == 0
    assert a.received() == []


async def test_groups_are_dropped_on_unregister(router: Router) -> None:
    a, b = Conn("a"), Conn("b")
    await register(router, a, b)
    for group in ("g1", "g2"):
        await router.add_to_group("a", group)
    await router.add_to_group("b", "g1")
    assert (await router.stats()).groups == 2

    await router.unregister("a")
    assert (await router.stats()).groups == 1  # g2 is gone, g1 keeps b
    await router.unregister("b")
    assert (await router.stats()).groups == 0

    # The same id registered again starts with no groups.
    again = Conn("a")
    await register(router, again)
    await router.send(Audience(groups=frozenset({"g1", "g2"})), CountingPayload())
    await router.stats()
    assert again.received() == []


async def test_adding_an_unknown_connection_to_a_group_is_a_no_op(router: Router) -> None:
    await router.add_to_group("ghost", "g")
    await router.remove_from_group("ghost", "g")
    assert (await router.stats()).groups == 0
    ghost = Conn("ghost")
    await register(router, ghost)
    await router.send(Audience(groups=frozenset({"g"})), CountingPayload())
    await router.stats()
    assert ghost.received() == []


async def test_a_join_then_a_send_from_the_same_task_sees_the_join(router: Router) -> None:
    # No barrier in between: mailbox order alone guarantees it.
    a = Conn("a")
    await router.register(a.entry)
    await router.add_to_group("a", "g")
    await router.send(Audience(groups=frozenset({"g"})), CountingPayload())
    await router.unregister("a")
    await router.send(Audience(everyone=True), CountingPayload("late"))
    await router.stats()
    assert a.received() == [b"json:hello"]


def ids(*values: str) -> frozenset[str]:
    return frozenset(values)


AUDIENCES: list[tuple[str, Audience, str]] = [
    ("everyone", Audience(everyone=True), "abcd"),
    ("all_except", Audience(everyone=True, exclude=ids("a", "c")), "bd"),
    ("all_except unknown", Audience(everyone=True, exclude=ids("zz")), "abcd"),
    ("connections", Audience(connections=ids("b", "zz")), "b"),
    ("user", Audience(users=ids("u1")), "ab"),
    ("users", Audience(users=ids("u1", "u2")), "abc"),
    ("user ids are case-sensitive", Audience(users=ids("U1")), ""),
    ("unknown user", Audience(users=ids("nobody")), ""),
    ("group", Audience(groups=ids("g1")), "ac"),
    ("groups", Audience(groups=ids("g1", "g2")), "abc"),
    ("group_except", Audience(groups=ids("g1"), exclude=ids("a")), "c"),
    ("unknown group", Audience(groups=ids("nope")), ""),
    ("users minus exclude", Audience(users=ids("u1"), exclude=ids("b")), "a"),
    (
        "union of connections, users, groups",
        Audience(connections=ids("d"), users=ids("u2"), groups=ids("g2")),
        "bcd",
    ),
    (
        "a connection reached twice gets one copy",
        Audience(users=ids("u1"), groups=ids("g1")),
        "abc",
    ),
    ("everyone wins over narrower sets", Audience(everyone=True, groups=ids("g2")), "abcd"),
    ("nobody", Audience(), ""),
]


@pytest.mark.parametrize(
    ("audience", "expected"), [c[1:] for c in AUDIENCES], ids=[c[0] for c in AUDIENCES]
)
async def test_audience(router: Router, audience: Audience, expected: str) -> None:
    conns = {
        "a": Conn("a", user="u1"),
        "b": Conn("b", user="u1"),
        "c": Conn("c", user="u2"),
        "d": Conn("d"),
    }
    await register(router, *conns.values())
    await router.add_to_group("a", "g1")
    await router.add_to_group("c", "g1")
    await router.add_to_group("b", "g2")

    await router.send(audience, CountingPayload())
    await router.stats()
    reached = {name: conn.received() for name, conn in conns.items()}
    assert reached == {name: ([b"json:hello"] if name in expected else []) for name in conns}


async def test_a_broadcast_is_encoded_once_per_protocol_key(router: Router) -> None:
    conns = [Conn(f"c{i}", protocol="json" if i % 2 else "messagepack") for i in range(200)]
    await register(router, *conns)
    for conn in conns[:10]:
        await router.add_to_group(conn.id, "g")

    everyone = CountingPayload()
    await router.send(Audience(everyone=True), everyone)
    await router.stats()
    assert everyone.calls == {"json": 1, "messagepack": 1}
    for conn in conns:
        assert conn.received() == [f"{conn.entry.protocol}:hello".encode()]

    json_only = CountingPayload()
    await router.send(Audience(connections=ids("c1", "c3", "c5")), json_only)
    nobody = CountingPayload()
    await router.send(Audience(groups=ids("empty")), nobody)
    await router.stats()
    assert json_only.calls == {"json": 1}
    assert nobody.calls == {}


async def test_a_payload_that_cannot_encode_drops_the_send_not_the_router(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def encode(self, key: str) -> bytes:
            raise ValueError("cannot encode")

    a = Conn("a")
    await register(router, a)
    await router.send(Audience(everyone=True), Broken())
    await router.send(Audience(everyone=True), CountingPayload())
    await router.stats()
    assert a.received() == [b"json:hello"]
    assert "could not encode a send for protocol 'json'" in caplog.text


async def test_a_full_outbox_closes_only_that_connection(router: Router) -> None:
    fast = [Conn(f"fast{i}") for i in range(3)]
    slow = Conn("slow", user="u1", size=1)
    await register(router, *fast, slow)
    await router.add_to_group("slow", "g")

    await router.send(Audience(everyone=True), CountingPayload("1"))  # fills slow's outbox
    await router.send(Audience(everyone=True), CountingPayload("2"))  # overflows it
    await router.send(Audience(everyone=True), CountingPayload("3"))  # slow is gone already
    assert await router.stats() == RouterStats(connections=3, users=0, groups=0, slow_consumers=1)
    assert slow.closes == [CloseReason.SLOW_CONSUMER]
    assert slow.received() == [b"json:1"]
    for conn in fast:
        assert conn.closes == []
        assert conn.received() == [b"json:1", b"json:2", b"json:3"]


async def test_an_outbox_closed_by_its_connection_is_skipped_quietly(router: Router) -> None:
    closing, other = Conn("closing"), Conn("other")
    await register(router, closing, other)
    closing.outbox.close()  # the writer is gone; its unregister is on the way
    await router.send(Audience(everyone=True), CountingPayload())
    assert (await router.stats()).slow_consumers == 0
    assert closing.closes == []
    assert other.received() == [b"json:hello"]


async def test_close_all_asks_every_connection_to_close(router: Router) -> None:
    conns = [Conn(f"c{i}") for i in range(3)]
    await register(router, *conns)
    await router.close_all()
    await router.close_all(CloseReason.EXPIRED)
    await router.stats()
    assert [conn.closes for conn in conns] == [[CloseReason.SHUTDOWN, CloseReason.EXPIRED]] * 3


async def test_ask_on_a_stopped_router_fails_with_actor_stopped() -> None:
    router = Router()
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        await router.register(Conn("a").entry)
        assert (await router.stats()).connections == 1
        nursery.cancel_scope.cancel()

    with pytest.raises(ActorStopped, match=r"^router is not running$"):
        await router.stats()
    with pytest.raises(ActorStopped):
        await router.lookup("a")
    with pytest.raises(ActorStopped):
        await router.register(Conn("b").entry)
    with pytest.raises(ActorStopped):
        await router.send(Audience(everyone=True), CountingPayload())
    router.unregister_nowait("a")  # cleanup paths never raise


async def test_pending_asks_fail_when_the_router_stops() -> None:
    router = Router(mailbox_size=4)
    outcomes: list[str] = []

    async def ask(what: Callable[[], Awaitable[object]]) -> None:
        try:
            await what()
        except ActorStopped as error:
            outcomes.append(str(error))

    async with trio.open_nursery() as nursery:
        # Queued while the actor is not serving yet: 4 in the mailbox, 2 waiting for room.
        for _ in range(3):
            nursery.start_soon(ask, router.stats)
        for _ in range(3):
            nursery.start_soon(ask, lambda: router.lookup("x"))
        await trio.testing.wait_all_tasks_blocked()
        assert outcomes == []
        with trio.CancelScope() as scope:
            scope.cancel()  # the router stops before it handles anything
            await router.run()
    assert outcomes == ["router is not running"] * 6


class RecordingBackplane:
    """Records what the router hands the seam (a real backplane is in tests/backplane)."""

    def __init__(self) -> None:
        self.published: list[tuple[Audience, object]] = []
        self.closed: list[tuple[Audience, CloseReason, str]] = []
        self.interest_log: list[tuple[str, str, bool]] = []
        self.router: Router | None = None

    def interest(self, kind: str, name: str, present: bool) -> None:
        self.interest_log.append((kind, name, present))

    def publish(self, audience: Audience, payload: object) -> None:
        self.published.append((audience, payload))

    def close(self, audience: Audience, reason: CloseReason, detail: str) -> None:
        self.closed.append((audience, reason, detail))

    async def run(
        self, router: Router, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.router = router
        task_status.started()
        await trio.sleep_forever()


async def test_local_sends_are_published_and_remote_ones_only_delivered(
    nursery: trio.Nursery,
) -> None:
    backplane = RecordingBackplane()
    router = Router(backplane=backplane)
    await nursery.start(router.run)
    a = Conn("a")
    await register(router, a)

    local = CountingPayload("local")
    await router.send(Audience(everyone=True), local)
    remote = CountingPayload("remote")
    router.deliver(Audience(everyone=True), remote)
    await router.barrier()

    assert a.received() == [b"json:local", b"json:remote"]
    assert backplane.published == [(Audience(everyone=True), local)]


async def test_a_burst_from_other_nodes_larger_than_the_mailbox_arrives_whole_and_in_order(
    nursery: trio.Nursery,
) -> None:
    # A read of the backplane's connection hands its messages over without a
    # yield between them: they queue as one step of the router, not one each.
    router = Router(mailbox_size=4, backplane=RecordingBackplane())
    await nursery.start(router.run)
    a = Conn("a", size=1000)
    await register(router, a)
    for i in range(600):
        router.deliver(Audience(everyone=True), CountingPayload(str(i)))
    await router.barrier()
    assert a.received() == [f"json:{i}".encode() for i in range(600)]


async def test_commands_from_other_nodes_keep_their_place_among_local_ones(
    nursery: trio.Nursery,
) -> None:
    router = Router(backplane=RecordingBackplane())
    await nursery.start(router.run)
    a, b = Conn("a"), Conn("b")
    await register(router, a, b)
    router.deliver(Audience(everyone=True), CountingPayload("before"))
    router.unregister_nowait("b")
    # Queued after the unregister: it must not join the step queued before it.
    router.deliver(Audience(everyone=True), CountingPayload("after"))
    router.close_local(Audience(everyone=True), CloseReason.ABORTED, "remote")
    await router.barrier()
    assert a.received() == [b"json:before", b"json:after"]
    assert b.received() == [b"json:before"]
    assert (a.closes, b.closes) == ([CloseReason.ABORTED], [])


async def test_a_filtered_send_reaches_the_admitted_and_is_never_published(
    nursery: trio.Nursery,
) -> None:
    """``send_admitted``: the filter sees each recipient's handle; the send stays on
    this node (a backplane would carry it without its filter)."""
    backplane = RecordingBackplane()
    router = Router(backplane=backplane)
    await nursery.start(router.run)
    a, b = Conn("a"), Conn("b")
    await register(router, a, b)
    seen: list[str] = []

    def admits(handle: object) -> bool:
        seen.append(str(handle))
        return handle == "handle-b"

    await router.send_admitted(Audience(everyone=True), CountingPayload("filtered"), admits)
    await router.stats()
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(seen) == ["handle-a", "handle-b"]
    assert (a.received(), b.received()) == ([], [b"json:filtered"])
    assert backplane.published == []


async def test_the_seam_hears_first_and_last_of_users_and_groups(nursery: trio.Nursery) -> None:
    backplane = RecordingBackplane()
    router = Router(backplane=backplane)
    await nursery.start(router.run)
    a, b = Conn("a", user="u"), Conn("b", user="u")
    await register(router, a, b)
    assert await router.join("a", "g") is JoinResult.JOINED
    assert await router.join("b", "g") is JoinResult.JOINED
    assert await router.join("nobody", "g") is JoinResult.UNKNOWN
    await router.unregister("a")
    assert await router.leave("b", "g")
    assert not await router.leave("a", "g")
    await router.unregister("b")
    await router.barrier()
    assert backplane.interest_log == [
        ("connection", "a", True),
        ("user", "u", True),
        ("connection", "b", True),
        ("group", "g", True),
        ("connection", "a", False),
        ("group", "g", False),
        ("connection", "b", False),
        ("user", "u", False),
    ]


async def test_only_connections_held_elsewhere_are_published(nursery: trio.Nursery) -> None:
    backplane = RecordingBackplane()
    router = Router(backplane=backplane)
    await nursery.start(router.run)
    await register(router, Conn("a"))
    payload = CountingPayload()
    await router.send(Audience(connections=frozenset({"a"})), payload)
    await router.send(Audience(connections=frozenset({"a", "far"})), payload)
    await router.close(Audience(connections=frozenset({"far"})), CloseReason.ABORTED, "why")
    await router.barrier()
    assert backplane.published == [(Audience(connections=frozenset({"far"})), payload)]
    assert backplane.closed == [
        (Audience(connections=frozenset({"far"})), CloseReason.ABORTED, "why")
    ]


async def test_a_connection_is_in_at_most_max_groups_per_connection_groups(
    nursery: trio.Nursery,
) -> None:
    router = Router(max_groups_per_connection=2)
    await nursery.start(router.run)
    a, b = Conn("a"), Conn("b")
    await register(router, a, b)
    assert await router.add_to_group("a", "g1")
    assert await router.add_to_group("a", "g2")
    assert await router.add_to_group("a", "g2")  # already in: not a third
    assert not await router.add_to_group("a", "g3")
    assert await router.add_to_group("b", "g3")  # the limit is per connection
    assert await router.add_to_group("gone", "g4")  # unknown: a no-op, not a refusal
    await router.send(Audience(groups=frozenset({"g3"})), CountingPayload())
    await router.barrier()
    assert (a.received(), b.received()) == ([], [b"json:hello"])

    await router.remove_from_group("a", "g1")
    assert await router.add_to_group("a", "g3")
    assert (await router.stats()).groups == 2  # g2 (a), g3 (a, b)


async def test_close_passes_its_detail_to_the_audience_only(router: Router) -> None:
    banned, other = Conn("c1", user="mallory"), Conn("c2", user="bob")
    await register(router, banned, other)
    await router.close(Audience(users=frozenset({"mallory"})), CloseReason.ABORTED, "banned")
    await router.stats()
    assert (banned.closes, banned.details) == ([CloseReason.ABORTED], ["banned"])
    assert other.closes == []
