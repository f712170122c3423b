"""Running several calls at once and reporting their failure as one engine error.

A task group reports failures as an ``ExceptionGroup``; callers of the store and discovery want
"this scope failed because of X" — the first engine error, chained to the whole group. A group
that holds anything else (a bug) propagates unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
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
