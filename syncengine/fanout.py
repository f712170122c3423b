"""Fan-out: the scheduled full sync past one process, over the work queue.

With ``SYNC_FANOUT=on`` (or ``auto`` from ``SYNC_FANOUT_THRESHOLD`` scopes) a full sync does not
sync in-process. The sweep (``start_fanout``):
1. takes the full-sync lease for ``stale_after_seconds`` (the run's whole life: a second sweep
   never starts while this run's messages are in flight);
2. writes the run record (``RUN``/``FANOUT``: the number of scopes enqueued);
3. enqueues one scope message per scope, ``{"accountId", "region", "reason": "fanout",
   "runId"}`` (the refresh function's own shape); a scope where a recovery is running now gets
   its message delayed (``ACTIVE_EXECUTION_DELAY_S``) so the recovery's own DRS calls keep the
   account's quota meanwhile (its events refresh what it launches).
Workers (the refresh function, ``syncengine.refresh``) run the same engine per message and
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

from syncengine.accounts import load_targets, plan_scopes
from syncengine.concurrency import run_concurrently
from syncengine.config import SyncSettings
from syncengine.errors import AwsError, ExecutionNotFoundError
from syncengine.execution_index import ExecutionIndexTable, is_active
from syncengine.execution_sync import index_table
from syncengine.logging import get_logger
from syncengine.models import AccountTarget, RunStatus, Scope, ScopeResult, SyncReport, utc_now_iso
from syncengine.orchestration import load_execution_items, scan_execution_activity
from syncengine.retry import CallContext

log = get_logger(__name__)

FANOUT_REASON = "fanout"
SEND_BATCH_MAX = 10  # SQS SendMessageBatch takes at most 10 entries
# Delay of a scope message while a recovery runs in its account/region (SQS allows up to 900 s).
ACTIVE_EXECUTION_DELAY_S = 300


def fanout_wanted(settings: SyncSettings, scope_count: int) -> bool:
    if settings.fanout == "on":
        return True
    return settings.fanout == "auto" and scope_count >= settings.fanout_threshold


def scope_message(scope: Scope, run_id: str) -> dict[str, Any]:
    return {"accountId": scope.account_id, "region": scope.region, "reason": FANOUT_REASON, "runId": run_id}


@dataclass(frozen=True)
class Enqueued:
    sent: int
    failed: int
    delayed: int


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


async def _send(rt: Any, queue_url: str, scopes: list[Scope], run_id: str, delayed: set[Scope]) -> Enqueued:
    sqs = await rt.aws.client("sqs", rt.settings.home_region)
    sent = failed = 0
    for start in range(0, len(scopes), SEND_BATCH_MAX):
        chunk = scopes[start : start + SEND_BATCH_MAX]
        entries = [
            {
                "Id": str(index),
                "MessageBody": json.dumps(scope_message(scope, run_id)),
                "DelaySeconds": ACTIVE_EXECUTION_DELAY_S if scope in delayed else 0,
            }
            for index, scope in enumerate(chunk)
        ]
        context = CallContext("sqs:SendMessageBatch", region=rt.settings.home_region)
        try:
            answer = await rt.aws.call(sqs, "send_message_batch", context, QueueUrl=queue_url, Entries=entries)
        except AwsError as exc:
            log.error("fanout_enqueue_failed", error=str(exc), scopes=len(chunk))
            failed += len(chunk)
            continue
        failed += len(answer.get("Failed") or [])
        sent += len(answer.get("Successful") or [])
    return Enqueued(sent, failed, len(delayed & set(scopes)))


async def start_fanout(rt: Any) -> SyncReport | None:
    """Fan the full sync out when the settings ask for it; None: sync in-process instead."""
    settings = rt.settings
    if settings.fanout == "off":
        return None
    if not settings.work_queue_url:
        log.warning("fanout_without_queue", detail="SYNC_WORK_QUEUE_URL is not set; syncing in-process")
        return None
    try:
        targets = await load_targets(rt.aws, rt.dynamo, settings)
    except AwsError:
        return None  # the in-process path reads them again and reports the failure as a run
    planned = plan_scopes(targets, settings)
    if not planned or not fanout_wanted(settings, len(planned)):
        return None
    run_id = uuid.uuid4().hex[:16]
    started_iso, started = utc_now_iso(), time.monotonic()
    await rt.status.acquire_full_sync_lease(run_id, seconds=settings.stale_after_seconds)
    scopes = [scope for scope, _ in planned]
    await rt.status.start_fanout_run(run_id, len(scopes), started_iso)
    delayed = await active_execution_scopes(rt)
    enqueued = await _send(rt, settings.work_queue_url, scopes, run_id, delayed)
    if enqueued.failed:
        # No worker will count the scopes whose messages were refused: count them failed now, so
        # the run still finishes (summary written, lease released) when the rest is done.
        record = await rt.status.count_unsent_fanout_scopes(run_id, enqueued.failed)
        if record is not None and int(record["finished"]) >= int(record["total"]):
            await finish_run(rt, record)
    log.info(
        "fanout_started",
        run_id=run_id,
        scopes=len(scopes),
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


async def finish_scope(rt: Any, run_ids: Iterable[str], result: ScopeResult) -> None:
    """Count a scope a fan-out message asked for; the worker that counts the last one finishes
    the run. A message of an older run, or one delivered twice, counts nothing."""
    for run_id in run_ids:
        record = await rt.status.finish_fanout_scope(run_id, result)
        if record is not None and int(record["finished"]) >= int(record["total"]):
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
    from syncengine.run import RemovedScopes, remove_unconfigured_scopes
    from syncengine.run import finish_run as finish_full_run

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
    "scope_message",
    "start_fanout",
    "summary_report",
]
