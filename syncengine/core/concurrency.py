"""Running several calls at once and reporting their failure as one engine error; bounding how
much work a run holds at once.

A task group reports failures as an ``ExceptionGroup``; callers of the store and discovery want
"this scope failed because of X" — the first engine error, chained to the whole group. A group
that holds anything else (a bug) propagates unchanged.

``Budget`` is a run-wide weighted bound (the sync's instances in flight, ``syncengine.sync.pipeline``):
without it a run holds every scope's discovered data at once while the writes queue, and its
memory grows with the estate.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from syncengine.core.errors import SyncEngineError


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, in order."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaf_exceptions(inner)]
    return [exc]


async def run_concurrently(calls: Iterable[Callable[[], Awaitable[object]]]) -> None:
    """Run every call in one task group; on failure raise the first engine error itself."""
    try:
        async with anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(call)
    except BaseExceptionGroup as group:
        leaves = leaf_exceptions(group)
        if leaves and all(isinstance(leaf, SyncEngineError) for leaf in leaves):
            raise leaves[0] from group
        raise


async def gather(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run the calls in one task group (as ``run_concurrently``) and return their results in
    the order of the calls."""
    results: list[Any] = [None] * len(calls)

    def keep(index: int, call: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            results[index] = await call()

        return run

    await run_concurrently(keep(i, call) for i, call in enumerate(calls))
    return results


@dataclass(eq=False)
class _Waiter:
    weight: int
    granted: bool = False
    event: anyio.Event = field(default_factory=anyio.Event)


class Budget:
    """At most ``limit`` units held at once by holders admitted in turn (first come, first
    served). Only a hold's first ``take`` waits; once admitted, a hold takes more without waiting
    (it may go over the limit), so a holder never waits for the budget: holders cannot deadlock
    on each other, and a hold bigger than the limit is admitted when nothing else is held."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a budget's limit must be positive, got {limit}")
        self.limit = limit
        self.held = 0
        self._waiting: deque[_Waiter] = deque()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[BudgetHold]:
        """A hold, released whatever ends the body (a failure, a cancellation)."""
        hold = BudgetHold(self)
        try:
            yield hold
        finally:
            hold.release()

    def _fits(self, weight: int) -> bool:
        return self.held == 0 or self.held + weight <= self.limit

    async def _admit(self, weight: int) -> None:
        if not self._waiting and self._fits(weight):
            self.held += weight
            return
        waiter = _Waiter(weight)
        self._waiting.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            # Cancelled: hand back what was granted meanwhile, or leave the queue (which may let
            # the next in line in).
            if waiter.granted:
                self._release(weight)
            else:
                self._waiting.remove(waiter)
                self._wake()
            raise

    def _release(self, weight: int) -> None:
        self.held -= weight
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._fits(self._waiting[0].weight):
            waiter = self._waiting.popleft()
            self.held += waiter.weight
            waiter.granted = True
            waiter.event.set()


class BudgetHold:
    """One holder's share of a ``Budget`` (see ``Budget.hold``)."""

    def __init__(self, budget: Budget) -> None:
        self._budget = budget
        self._lock = anyio.Lock()
        self.weight = 0

    async def take(self, weight: int) -> None:
        """Hold ``weight`` more: the first take waits its turn, later ones never wait."""
        if weight <= 0:
            return
        async with self._lock:
            if self.weight == 0:
                await self._budget._admit(weight)
            else:
                self._budget.held += weight
            self.weight += weight

    def release(self) -> None:
        weight, self.weight = self.weight, 0
        if weight:
            self._budget._release(weight)
