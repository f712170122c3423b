"""Fan-out: the scheduled full sync past one process, over the work queue.

With ``SYNC_FANOUT=on`` (or ``auto`` from ``SYNC_FANOUT_THRESHOLD`` scopes) a full sync does not
sync in-process. The sweep (``start_fanout``):
1. takes the full-sync lease for ``stale_after_seconds`` (the run's whole life: a second sweep
   never starts while this run's messages are in flight);
2. writes the run record (``RUN``/``FANOUT``: the number of scopes enqueued);
3. enqueues the scopes in small groups, ``{"scopes": [{"accountId", "region"}, ...], "reason":
   "fanout", "runId"}`` (the refresh function's scope group message): at most
   ``fanout_scopes_per_message`` scopes a message (10 by default), an account's regions together
   where they fit (one role session per account in a worker). Fewer,
   larger messages cost fewer SQS calls and invocations; a worker syncs a message's scopes
   concurrently, each counted on its own. A scope where a recovery is running now goes in a
   message of its own kind, delayed (``ACTIVE_EXECUTION_DELAY_S``) so the recovery's own DRS
   calls keep the account's quota meanwhile (its events refresh what it launches).
Workers (the refresh function, ``syncengine.refresh.batch``) run the same engine per message and
count each finished scope once (``finish_scope``); the worker whose count reaches the total
finishes the run (``finish_run``): the removed-scope reconciliation, the run summary, the lease.

A run whose messages are lost or stuck never reaches its total: it shows as ``running`` while
its lease lives, and then its scopes, with no success for ``stale_after_seconds``, make the
status ``degraded``; the record says how far it got (``fanoutRun`` in the status).
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio

from syncengine.core.concurrency import run_concurrently
from syncengine.core.config import SyncSettings
from syncengine.core.errors import AwsError, ExecutionNotFoundError
from syncengine.core.logging import get_logger
from syncengine.core.models import (
    AccountTarget,
    RunStatus,
    Scope,
    ScopeError,
    ScopeOutcome,
    ScopeResult,
    SyncReport,
    utc_now_iso,
)
from syncengine.core.retry import CallContext
from syncengine.sync.execution_sync import index_table, rebuild_if_due
from syncengine.sync.fanout_groups import (
    ACTIVE_EXECUTION_DELAY_S,  # noqa: F401 (re-exported)
    FANOUT_REASON,
    Group,
    group_message,
    part_sizes,
    plan_groups,
    scope_groups,
)
from syncengine.sync.terminate_completion import follow_terminations
from syncengine.tables.accounts import load_targets, plan_scopes
from syncengine.tables.execution_index.lookup import is_active
from syncengine.tables.execution_index.table import ExecutionIndexTable
from syncengine.tables.orchestration import load_execution_items, scan_execution_activity
from syncengine.tables.status import FANOUT_COUNT_CHUNK

log = get_logger(__name__)

SEND_BATCH_MAX = 10  # SQS SendMessageBatch takes at most 10 entries
SEND_CONCURRENCY = 8  # SendMessageBatch calls in flight at once
UNSENT = "the sweep could not enqueue this scope's message"


def fanout_wanted(settings: SyncSettings, scope_count: int) -> bool:
    if settings.fanout == "on":
        return True
    return settings.fanout == "auto" and scope_count >= settings.fanout_threshold


@dataclass(frozen=True)
class Enqueued:
    sent: int
    failed: int
    delayed: int
    unsent: tuple[Group, ...] = ()


async def active_execution_scopes(rt: Any) -> set[Scope]:
    """Account/regions where an execution of the orchestration is running now: the executions the
    execution index lists as running, each read by key (a handful; one found finished is taken off
    the list), so the sweep's cost does not grow with the history. Before the index's first
    rebuild, or when it cannot be read, one projected Scan of the history instead."""
    table = index_table(rt.dynamo, rt.settings)
    try:
        running = await table.active_executions()
    except AwsError as exc:
        log.warning("execution_index_unreadable", error_type=exc.error_type, error=str(exc))
        running = None
    if running is None:
        items = await scan_execution_activity(rt.dynamo, rt.settings.tables.execution_history)
    else:
        items = await _running_items(table, running)
    active: set[Scope] = set()
    for item in items:
        if not is_active(item):
            continue
        for wave in item.get("waves") or []:
            account = wave.get("accountId") or item.get("accountId")
            region = wave.get("region")
            if isinstance(account, str) and isinstance(region, str):
                active.add(Scope(account, region))
    return active


async def _running_items(table: ExecutionIndexTable, execution_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The items of the executions the index lists as running, read by key; an execution that
    finished (or was deleted) since is taken off the list."""
    found: list[dict[str, Any]] = []

    async def read(execution_id: str) -> None:
        try:
            items = await load_execution_items(table.dynamo, table.history_table, execution_id)
        except ExecutionNotFoundError:
            items = []
        found.extend(items)
        if not any(is_active(item) for item in items):
            await table.set_active(execution_id, False)

    await run_concurrently(functools.partial(read, execution_id) for execution_id in sorted(execution_ids))
    return found


