"""One sync's scopes in several worker processes.

A cold sync is CPU-bound in one event loop (botocore signs and parses every call, the engine builds
every record; see benchmarks/RESULTS.md), so on a machine or Lambda function with more
than one vCPU the engine splits the scopes into shards by account (so each account is still
assumed once) and runs each shard as an ordinary engine pass in its own process. The parent keeps
the full-sync lease, the execution index, the report and the status; workers take the per-scope
leases as any sync does.

Each worker is a fresh interpreter (``WORKER_COMMAND``) fed its shard on stdin and
answering on stdout, both pickled (parent and child are the same code). Not ``multiprocessing``:
its Queue and Pool need /dev/shm, which AWS Lambda lacks, and its "spawn" start method re-imports
the parent's ``__main__`` (in Lambda, the runtime's own bootstrap). Nothing of the parent (event
loop, threads, sockets) is inherited.
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from syncengine.config import SyncSettings
from syncengine.executions import ExecutionSource
from syncengine.logging import get_logger
from syncengine.models import AccountTarget, Scope, ScopeError, ScopeOutcome, ScopeResult
from syncengine.pipeline import sync_scopes
from syncengine.runtime import Runtime, SyncProgress, deadline_scope, open_runtime

log = get_logger(__name__)

# Imported by module name (not ``-m``), so pickled results name ``syncengine.shards`` and Python
# does not warn about running a module that is already imported.
WORKER_COMMAND = "import sys; from syncengine.shards import worker_main; sys.exit(worker_main())"
# Below this many scopes a second process costs more (interpreter start, imports) than it saves.
MIN_SCOPES_PER_WORKER = 16
Planned = list[tuple[Scope, AccountTarget]]


@dataclass
class ShardOutcome:
    results: list[ScopeResult] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    throttle_retries: int = 0
    transient_retries: int = 0
    assume_role_calls: int = 0
    dynamodb_throttles: int = 0
    crash: str | None = None


def worker_count(settings: SyncSettings, scopes: int) -> int:
    return max(1, min(settings.workers, scopes // MIN_SCOPES_PER_WORKER))


def shard_by_account(planned: Planned, shards: int) -> list[Planned]:
    """Split scopes into ``shards`` groups, an account's scopes never split, sizes balanced
    (largest accounts first into the currently smallest shard)."""
    by_account: dict[str, Planned] = {}
    for scope, account in planned:
        by_account.setdefault(scope.account_id, []).append((scope, account))
    groups: list[Planned] = [[] for _ in range(max(1, shards))]
    for scopes in sorted(by_account.values(), key=len, reverse=True):
        min(groups, key=len).extend(scopes)
    return [group for group in groups if group]


async def _run_shard(settings: SyncSettings, shard: Planned, executions: ExecutionSource, run_id: str) -> ShardOutcome:
    results: dict[Scope, ScopeResult] = {}
    async with open_runtime(settings) as rt:
        with deadline_scope(settings):
            await sync_scopes(rt, shard, executions, run_id=run_id, results=results)
        stats = rt.stats
    return ShardOutcome(
        results=list(results.values()),
        calls=dict(stats.calls),
        throttle_retries=stats.throttle_retries,
        transient_retries=stats.transient_retries,
        assume_role_calls=stats.assume_role_calls,
        dynamodb_throttles=stats.dynamodb_throttles,
    )


def worker_main() -> int:
    """Entry point of a worker process: one engine pass over the shard read from stdin."""
    from syncengine.logging import configure_logging

    configure_logging()
    try:
        settings, shard, executions, run_id = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - our parent
        outcome = asyncio.run(_run_shard(settings, shard, executions, run_id))
    except BaseException as exc:  # the parent must hear about any failure, bugs included
        outcome = ShardOutcome(crash=f"{type(exc).__name__}: {exc}")
    sys.stdout.buffer.write(pickle.dumps(outcome))
    sys.stdout.flush()
    return 0


async def _run_worker(settings: SyncSettings, shard: Planned, executions: ExecutionSource, run_id: str) -> Any:
    """One worker process over one shard: its ``ShardOutcome`` (a crash when it died first)."""
    process = await anyio.open_process(
        [sys.executable, "-c", WORKER_COMMAND], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None
    )
    try:
        assert process.stdin is not None and process.stdout is not None
        await process.stdin.send(pickle.dumps((settings, shard, executions, run_id)))
        await process.stdin.aclose()
        answer = b"".join([chunk async for chunk in process.stdout])
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
    if not answer:
        return ShardOutcome(crash=f"worker exited with code {process.returncode} before answering")
    return pickle.loads(answer)  # noqa: S301 - our own child process


def _add_stats(rt: Runtime, outcome: ShardOutcome) -> None:
    rt.stats.calls.update(outcome.calls)
    rt.stats.throttle_retries += outcome.throttle_retries
    rt.stats.transient_retries += outcome.transient_retries
    rt.stats.assume_role_calls += outcome.assume_role_calls
    rt.stats.dynamodb_throttles += outcome.dynamodb_throttles


def _crashed(shard: Planned, reason: str) -> list[ScopeResult]:
    return [
        ScopeResult(
            scope, ScopeOutcome.FAILED, error=ScopeError(scope.account_id, scope.region, "WorkerFailed", reason)
        )
        for scope, _ in shard
    ]


async def run_in_processes(
    rt: Runtime,
    shards: Sequence[Planned],
    executions: ExecutionSource,
    *,
    run_id: str,
    progress: SyncProgress | None = None,
    results: dict[Scope, ScopeResult],
) -> None:
    """Run each shard in its own process, putting results in ``results``; a worker that dies
    fails only its own scopes."""
    remaining = anyio.current_effective_deadline() - anyio.current_time()
    # Workers finish a little before the parent's deadline so their answers arrive in time.
    settings = rt.settings
    if remaining != float("inf"):
        settings = settings.with_changes(deadline_seconds=max(1.0, remaining - 2.0))
    settings = settings.with_changes(workers=1)

    async def run_one(shard: Planned) -> None:
        outcome = await _run_worker(settings, shard, executions, run_id)
        shard_results = _crashed(shard, outcome.crash) if outcome.crash else outcome.results
        if outcome.crash:
            log.error("sync_worker_failed", error=outcome.crash, scopes=len(shard))
        else:
            _add_stats(rt, outcome)
        for result in shard_results:
            results[result.scope] = result
            if progress is not None:
                progress.advance(result)

    async with anyio.create_task_group() as tg:
        for shard in shards:
            tg.start_soon(run_one, shard)


if __name__ == "__main__":
    # Run from the importable module, not __main__, so pickled results name syncengine.shards.
    from syncengine.shards import worker_main as _worker_main

    sys.exit(_worker_main())
