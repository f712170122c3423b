"""Running several calls at once and reporting their failure as one engine error; the cap on
requests in flight (``RequestSlots``).

A task group reports failures as an ``ExceptionGroup``; callers of the store and discovery want
"this scope failed because of X" — the first engine error, chained to the whole group. A group
that holds anything else (a bug) propagates unchanged.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import anyio

from syncengine.errors import SyncEngineError


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


class RequestSlots:
    """A cap on requests in flight whose waiters queue in two lanes: ``follow_up`` before the rest.

    Used as ``async with slots`` (the plain lane) or ``async with slots.lane(follow_up=True)``. A
    freed slot goes to the longest-waiting follow-up, else to the longest-waiting plain request,
    so a scope already under way (its DRS follow-ups: the source servers of a page, the next page)
    is not queued behind every other scope's first page. Under a rate limit that is what starts
    each scope's throttle clock soonest: the run's first scopes reach their 429 (and, after
    ``Retry-After``, their writes) while the later ones still wait for a slot, instead of all of
    them arriving together at the end of the queue."""

    def __init__(self, total: int):
        self.total = total
        self.in_use = 0
        self._follow_ups: deque[anyio.Event] = deque()
        self._plain: deque[anyio.Event] = deque()

    async def acquire(self, *, follow_up: bool = False) -> None:
        if self.in_use < self.total and not self._follow_ups and not self._plain:
            self.in_use += 1
            return
        granted = anyio.Event()
        queue = self._follow_ups if follow_up else self._plain
        queue.append(granted)
        try:
            await granted.wait()
        except BaseException:
            if granted.is_set():
                self.release()  # handed a slot as we were cancelled: pass it on
            else:
                queue.remove(granted)
            raise

    def release(self) -> None:
        for queue in (self._follow_ups, self._plain):
            if queue:
                queue.popleft().set()  # the slot passes to the waiter: in_use is unchanged
                return
        self.in_use -= 1

    @contextlib.asynccontextmanager
    async def lane(self, *, follow_up: bool) -> AsyncIterator[None]:
        await self.acquire(follow_up=follow_up)
        try:
            yield
        finally:
            self.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