async def _send(rt: Any, queue_url: str, groups: list[Group], run_id: str) -> Enqueued:
    """Send the groups, ``SEND_CONCURRENCY`` SendMessageBatch calls at a time (the first workers
    start on their batches while the rest is still being sent otherwise); counts are scopes (a
    refused message's scopes all failed, its group is in ``unsent``)."""
    sqs = await rt.aws.client("sqs", rt.settings.home_region)
    chunks = [groups[start : start + SEND_BATCH_MAX] for start in range(0, len(groups), SEND_BATCH_MAX)]
    unsent: list[list[Group]] = [[] for _ in chunks]
    limiter = anyio.CapacityLimiter(SEND_CONCURRENCY)

    async def send(index: int) -> None:
        async with limiter:
            unsent[index] = await _send_chunk(rt, sqs, queue_url, chunks[index], run_id)

    await run_concurrently(functools.partial(send, index) for index in range(len(chunks)))
    refused = tuple(g for chunk in unsent for g in chunk)
    failed = sum(len(g.scopes) for g in refused)
    delayed = sum(len(g.scopes) for g in groups if g.delay)
    return Enqueued(sum(len(g.scopes) for g in groups) - failed, failed, delayed, refused)


async def _send_chunk(rt: Any, sqs: Any, queue_url: str, chunk: list[Group], run_id: str) -> list[Group]:
    """One SendMessageBatch of up to 10 groups: the groups it could not send."""
    entries = [
        {
            "Id": str(index),
            "MessageBody": json.dumps(group_message(group.scopes, run_id, group.part)),
            "DelaySeconds": group.delay,
        }
        for index, group in enumerate(chunk)
    ]
    context = CallContext("sqs:SendMessageBatch", region=rt.settings.home_region)
    try:
        answer = await rt.aws.call(sqs, "send_message_batch", context, QueueUrl=queue_url, Entries=entries)
    except AwsError as exc:
        log.error("fanout_enqueue_failed", error=str(exc), scopes=sum(len(g.scopes) for g in chunk))
        return list(chunk)
    sent = {int(e["Id"]) for e in answer.get("Successful") or []}
    return [group for index, group in enumerate(chunk) if index not in sent]


async def start_fanout(rt: Any) -> SyncReport | None:
    """Fan the full sync out when the settings ask for it; None: sync in-process instead."""
    settings = rt.settings
    if settings.fanout == "off":
        return None
    if not settings.work_queue_url:
        log.warning("fanout_without_queue", detail="SYNC_WORK_QUEUE_URL is not set; syncing in-process")
        return None
    try:
        # The sweep is the full sync: it makes stale region probes again (tables.region_discovery).
        targets = await load_targets(rt.aws, rt.dynamo, settings, probe_with=rt.regions)
    except AwsError:
        return None  # the in-process path reads them again and reports the failure as a run
    planned = plan_scopes(targets, settings)
    if not planned or not fanout_wanted(settings, len(planned)):
        return None
    run_id = uuid.uuid4().hex[:16]
    started_iso, started = utc_now_iso(), time.monotonic()
    await rt.status.acquire_full_sync_lease(run_id, seconds=settings.stale_after_seconds)
    try:
        return await _fan_out(rt, run_id, [scope for scope, _ in planned], started_iso, started)
    except BaseException:
        # Any failure after the lease was taken (the run record, the execution index, SQS, a
        # cancellation): give the lease back, or every schedule would answer "already running"
        # until it expired (``stale_after_seconds``). Messages already sent stay counted by
        # their workers; a newer run replaces the record and refuses their counts.
        with anyio.CancelScope(shield=True):
            try:
                await rt.status.release_full_sync_lease(run_id)
            except AwsError as exc:
                log.error("fanout_lease_release_failed", run_id=run_id, error_type=exc.error_type, error=str(exc))
        raise


async def _fan_out(rt: Any, run_id: str, scopes: list[Scope], started_iso: str, started: float) -> SyncReport:
    """The sweep under its lease: the run record, the messages, the unsent scopes' count."""
    settings = rt.settings
    delayed = await active_execution_scopes(rt)
    groups = plan_groups(scopes, settings.fanout_scopes_per_message, delayed)
    await rt.status.start_fanout_run(run_id, len(scopes), started_iso, parts=part_sizes(groups))
    enqueued = await _send(rt, settings.work_queue_url, groups, run_id)
    for group in enqueued.unsent:
        # No worker will count the scopes whose messages were refused: count them failed now, so
        # the run still finishes (summary written, lease released) when the rest is done.
        results = [
            ScopeResult(s, ScopeOutcome.FAILED, error=ScopeError(s.account_id, s.region, "NotEnqueued", UNSENT))
            for s in group.scopes
        ]
        await finish_scopes(rt, run_id, results, part=group.part)
    # The workers' scopes are targeted syncs: the periodic rebuild of the execution index and the
    # follow-up of terminate jobs (``instancesTerminated``) are the sweep's, as they are a full
    # run's (after sending, so they delay no worker); neither raises.
    await rebuild_if_due(rt.dynamo, settings)
    await follow_terminations(rt)
    return _sweep_report(run_id, len(scopes), enqueued, started_iso, started)


