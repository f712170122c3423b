"""DrsFirst: a scope's follow-up work waits for every scope's first DRS answer, but never more
than ``max_wait`` after its own, and a scope that never asks DRS cannot hold the others."""

from __future__ import annotations

import anyio

from syncengine.discovery import DrsFirst, FirstAnswer


async def test_follow_ups_wait_until_every_scope_has_heard_from_drs() -> None:
    gate = DrsFirst(3, max_wait=5.0)
    first, second, third = gate.scope(), gate.scope(), gate.scope()
    followed: list[str] = []

    async def follow(name: str, answer: FirstAnswer) -> None:
        await answer.follow()
        followed.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(follow, "first", first)
        first.set()
        first.set()  # idempotent: one scope counts once
        await anyio.sleep(0.05)
        assert followed == []
        second.set()
        await anyio.sleep(0.05)
        assert followed == []
        third.set()  # e.g. a skipped scope, released in its cleanup
    assert followed == ["first"]


async def test_a_follow_up_waits_at_most_max_wait_after_its_own_answer() -> None:
    gate = DrsFirst(2, max_wait=0.2)
    mine, slow = gate.scope(), gate.scope()
    mine.set()
    started = anyio.current_time()
    with anyio.fail_after(30):  # a hang guard, not a timing check
        await mine.follow()
    # It did wait for the others (a timer never fires early), then went ahead without them.
    assert anyio.current_time() - started >= 0.15
    assert not slow._event.is_set()


async def test_a_follow_up_never_runs_before_its_own_scope_heard_from_drs() -> None:
    gate = DrsFirst(1, max_wait=0.0)
    answer = gate.scope()
    with anyio.move_on_after(0.1) as waited:
        await answer.follow()
    assert waited.cancelled_caught
    answer.set()
    with anyio.fail_after(1):
        await answer.follow()


async def test_without_a_gate_and_with_no_scopes_nothing_waits() -> None:
    alone = FirstAnswer()
    alone.set()
    nothing_planned = DrsFirst(0, max_wait=30.0).scope()
    nothing_planned.set()
    with anyio.fail_after(5):  # neither waits for a gate: well inside max_wait
        await alone.follow()
        await nothing_planned.follow()


async def test_everyone_answered_waits_for_every_scope_then_returns() -> None:
    gate = DrsFirst(2, max_wait=0.0)
    first, second = gate.scope(), gate.scope()
    done: list[bool] = []

    async def wait_for_all() -> None:
        await gate.everyone_answered(max_wait=30.0)
        done.append(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_all)
        first.set()
        await anyio.sleep(0.05)
        assert done == []
        second.set()
    assert done == [True]


async def test_everyone_answered_gives_up_after_max_wait() -> None:
    gate = DrsFirst(1)
    with anyio.fail_after(30):  # a hang guard, not a timing check
        await gate.everyone_answered(max_wait=0.05)
    assert not gate._all_answered.is_set()


async def test_release_lets_waiters_go_when_the_scopes_run_elsewhere() -> None:
    gate = DrsFirst(3)
    gate.release()
    with anyio.move_on_after(0.5) as waited:
        await gate.everyone_answered(max_wait=30.0)
    assert not waited.cancelled_caught
