"""The actor kit: bounded mailboxes, one-shot replies, and what a stop does to asks."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest
import trio
import trio.testing

from triohub.actors.kit import ActorStopped, Mailbox, Reply


@attrs.frozen
class Ask:
    """A command that wants an answer: ``value`` doubled."""

    value: int
    reply: Reply[int]


def reply_of(command: Ask | int) -> Reply[object] | None:
    return command.reply if isinstance(command, Ask) else None  # type: ignore[return-value]


def doubler(seen: list[object]) -> Callable[[Ask | int], None]:
    def handle(command: Ask | int) -> None:
        seen.append(command)
        if isinstance(command, Ask):
            if command.value < 0:
                raise RuntimeError("negative")
            command.reply.set(command.value * 2)

    return handle


async def test_reply_is_set_or_failed_exactly_once() -> None:
    reply: Reply[int] = Reply()
    assert not reply.done
    reply.set(1)
    reply.set(2)
    reply.fail(RuntimeError("late"))
    assert reply.done
    assert await reply.wait() == 1

    failed: Reply[int] = Reply()
    failed.fail(KeyError("first"))
    failed.set(3)
    with pytest.raises(KeyError, match="first"):
        await failed.wait()


async def test_ask_is_answered_in_mailbox_order(nursery: trio.Nursery) -> None:
    mailbox: Mailbox[Ask | int] = Mailbox("doubler", 8, reply_of)
    seen: list[object] = []
    nursery.start_soon(mailbox.serve, doubler(seen))
    await mailbox.tell(1)
    mailbox.tell_nowait(2)
    assert await mailbox.ask(lambda reply: Ask(21, reply)) == 42
    assert seen[:2] == [1, 2]


async def test_tell_nowait_raises_would_block_when_full() -> None:
    mailbox: Mailbox[Ask | int] = Mailbox("full", 2, reply_of)
    mailbox.tell_nowait(1)
    mailbox.tell_nowait(2)
    with pytest.raises(trio.WouldBlock):
        mailbox.tell_nowait(3)


async def test_every_pending_ask_fails_when_the_actor_stops() -> None:
    mailbox: Mailbox[Ask | int] = Mailbox("worker", 2, reply_of)
    errors: list[str] = []

    async def ask(value: int) -> None:
        try:
            await mailbox.ask(lambda reply: Ask(value, reply))
        except ActorStopped as error:
            errors.append(str(error))

    async with trio.open_nursery() as nursery:
        for value in range(5):  # 2 queued, 3 blocked waiting for room
            nursery.start_soon(ask, value)
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            await mailbox.serve(doubler([]))
    assert errors == ["worker is not running"] * 5

    with pytest.raises(ActorStopped, match=r"^worker is not running$"):
        await mailbox.ask(lambda reply: Ask(1, reply))
    with pytest.raises(ActorStopped):
        mailbox.tell_nowait(1)


async def test_a_crashing_handler_fails_the_ask_it_was_handling() -> None:
    mailbox: Mailbox[Ask | int] = Mailbox("crashy", 4, reply_of)
    outcome: list[BaseException] = []

    async def ask(value: int) -> None:
        try:
            await mailbox.ask(lambda reply: Ask(value, reply))
        except ActorStopped as error:
            outcome.append(error)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, -1)  # crashes the actor
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(ask, 5)  # queued behind it
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="negative"):
            await mailbox.serve(doubler([]))
    assert [str(error) for error in outcome] == ["crashy is not running"] * 2
