"""Orchestration: scopes -> one task group with limiters -> discovery -> store -> status -> report.

Every scope returns a ``ScopeResult``; one failing scope never cancels another (only bugs
escape). A scope's cache is reconciled only after its discovery and writes succeeded, so a
throttled or unreachable region never loses cached data. The run's deadline is a cancel scope;
the status writes after it run shielded, so a run cut short still says what it did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import aioboto3
import anyio

from syncengine import metrics as m
from syncengine.accounts import (
    load_targets,
    plan_scopes,
    validate_account_id,
    validate_region,
    validate_source_server_id,
)
from syncengine.aws import AwsClients, CallStats
from syncengine.config import LEASE_MARGIN_SECONDS, SyncSettings
from syncengine.dynamo import Dynamo
from syncengine.errors import AwsError, InvalidRequestError, SyncEngineError, SyncInProgressError
from syncengine.executions import ExecutionIndex, load_execution_index
from syncengine.gctune import relaxed_gc
from syncengine.logging import get_logger, structlog
from syncengine.models import (
    AccountTarget,
    Scope,
    ScopeError,
    ScopeOutcome,
    ScopeResult,
    SyncReport,
    SyncStatus,
    utc_now_iso,
)
from syncengine.regions import EnabledRegions, is_disabled_region_error
from syncengine.resident import deadline_from_lambda, run_blocking
from syncengine.status import StatusStore
from syncengine.store import CachedEntry, CacheStore

if TYPE_CHECKING:  # pragma: no cover
    from syncengine.discovery import FirstAnswer, ScopeDiscovery

# The read path (open_runtime, for check-existing and the status) must not load the sync's
# discovery, record building and sharding: the functions that use them import them (once per
# process), so a cold query handler skips them (tests/unit/test_import_graph.py).

log = get_logger(__name__)

# Shielded cleanup (status writes, lease release) gets this long even after the deadline.
CLEANUP_SECONDS = 15.0
NO_SCOPES_MESSAGE = (
    "No active target account and no current account are configured: nothing was synced and no "
    "cached record was removed."
)


class SyncProgress(Protocol):
    """Receives progress of a run (the CLI's progress bar implements it)."""

    def start(self, total_scopes: int) -> None: ...

    def advance(self, result: ScopeResult) -> None: ...


@dataclass
class Runtime:
    """Resources of one run, opened inside it and closed with it."""

    settings: SyncSettings
    aws: AwsClients
    dynamo: Dynamo
    store: CacheStore
    status: StatusStore
    stats: CallStats
    metrics: m.MetricsEmitter = field(repr=False)
    regions: EnabledRegions = field(repr=False)


@contextlib.asynccontextmanager
async def open_runtime(settings: SyncSettings, *, session: aioboto3.Session | None = None) -> AsyncIterator[Runtime]:
    stats = CallStats()
    with relaxed_gc():
        async with AwsClients(settings, session=session, stats=stats) as aws:
            client = await aws.client("dynamodb", settings.home_region)
            dynamo = Dynamo(
                client,
                retry=settings.retry,
                stats=stats,
                concurrency=max(settings.write_concurrency, 4),
                region=settings.home_region,
            )
            yield Runtime(
                settings=settings,
                aws=aws,
                dynamo=dynamo,
                store=CacheStore(dynamo, settings.tables.cache, write_concurrency=settings.write_concurrency),
                # Status and lease calls get their own limiter: behind a cold sync's record batches they
                # would queue past the cleanup budget and leave scope leases held.
                status=StatusStore(
                    Dynamo(client, retry=settings.retry, stats=stats, concurrency=8, region=settings.home_region),
                    settings.tables.status,
                    lease_seconds=settings.lease_seconds,
                    stale_after_seconds=settings.stale_after_seconds,
                ),
                stats=stats,
                metrics=m.MetricsEmitter(
                    enabled=settings.emit_metrics,
                    namespace=settings.metrics_namespace,
                    environment=settings.environment,
                ),
                regions=EnabledRegions(aws, settings.home_region),
            )


def deadline_scope(settings: SyncSettings) -> anyio.CancelScope:
    if settings.deadline_seconds is None:
        return anyio.CancelScope()
    return anyio.move_on_after(settings.deadline_seconds)


def lease_seconds(settings: SyncSettings, remaining: float | None = None) -> float:
    """How long a lease taken now lives: the holder's remaining time (``remaining``, else the
    enclosing deadline's) plus a margin that covers its shielded cleanup and, in Lambda, the time
    until it is killed. A lease never outlives its holder by more, so an invocation killed at its
    timeout frees its scopes a few seconds later. Without any deadline (the CLI), the configured
    ``lease_seconds``."""
    if remaining is None:
        deadline = anyio.current_effective_deadline()
        if deadline != float("inf"):
            remaining = max(deadline - anyio.current_time(), 0.0)
    if remaining is None:
        return settings.lease_seconds
    return remaining + LEASE_MARGIN_SECONDS


async def _discover_and_read_cache(
    rt: Runtime, scope: Scope, account: AccountTarget, server_ids: list[str] | None, first_answer: FirstAnswer
) -> tuple[ScopeDiscovery, dict[str, CachedEntry]]:
    """DRS/EC2 discovery and the cache's view of the scope (the scope lease keeps other writers
    out meanwhile). The cache read is follow-up work (see ``DrsFirst``): it starts once DRS has
    answered, and then overlaps the rest of discovery, off the scope's critical path."""
    from syncengine.concurrency import run_concurrently
    from syncengine.discovery import discover_scope

    found: dict[str, Any] = {}

    async def discover() -> None:
        try:
            found["discovery"] = await discover_scope(
                rt.aws,
                scope,
                account,
                limiter=anyio.CapacityLimiter(rt.settings.per_scope_concurrency),
                server_ids=server_ids,
                first_answer=first_answer,
            )
        finally:
            first_answer.set()

    async def read_cache() -> None:
        await first_answer.follow()
        found["cached"] = await rt.store.scope_entries(scope)

    await run_concurrently((discover, read_cache))
    return found["discovery"], found["cached"]


async def _sync_one_scope(
    rt: Runtime,
    scope: Scope,
    account: AccountTarget,
    executions: ExecutionIndex,
    *,
    run_id: str,
    server_ids: list[str] | None,
    first_answer: FirstAnswer | None = None,
) -> ScopeResult:
    from syncengine.discovery import FirstAnswer
    from syncengine.enrich import build_record

    started = time.monotonic()
    first_answer = first_answer or FirstAnswer()

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    def failed(outcome: ScopeOutcome, error_type: str, message: str) -> ScopeResult:
        error = ScopeError(scope.account_id, scope.region, error_type, message)
        return ScopeResult(scope, outcome, duration_ms=elapsed_ms(), error=error, targeted=server_ids is not None)

    result = failed(ScopeOutcome.SKIPPED, "DeadlineExceeded", "the run's deadline passed before this scope finished")
    # Whether the cleanup below may hold our lease. While acquiring it is unknown (a cancelled
    # acquisition may still have been granted), so the cleanup releases it conditionally.
    lease_ours = False
    try:
        if account.config_error:
            result = failed(ScopeOutcome.FAILED, "InvalidConfiguration",
                            f"target-accounts item of {scope.account_id}: {account.config_error}")
            return result
        if await rt.regions.is_enabled(account, scope.region) is False:
            result = _not_enabled(scope, elapsed_ms())
            return result
        expires_at = time.time() + lease_seconds(rt.settings)
        lease_ours = True
        if not await rt.status.acquire_scope_lease(
            scope, run_id, wait=rt.settings.scope_lease_wait, expires_at=expires_at
        ):
            lease_ours = False
            result = failed(ScopeOutcome.SKIPPED, "ScopeBusy", "another sync of this scope did not finish in time")
            return result
        observed_at = int(time.time() * 1000)
        discovery, cached = await _discover_and_read_cache(rt, scope, account, server_ids, first_answer)
        records = [
            record
            for ri in discovery.recovery_instances
            if (
                record := build_record(
                    scope,
                    ri,
                    discovery.source_servers.get(ri.get("sourceServerID", "")),
                    discovery.ec2_instances.get(ri.get("ec2InstanceID", "")),
                    executions,
                    observed_at,
                )
            )
            is not None
        ]
        initialized = discovery.initialized
        del discovery  # the raw DRS/EC2 data is not needed while the writes wait
        if server_ids is not None:
            wanted = set(server_ids)
            cached = {sid: entry for sid, entry in cached.items() if sid in wanted}
        outcome = await rt.store.write_records(records, cached, last_sync_time=utc_now_iso())
        # Reconciliation: only now, after discovery and writes succeeded for the whole scope.
        seen = {record.source_server_id for record in records}
        stale = [entry for sid, entry in cached.items() if sid not in seen and entry.observed_at <= observed_at]
        deleted = await rt.store.delete_stale(scope, stale)
        result = ScopeResult(
            scope,
            ScopeOutcome.SUCCESS,
            instances_found=len(seen),
            updated=outcome.updated,
            unchanged=outcome.unchanged,
            deleted=deleted,
            duration_ms=elapsed_ms(),
            reconciled=server_ids is None,
            targeted=server_ids is not None,
        )
        log.debug(
            "scope_synced",
            initialized=initialized,
            found=len(seen),
            updated=outcome.updated,
            deleted=deleted,
        )
    except AwsError as exc:
        if is_disabled_region_error(exc, scope.region):
            result = _not_enabled(scope, elapsed_ms())
            log.info("scope_not_enabled", error_type=exc.error_type, operation=exc.operation)
        else:
            result = failed(ScopeOutcome.FAILED, exc.error_type, str(exc))
            log.warning("scope_failed", error_type=exc.error_type, error=str(exc), operation=exc.operation)
    finally:
        first_answer.set()  # a skipped or failed scope must not hold the others' follow-ups
        await rt.aws.release(("drs", "ec2"), scope.region, account)
        # Shielded: a run cut short by its deadline still records the scope and frees its lease.
        # Bounded only when there is a deadline to honour; otherwise a busy loop must not turn a
        # slow status write into a lease left held for its whole lifetime.
        with anyio.CancelScope(shield=True), anyio.move_on_after(_cleanup_budget(rt.settings)) as cleanup:
            try:
                released = lease_ours and await rt.status.finish_scope(result, owner=run_id)
                if not released:
                    # Not our lease (busy, or never granted): record the attempt, leave the lease.
                    await rt.status.finish_scope(result, owner=None)
            except AwsError as exc:
                log.warning("scope_status_write_failed", error=str(exc))
        if cleanup.cancelled_caught:
            log.warning("scope_status_write_timed_out", lease_seconds=rt.settings.lease_seconds)
    return result


def deadline_skipped_report(scope: Scope, message: str) -> SyncReport:
    """The report of a scope a caller's deadline left no time to start (nothing touched)."""
    error = ScopeError(scope.account_id, scope.region, "DeadlineExceeded", message)
    now = utc_now_iso()
    return SyncReport.from_results(
        [ScopeResult(scope, ScopeOutcome.SKIPPED, error=error)], duration_ms=0, started_at=now, finished_at=now
    )


def _not_enabled(scope: Scope, duration_ms: int) -> ScopeResult:
    return ScopeResult(scope, ScopeOutcome.NOT_ENABLED, duration_ms=duration_ms)


def _cleanup_budget(settings: SyncSettings) -> float | None:
    return CLEANUP_SECONDS if settings.deadline_seconds is not None else None


async def sync_scopes_in_runtime(
    rt: Runtime,
    planned: list[tuple[Scope, AccountTarget]],
    executions: ExecutionIndex,
    *,
    run_id: str,
    server_ids: list[str] | None = None,
    progress: SyncProgress | None = None,
    results: dict[Scope, ScopeResult],
) -> None:
    """Every planned scope concurrently in this event loop, each result put in ``results`` as it
    finishes (so a deadline that cuts the rest short loses none of the finished ones)."""

    from syncengine.discovery import DrsFirst

    drs_first = DrsFirst(len(planned))

    async def run_scope(scope: Scope, account: AccountTarget) -> None:
        with structlog.contextvars.bound_contextvars(account_id=scope.account_id, region=scope.region):
            result = await _sync_one_scope(
                rt, scope, account, executions, run_id=run_id, server_ids=server_ids, first_answer=drs_first.scope()
            )
        results[scope] = result
        if progress is not None:
            progress.advance(result)

    async with anyio.create_task_group() as tg:
        for scope, account in planned:
            tg.start_soon(run_scope, scope, account)


async def _run(
    rt: Runtime,
    *,
    full: bool,
    account_id: str | None = None,
    region: str | None = None,
    server_ids: list[str] | None = None,
    progress: SyncProgress | None = None,
    targets: list[AccountTarget] | None = None,
) -> SyncReport:
    """One run. ``targets``, when the caller already read them, saves reading them again."""
    run_id = uuid.uuid4().hex[:16]
    started_iso = utc_now_iso()
    started = time.monotonic()
    structlog.contextvars.bind_contextvars(run_id=run_id)
    if full:
        await _acquire_full_sync_lease(rt, run_id)
    results: dict[Scope, ScopeResult] = {}
    planned: list[tuple[Scope, AccountTarget]] = []
    run_errors: list[ScopeError] = []
    removed = RemovedScopes()
    setup_done = False
    try:
        with deadline_scope(rt.settings) as deadline:
            try:
                if targets is None:
                    targets = await load_targets(rt.aws, rt.dynamo, rt.settings)
                planned = plan_scopes(targets, rt.settings, account_id=account_id, region=region)
                if progress is not None:
                    progress.start(len(planned))
                executions = await load_execution_index(rt.dynamo, rt.settings.tables.execution_history)
                setup_done = True
            except AwsError as exc:
                run_errors.append(ScopeError(account_id or "", region or "", exc.error_type, str(exc)))
                log.error("sync_setup_failed", error_type=exc.error_type, error=str(exc))
            else:
                from syncengine.shards import run_in_processes, shard_by_account, worker_count

                workers = worker_count(rt.settings, len(planned)) if server_ids is None else 1
                if workers > 1:
                    shards = shard_by_account(planned, workers)
                    await run_in_processes(rt, shards, executions, run_id=run_id, progress=progress, results=results)
                else:
                    await sync_scopes_in_runtime(
                        rt, planned, executions, run_id=run_id, server_ids=server_ids, progress=progress,
                        results=results,
                    )
                if full and not planned:
                    # Nothing configured at all is far likelier a wrong or emptied table than the
                    # intent to drop every account: the run fails and removes nothing.
                    run_errors.append(ScopeError("", "", "NoScopesConfigured", NO_SCOPES_MESSAGE))
                    log.error("sync_no_scopes_configured", table=rt.settings.tables.target_accounts)
                elif full:
                    # Only here: this run read the target-accounts table successfully.
                    await _remove_unconfigured_scopes(rt, planned, targets, removed)
        if deadline.cancelled_caught and not setup_done:
            run_errors.append(
                ScopeError(account_id or "", region or "", "DeadlineExceeded",
                           "the run's deadline passed while loading accounts and execution history")
            )
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_cleanup_budget(rt.settings)):
            for scope, _account in planned:
                if scope not in results:
                    results[scope] = ScopeResult(
                        scope,
                        ScopeOutcome.SKIPPED,
                        error=ScopeError(
                            scope.account_id, scope.region, "DeadlineExceeded",
                            "the run's deadline passed before this scope started",
                        ),
                    )
            ordered = [results[scope] for scope, _ in planned]
            report = SyncReport.from_results(
                ordered,
                duration_ms=int((time.monotonic() - started) * 1000),
                started_at=started_iso,
                finished_at=utc_now_iso(),
                run_id=run_id,
                extra_errors=tuple(run_errors),
            )
            report = dataclasses.replace(
                report,
                scopes_removed=removed.scopes,
                instances_deleted=report.instances_deleted + removed.records,
            )
            await _finish_run(rt, report, full=full)
            structlog.contextvars.unbind_contextvars("run_id")
    return report