def _sweep_report(run_id: str, scopes: int, enqueued: Enqueued, started_iso: str, started: float) -> SyncReport:
    """The sweep's answer: nothing synced yet, ``scopes_enqueued`` sent to the workers."""
    log.info(
        "fanout_started",
        run_id=run_id,
        scopes=scopes,
        sent=enqueued.sent,
        failed=enqueued.failed,
        delayed=enqueued.delayed,
    )
    return SyncReport(
        status=RunStatus.SUCCESS if enqueued.failed == 0 else RunStatus.PARTIAL,
        instances_updated=0,
        instances_unchanged=0,
        instances_deleted=0,
        scopes_synced=0,
        scopes_failed=0,
        duration_ms=int((time.monotonic() - started) * 1000),
        started_at=started_iso,
        finished_at=utc_now_iso(),
        run_id=run_id,
        scopes_enqueued=enqueued.sent,
    )


async def finish_scope(rt: Any, run_ids: Iterable[str], result: ScopeResult, *, part: int = 0) -> None:
    """Count a scope a fan-out message asked for; the worker that counts the last one finishes
    the run. A message of an older run, or one delivered twice, counts nothing; a refused count
    still reports the scope's part if it is done and the run lacks it (its counter died)."""
    for run_id in run_ids:
        counted = await rt.status.finish_fanout_scope(run_id, result, part=part)
        if counted is None:
            run = await rt.status.report_part_if_done(run_id, part)
            counted = None if run is None else {"runRemaining": run["remaining"]}
        await _finish_if_last(rt, run_id, counted)


async def finish_scopes(rt: Any, run_id: str, results: list[ScopeResult], *, part: int = 0) -> None:
    """Count a batch's finished scopes of one run's part, ``FANOUT_COUNT_CHUNK`` in one update (a
    worker's batch holds hundreds); a chunk the part refuses (a scope already counted: SQS
    delivered its message again) is counted scope by scope, so each scope counts exactly once."""
    for start in range(0, len(results), FANOUT_COUNT_CHUNK):
        chunk = results[start : start + FANOUT_COUNT_CHUNK]
        counted = await rt.status.finish_fanout_scopes(run_id, chunk, part=part)
        if counted is None:
            for result in chunk:
                await finish_scope(rt, (run_id,), result, part=part)
            continue
        await _finish_if_last(rt, run_id, counted)


async def _finish_if_last(rt: Any, run_id: str, counted: dict[str, Any] | None) -> None:
    """After a count: when it finished the run's last part (``runRemaining`` 0), the summary."""
    if counted is None or "runRemaining" not in counted or int(counted["runRemaining"]) > 0:
        return
    # This count was the run's last: the whole record (consistent, every count in it).
    record = await rt.status.fanout_run(consistent=True)
    if record is not None and record.get("runId") == run_id:
        await finish_run(rt, record)


def summary_report(record: dict[str, Any], removed_scopes: int, removed_records: int) -> SyncReport:
    """The run summary from the run record's counters (each scope's own errors are in its status)."""
    synced, failed = int(record.get("scopesSynced", 0)), int(record.get("scopesFailed", 0))
    status = RunStatus.SUCCESS if failed == 0 else RunStatus.FAILED if synced == 0 else RunStatus.PARTIAL
    started_at = str(record.get("startedAt", ""))
    return SyncReport(
        status=status,
        instances_updated=int(record.get("instancesUpdated", 0)),
        instances_unchanged=int(record.get("instancesUnchanged", 0)),
        instances_deleted=int(record.get("instancesDeleted", 0)) + removed_records,
        scopes_synced=synced,
        scopes_failed=failed,
        duration_ms=_ms_since(started_at),
        started_at=started_at,
        finished_at=utc_now_iso(),
        run_id=str(record["runId"]),
        scopes_not_enabled=int(record.get("scopesNotEnabled", 0)),
        scopes_removed=removed_scopes,
    )


def _ms_since(iso: str) -> int:
    from datetime import UTC, datetime

    try:
        started = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return max(0, int((datetime.now(UTC) - started).total_seconds() * 1000))


async def finish_run(rt: Any, record: dict[str, Any]) -> SyncReport:
    """The last worker's duty: removed scopes, the run summary, the full-sync lease."""
    from syncengine.sync.run import RemovedScopes, remove_unconfigured_scopes
    from syncengine.sync.run import finish_run as finish_full_run

    removed = RemovedScopes()
    try:
        targets: list[AccountTarget] = await load_targets(rt.aws, rt.dynamo, rt.settings)
        await remove_unconfigured_scopes(rt, plan_scopes(targets, rt.settings), targets, removed)
    except AwsError as exc:
        log.error("fanout_reconciliation_failed", error_type=exc.error_type, error=str(exc))
    report = summary_report(record, removed.scopes, removed.records)
    await finish_full_run(rt, report, full=True)
    return report


__all__ = [
    "FANOUT_REASON",
    "active_execution_scopes",
    "fanout_wanted",
    "finish_run",
    "finish_scope",
    "finish_scopes",
    "group_message",
    "scope_groups",
    "start_fanout",
    "summary_report",
]
