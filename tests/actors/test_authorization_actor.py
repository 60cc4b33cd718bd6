"""The authorization actor: the single writer of an immutable state."""

from __future__ import annotations

import ast
import pathlib

import attrs
import pytest
import trio
import trio.testing

import triohub.actors.authorization
from triohub.actors.authorization import AuthorizationActor
from triohub.actors.kit import ActorStopped
from triohub.authorization import AuthorizationState


async def start(
    nursery: trio.Nursery, initial: AuthorizationState | None = None
) -> AuthorizationActor[AuthorizationState]:
    actor = AuthorizationActor(initial if initial is not None else AuthorizationState())
    await nursery.start(actor.run)
    return actor


async def test_a_change_replaces_the_snapshot_and_answers_with_the_new_state(
    nursery: trio.Nursery,
) -> None:
    actor = await start(nursery)
    before = actor.current
    after = await actor.change(lambda state: state.ban("alice"))
    assert after.banned == {"alice"}
    assert actor.current is after
    assert actor.version == 1
    # The snapshot a reader held is untouched: states are values.
    assert before.banned == frozenset()
    assert before == AuthorizationState()


async def test_changes_apply_one_at_a_time_in_arrival_order(nursery: trio.Nursery) -> None:
    actor = await start(nursery)
    seen: list[frozenset[str]] = []

    def ban(user: str) -> object:
        def update(state: AuthorizationState) -> AuthorizationState:
            seen.append(state.banned)
            return state.ban(user)

        return update

    async with trio.open_nursery() as writers:
        for user in ("a", "b", "c"):
            writers.start_soon(actor.change, ban(user))
            await trio.testing.wait_all_tasks_blocked()
        writers.start_soon(actor.change, lambda state: state.unban("a"))
    # Each change saw the state the previous one made.
    assert seen == [frozenset(), {"a"}, {"a", "b"}]
    assert actor.current.banned == {"b", "c"}
    assert actor.version == 4


async def test_readers_never_wait_for_the_actor(nursery: trio.Nursery) -> None:
    """``current`` is a plain read: no checkpoint, whatever the mailbox holds."""
    actor = AuthorizationActor(AuthorizationState(banned=frozenset({"x"})), mailbox_size=1)
    # Not even running: the read still answers at once.
    assert actor.current.is_banned("x")
    await nursery.start(actor.run)
    assert actor.current.is_banned("x")


async def test_a_change_that_raises_changes_nothing_and_reaches_its_writer(
    nursery: trio.Nursery,
) -> None:
    actor = await start(nursery, AuthorizationState(banned=frozenset({"bob"})))
    with pytest.raises(ValueError, match="non-empty string"):
        await actor.change(lambda state: state.ban(""))
    assert actor.current.banned == {"bob"}
    assert actor.version == 0
    # The actor goes on.
    assert (await actor.change(lambda state: state.ban("carol"))).banned == {"bob", "carol"}


async def test_a_writer_that_gives_up_does_not_withdraw_its_change(
    nursery: trio.Nursery,
) -> None:
    actor = AuthorizationActor(AuthorizationState())
    with trio.CancelScope() as scope:
        scope.cancel()
        await actor.change(lambda state: state.ban("mallory"))
    # Cancelled before it was sent (the send is a checkpoint): nothing to apply.
    answered = trio.Event()

    async def writer(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as own:
            task_status.started(own)
            await actor.change(lambda state: state.ban("alice"))
            answered.set()  # pragma: no cover - cancelled while waiting for the answer

    own = await nursery.start(writer)
    await trio.testing.wait_all_tasks_blocked()  # sent; waiting for the (idle) actor
    own.cancel()
    await trio.testing.wait_all_tasks_blocked()
    assert actor.current.banned == frozenset()  # the actor has not run yet
    await nursery.start(actor.run)
    await trio.testing.wait_all_tasks_blocked()
    assert actor.current.banned == {"alice"}
    assert actor.version == 1
    assert not answered.is_set()


async def test_a_stopped_actor_refuses_changes_and_fails_the_queued_ones() -> None:
    actor = AuthorizationActor(AuthorizationState(), mailbox_size=4)
    results: list[object] = []

    async def write(user: str) -> None:
        try:
            results.append(await actor.change(lambda state: state.ban(user)))
        except ActorStopped as error:
            results.append(error)

    async with trio.open_nursery() as nursery:
        # Queued before the actor ever runs: they wait in the mailbox.
        nursery.start_soon(write, "a")
        nursery.start_soon(write, "b")
        await trio.testing.wait_all_tasks_blocked()
        async with trio.open_nursery() as running:
            running.cancel_scope.cancel()
            await running.start(actor.run)
    assert [type(r) for r in results] == [ActorStopped, ActorStopped]
    assert actor.current.banned == frozenset()
    with pytest.raises(ActorStopped):
        await actor.change(lambda state: state.ban("c"))


async def test_an_actor_runs_once(nursery: trio.Nursery) -> None:
    actor = await start(nursery)
    with pytest.raises(RuntimeError, match="already running or has run"):
        await actor.run()


# -- the state --------------------------------------------------------------------------


def test_the_state_is_an_immutable_value() -> None:
    state = AuthorizationState()
    banned = state.ban("alice")
    assert banned is not state
    assert banned.is_banned("alice")
    assert not state.is_banned("alice")
    assert banned.ban("alice") is banned  # no change, same value
    assert banned.unban("bob") is banned
    assert banned.unban("alice") == state
    assert not banned.is_banned(None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        banned.banned = frozenset()  # type: ignore[misc]
    for wrong in ("", None, 7):
        with pytest.raises(ValueError, match="non-empty string"):
            state.ban(wrong)  # type: ignore[arg-type]


# -- boundaries --------------------------------------------------------------------


# Installed, the engine is the package `triohub` and the actors live inside it as
# `triohub.actors`; they still never import the rest of it (nor `engine`, its folder).
def engine_imports(source: str) -> list[str]:
    """The imports of a module of ``triohub.actors`` that reach outside ``triohub.actors``
    into the engine: ``from ..x`` (two dots climb to ``triohub``), ``triohub[.x]`` other
    than ``triohub.actors[.x]``, or the folder name ``engine``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level >= 2:
                found.append("." * node.level + (node.module or ""))
                continue
            names = [] if node.level == 1 else [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")
            if top[0] == "engine" or (top[0] == "triohub" and top[1:2] != ["actors"]):
                found.append(name)
    return found


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from .kit import Mailbox\nimport trio\nimport triohub.actors.kit", []),
        ("from triohub.actors.router import Router", []),
        ("from ..hub.server import HubServer", ["..hub.server"]),
        ("from .. import Hub", [".."]),
        ("from triohub import Hub", ["triohub"]),
        ("import triohub.hub.server", ["triohub.hub.server"]),
        ("from engine.hub import Hub", ["engine.hub"]),
        ("import engine", ["engine"]),
    ],
)
def test_the_boundary_check_sees_an_engine_import(source: str, found: list[str]) -> None:
    assert engine_imports(source) == found


@pytest.mark.parametrize(
    "path",
    sorted(pathlib.Path(triohub.actors.authorization.__file__).parent.glob("*.py")),
    ids=lambda p: p.name,
)
def test_the_actors_import_nothing_from_engine(path: pathlib.Path) -> None:
    assert engine_imports(path.read_text()) == [], f"{path.name} imports the engine"