async def _acquire_full_sync_lease(rt: Runtime, run_id: str) -> None:
    """The full-sync lease, until this run's deadline plus a margin; a held lease skips the run
    (counted, so a schedule that keeps being skipped shows)."""
    try:
        seconds = lease_seconds(rt.settings, rt.settings.deadline_seconds)
        await rt.status.acquire_full_sync_lease(run_id, seconds=seconds)
    except SyncInProgressError as exc:
        rt.metrics.emit({m.SYNCS_SKIPPED: 1}, reason="FullSyncLeaseHeld", holder=exc.holder)
        log.info("full_sync_skipped", reason="lease held", holder=exc.holder)
        raise


@dataclass
class RemovedScopes:
    """What a full sync deleted of scopes that are no longer configured."""

    scopes: int = 0
    records: int = 0


async def _remove_unconfigured_scopes(
    rt: Runtime, planned: list[tuple[Scope, AccountTarget]], targets: list[AccountTarget], removed: RemovedScopes
) -> None:
    """Delete the records and status of every scope with a status item that the configuration
    just read no longer names (an inactive or removed account, a removed region). An account
    whose item is malformed keeps all its scopes until it is fixed. Records go first: a scope
    whose records could not all be deleted keeps its status item, so the next full sync retries."""
    configured = {scope for scope, _ in planned}
    keep = {t.account_id for t in targets if t.config_error}
    try:
        known = await rt.status.scope_statuses()
        for status in known:
            scope = Scope(status.account_id, status.region)
            if scope in configured or scope.account_id in keep:
                continue
            records = await rt.store.delete_scope_records(scope)
            removed.records += records
            if await rt.status.remove_scope(scope):
                removed.scopes += 1
                log.info("scope_removed", account_id=scope.account_id, region=scope.region, records=records)
    except AwsError as exc:
        log.error("scope_removal_failed", error_type=exc.error_type, error=str(exc))


