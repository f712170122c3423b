"""``Budget``: the run-wide bound on the instances a sync holds. Holders are admitted in turn up
to the limit, never wait again once admitted, and give back what they hold however they end."""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import pytest

from syncengine.core import concurrency
from syncengine.core.concurrency import Budget

BOUND = 5  # seconds: a hang fails instead of stalling the suite


async def test_budget_admits_holders_up_to_the_limit_in_turn() -> None:
    budget = Budget(10)
    admitted: list[int] = []
    peak = [0]
    release = {n: anyio.Event() for n in range(6)}

    async def holder(n: int) -> None:
        async with budget.hold() as hold:
            await hold.take(4)
            admitted.append(n)
            peak[0] = max(peak[0], budget.held)
            await release[n].wait()

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(holder, n)
                await anyio.wait_all_tasks_blocked()
            assert admitted == [0, 1]  # a third 4 would make 12 > 10
            for n in range(6):
                release[n].set()
                await anyio.wait_all_tasks_blocked()
    assert admitted == list(range(6))
    assert peak[0] <= 10
    assert budget.held == 0


async def test_budget_serves_first_come_first_no_small_hold_overtakes() -> None:
    budget = Budget(10)
    order: list[str] = []
    first_done = anyio.Event()

    async def holder(name: str, weight: int, until: anyio.Event | None = None) -> None:
        async with budget.hold() as hold:
            await hold.take(weight)
            order.append(name)
            if until is not None:
                await until.wait()

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder, "first", 6, first_done)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(holder, "big", 8)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(holder, "small", 1)  # would fit, but the big one waits before it
            await anyio.wait_all_tasks_blocked()
            assert order == ["first"]
            first_done.set()
    assert order == ["first", "big", "small"]
    assert budget.held == 0


async def test_budget_admits_a_hold_bigger_than_the_limit_when_nothing_is_held() -> None:
    budget = Budget(10)
    with anyio.fail_after(BOUND):
        async with budget.hold() as hold:
            await hold.take(25)
            assert budget.held == 25
    assert budget.held == 0


async def test_an_admitted_hold_takes_more_without_waiting_even_past_the_limit() -> None:
    """A holder waiting for more while others wait for it to finish would deadlock: it never waits."""
    budget = Budget(10)
    with anyio.fail_after(BOUND):
        async with budget.hold() as first, budget.hold() as second:
            await first.take(6)
            await second.take(4)
            await first.take(6)
            await second.take(200)
            assert (first.weight, second.weight, budget.held) == (12, 204, 216)
    assert budget.held == 0


async def test_a_hold_that_fails_gives_back_its_share_and_lets_the_next_in() -> None:
    budget = Budget(10)
    admitted = anyio.Event()

    async def waiter() -> None:
        async with budget.hold() as hold:
            await hold.take(10)
            admitted.set()

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            with pytest.raises(RuntimeError):
                async with budget.hold() as hold:
                    await hold.take(10)
                    tg.start_soon(waiter)
                    await anyio.wait_all_tasks_blocked()
                    assert not admitted.is_set()
                    raise RuntimeError("the scope failed")
            await admitted.wait()
    assert budget.held == 0


async def test_a_waiter_cancelled_in_the_queue_leaves_it_and_lets_the_next_in() -> None:
    budget = Budget(10)
    admitted: list[str] = []

    async def holder(name: str, weight: int, scope: anyio.CancelScope | None = None) -> None:
        with scope or anyio.CancelScope():
            async with budget.hold() as hold:
                await hold.take(weight)
                admitted.append(name)

    with anyio.fail_after(BOUND):
        async with budget.hold() as held:
            await held.take(5)
            async with anyio.create_task_group() as tg:
                cancelled = anyio.CancelScope()
                tg.start_soon(holder, "big", 10, cancelled)  # waits: 5 + 10 > 10
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(holder, "small", 5)  # fits, but queued behind the big one
                await anyio.wait_all_tasks_blocked()
                assert admitted == []
                cancelled.cancel()
    assert admitted == ["small"]
    assert budget.held == 0


class _Interrupted(Exception):
    pass


class _InterruptedOnceSet:
    """An event whose waiter is interrupted (as by a cancellation) after it was set: the race of
    a grant and a cancellation, which the event loop does not let a test schedule reliably."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        raise _Interrupted


async def test_a_waiter_interrupted_once_granted_gives_its_grant_back(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = Budget(10)
    interrupted = anyio.Event()

    async def waiter() -> None:
        with pytest.raises(_Interrupted):
            async with budget.hold() as hold:
                await hold.take(10)
        interrupted.set()

    with anyio.fail_after(BOUND):
        async with budget.hold() as held:
            await held.take(10)
            monkeypatch.setattr(concurrency, "_Waiter", _interrupted_waiter())
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                assert budget.held == 10
                held.release()  # grants the waiter
                await interrupted.wait()
    assert budget.held == 0


def _interrupted_waiter() -> type:
    @dataclasses.dataclass(eq=False)
    class Waiter(concurrency._Waiter):
        event: Any = dataclasses.field(default_factory=_InterruptedOnceSet)

    return Waiter


def test_a_budget_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError):
        Budget(0)