async def _finish_run(rt: Runtime, report: SyncReport, *, full: bool) -> None:
    try:
        await rt.status.write_run(report, full=full)
    except AwsError as exc:
        log.error("run_status_write_failed", error=str(exc))
    if full:
        try:
            await rt.status.release_full_sync_lease(report.run_id)
        except AwsError as exc:
            log.error("full_sync_lease_release_failed", error=str(exc))
    rt.metrics.emit(
        {
            m.SYNC_DURATION: report.duration_ms,
            m.INSTANCES_UPDATED: report.instances_updated,
            m.INSTANCES_UNCHANGED: report.instances_unchanged,
            m.INSTANCES_DELETED: report.instances_deleted,
            m.SCOPES_SYNCED: report.scopes_synced,
            m.SCOPES_FAILED: report.scopes_failed,
            m.SCOPES_NOT_ENABLED: report.scopes_not_enabled,
            m.SCOPES_REMOVED: report.scopes_removed,
            m.SYNCS_SKIPPED: sum(1 for r in report.scopes if r.error is not None and r.error.error_type == "ScopeBusy"),
            m.SYNC_ERRORS: report.scopes_failed + (1 if report.scopes_synced == 0 and report.errors else 0),
            m.THROTTLE_RETRIES: rt.stats.throttle_retries,
            m.DYNAMODB_THROTTLES: rt.stats.dynamodb_throttles,
            **({m.FULL_SYNC_HEARTBEAT: 1} if full and _heartbeat(report) else {}),
        },
        runId=report.run_id,
        full=full,
    )
    # The one canonical summary line of the run.
    log.info(
        "sync_finished",
        status=report.status.value,
        full=full,
        scopes=len(report.scopes),
        scopes_synced=report.scopes_synced,
        scopes_failed=report.scopes_failed,
        scopes_not_enabled=report.scopes_not_enabled,
        scopes_removed=report.scopes_removed,
        instances_found=report.instances_found,
        instances_updated=report.instances_updated,
        instances_unchanged=report.instances_unchanged,
        instances_deleted=report.instances_deleted,
        duration_ms=report.duration_ms,
        aws_calls=sum(rt.stats.calls.values()),
        throttle_retries=rt.stats.throttle_retries,
        assume_role_calls=rt.stats.assume_role_calls,
    )


def _heartbeat(report: SyncReport) -> bool:
    """A full sync that finished and synced at least one scope (a scope failing in every run is
    the sync-error alarm's business; a heartbeat that stops means the syncs stopped)."""
    return report.scopes_synced > 0


async def _require_configured_scope(
    rt: Runtime, account_id: str | None, region: str | None
) -> list[AccountTarget]:
    """A scoped sync must name an account and region that a full sync would cover: otherwise the
    caller made a mistake, and an empty "SUCCESS" would hide it."""
    targets = await load_targets(rt.aws, rt.dynamo, rt.settings)
    if plan_scopes(targets, rt.settings, account_id=account_id, region=region):
        return targets
    if account_id and not any(t.account_id == account_id for t in targets):
        raise InvalidRequestError(f"Account {account_id} is not an active target account.")
    where = f"account {account_id}" if account_id else "any target account"
    raise InvalidRequestError(f"Region {region} is not configured for {where}.")


# -- public API ----------------------------------------------------------------------------------


async def sync_all(
    settings: SyncSettings,
    *,
    account_id: str | None = None,
    region: str | None = None,
    progress: SyncProgress | None = None,
    session: aioboto3.Session | None = None,
) -> SyncReport:
    """Sync every account and region (a full sync, holding the full-sync lease), or only those
    matching ``account_id`` and/or ``region`` (a scoped sync, which takes scope leases only).

    Raises ``SyncInProgressError`` when another full sync holds the lease.
    """
    if account_id is not None:
        validate_account_id(account_id)
    if region is not None:
        validate_region(region)
    full = account_id is None and region is None
    async with open_runtime(settings, session=session) as rt:
        if full and settings.fanout != "off":
            from syncengine.fanout import start_fanout

            if (fanned_out := await start_fanout(rt)) is not None:
                return fanned_out
        targets = None if full else await _require_configured_scope(rt, account_id, region)
        return await _run(rt, full=full, account_id=account_id, region=region, progress=progress, targets=targets)


async def sync_scope(
    settings: SyncSettings,
    account_id: str,
    region: str,
    server_ids: Iterable[str] | None = None,
    *,
    session: aioboto3.Session | None = None,
) -> SyncReport:
    """Sync one account/region; with ``server_ids`` only those servers (a wave's), and
    reconciliation then touches only those servers' records."""
    validate_account_id(account_id)
    validate_region(region)
    ids = None if server_ids is None else [validate_source_server_id(sid) for sid in dict.fromkeys(server_ids)]
    async with open_runtime(settings, session=session) as rt:
        targets = await _require_configured_scope(rt, account_id, region)
        return await _run(
            rt, full=False, account_id=account_id, region=region, server_ids=ids, targets=targets
        )


async def sync_scope_in_runtime(
    rt: Runtime, scope: Scope, server_ids: list[str] | None, *, targets: list[AccountTarget]
) -> SyncReport:
    """``sync_scope`` inside an open runtime, with the targets already read (the refresh
    function syncs every scope of one batch in one runtime). Same lease, same reconciliation."""
    return await _run(
        rt, full=False, account_id=scope.account_id, region=scope.region, server_ids=server_ids, targets=targets
    )


async def get_sync_status(settings: SyncSettings, *, session: aioboto3.Session | None = None) -> SyncStatus:
    async with open_runtime(settings, session=session) as rt:
        return await rt.status.sync_status()


async def get_cached_records(
    settings: SyncSettings, server_ids: Iterable[str], *, session: aioboto3.Session | None = None
) -> list[dict[str, Any]]:
    """Cached records of these source servers (absent servers have no recovery instance)."""
    async with open_runtime(settings, session=session) as rt:
        return await rt.store.get_records(server_ids)


async def get_records_by_execution(
    settings: SyncSettings, execution_id: str, *, session: aioboto3.Session | None = None
) -> list[dict[str, Any]]:
    """Cached records of the recovery instances an execution launched (no DRS call)."""
    async with open_runtime(settings, session=session) as rt:
        return await rt.store.records_by_execution(execution_id)


__all__ = [
    "Runtime",
    "SyncEngineError",
    "SyncProgress",
    "deadline_from_lambda",
    "get_cached_records",
    "get_records_by_execution",
    "get_sync_status",
    "open_runtime",
    "run_blocking",
    "sync_all",
    "sync_scope",
    "sync_scope_in_runtime",
]
