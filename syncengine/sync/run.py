"""One run: plan the scopes once, sync them, finish the run.

A run reads the target accounts (unless its caller already did), plans its scopes and opens the
execution index (``syncengine.tables.execution_index.table``: each scope reads its own keys), then syncs every
scope (``syncengine.sync.pipeline``) in this event loop. A full sync holds the full-sync lease and, having read
the configuration successfully, removes the scopes it no longer names. After the scopes, a run may
rebuild the execution index (at most once per ``EXECUTION_INDEX_REBUILD_SECONDS``, claimed). The
run's deadline is a cancel scope; the report, the run's status, the metrics and the one summary
log line are written after it, shielded, so a run cut short still says what it did.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from syncengine.core import metrics as m
from syncengine.core.concurrency import run_concurrently
from syncengine.core.errors import AwsError, InvalidRequestError, SyncInProgressError
from syncengine.core.logging import get_logger, structlog
from syncengine.core.models import AccountTarget, Scope, ScopeError, ScopeOutcome, ScopeResult, SyncReport, utc_now_iso
from syncengine.runtime import Runtime, SyncProgress, deadline_scope, lease_seconds, shielded_cleanup
from syncengine.sync.execution_sync import SyncExecutions, open_for_sync, rebuild_if_due, settle_unknown
from syncengine.sync.pipeline import BUSY_ERROR_TYPE, is_busy, sync_scopes
from syncengine.sync.terminate_completion import follow_terminations
from syncengine.tables.accounts import load_targets, plan_scopes
from syncengine.tables.execution_index.lookup import ExecutionSource
from syncengine.tables.region_discovery import targeted_since_reconciled
from syncengine.tables.status import family_owner

log = get_logger(__name__)

NO_SCOPES_MESSAGE = (
    "No active target account and no current account are configured: nothing was synced and no "
    "cached record was removed."
)
SETUP_DEADLINE_MESSAGE = "the run's deadline passed while loading accounts and execution history"
UNSTARTED_MESSAGE = "the run's deadline passed before this scope started"
Planned = list[tuple[Scope, AccountTarget]]


@dataclass
class RemovedScopes:
    """What a full sync deleted of scopes that are no longer configured."""

    scopes: int = 0
    records: int = 0


@dataclass
class RunRequest:
    """What one run syncs: everything (``full``), or the scopes matching account and/or region,
    optionally only some servers."""

    full: bool
    account_id: str | None = None
    region: str | None = None
    server_ids: list[str] | None = None
    progress: SyncProgress | None = None
    # False for a fan-out worker's slice of a full sync: the fan-out run's record reports it, and
    # as a scoped run it would hide the real newest scoped/wave/event sync (``lastScopedSync``).
    record_run: bool = True
    # The fan-out run this run is a slice of: its scope leases are named after it, so a second
    # delivery of the same message gives way instead of syncing the scope again (``StatusStore.acquire_scope_lease``).
    fanout_run: str | None = None
    # When the run's deadline falls (``anyio.current_time()``), for a caller whose deadline began
    # before the run (an API request: its setup counts); None: ``deadline_seconds`` from the start.
    deadline_at: float | None = None


@dataclass
class RunState:
    """What a run has found out so far; the report is built from it, however the run ended."""

    request: RunRequest
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started_at: str = field(default_factory=utc_now_iso)
    started: float = field(default_factory=time.monotonic)
    planned: Planned = field(default_factory=list)
    results: dict[Scope, ScopeResult] = field(default_factory=dict)
    errors: list[ScopeError] = field(default_factory=list)
    removed: RemovedScopes = field(default_factory=RemovedScopes)
    setup_done: bool = False

    def __post_init__(self) -> None:
        self.run_id = family_owner(self.request.fanout_run, self.run_id)

    def run_error(self, error_type: str, message: str) -> None:
        self.errors.append(ScopeError(self.request.account_id or "", self.request.region or "", error_type, message))


async def run(
    rt: Runtime,
    request: RunRequest,
    *,
    targets: list[AccountTarget] | None = None,
    executions: SyncExecutions | None = None,
) -> SyncReport:
    """One run. ``targets`` and ``executions``, when the caller already read them (the refresh
    function, once per batch of scopes), save reading them again."""
    state = RunState(request)
    structlog.contextvars.bind_contextvars(run_id=state.run_id)
    if request.full:
        await _acquire_full_sync_lease(rt, state.run_id)
    try:
        with deadline_scope(rt.settings, at=request.deadline_at) as deadline:
            await _plan_and_sync(rt, state, targets, executions)
        if deadline.cancelled_caught and not state.setup_done:
            state.run_error("DeadlineExceeded", SETUP_DEADLINE_MESSAGE)
    finally:
        with shielded_cleanup(rt.settings):
            report = _report(state)
            await finish_run(rt, report, full=request.full, record=request.record_run)
            structlog.contextvars.unbind_contextvars("run_id")
    return report


async def _plan_and_sync(
    rt: Runtime, state: RunState, targets: list[AccountTarget] | None, executions: SyncExecutions | None
) -> None:
    request = state.request
    try:
        if targets is None:
            # A full sync makes stale region probes again (syncengine.tables.region_discovery); a
            # scoped sync is not narrowed by them (``require_configured_scope``).
            probe_with = rt.regions if request.full else None
            targets = await load_targets(
                rt.aws, rt.dynamo, rt.settings, probe_with=probe_with, stored_probes=request.full
            )
        state.planned = plan_scopes(targets, rt.settings, account_id=request.account_id, region=request.region)
        if request.progress is not None:
            request.progress.start(len(state.planned))
        if executions is None:
            executions = await open_for_sync(rt.dynamo, rt.settings)
        state.setup_done = True
    except AwsError as exc:
        state.run_error(exc.error_type, str(exc))
        log.error("sync_setup_failed", error_type=exc.error_type, error=str(exc))
        return
    if executions.scanned is not None:
        await _sync_writing_first_index(rt, state, executions)
    else:
        await _sync_planned(rt, state, executions.source)
    if request.full:
        await _remove_after_full_sync(rt, state, targets)
        # Terminate jobs followed until complete (``instancesTerminated`` on the execution).
        await follow_terminations(rt)
    # After the scopes (never delaying the page's data); its failure fails no scope. Targeted runs
    # leave the periodic rebuild to full runs and the fan-out sweep (execution_sync's docstring).
    if request.full and executions.scanned is None:
        await rebuild_if_due(rt.dynamo, rt.settings, executions)


async def _sync_writing_first_index(rt: Runtime, state: RunState, executions: SyncExecutions) -> None:
    """The first sync ever: its Scan of the history is in hand before the scopes, so the index is
    written beside them (in their waits for DRS) instead of after them; the jobs they met that no
    execution names are settled once they are done."""
    written: list[Any] = []

    async def first_index() -> None:
        written.append(await rebuild_if_due(rt.dynamo, rt.settings, executions))

    sync = functools.partial(_sync_planned, rt, state, executions.source)
    await run_concurrently((sync, first_index))
    if written and written[0] is not None and executions.scanned is not None:
        await settle_unknown(rt.dynamo, rt.settings, executions.scanned)


async def _remove_after_full_sync(rt: Runtime, state: RunState, targets: list[AccountTarget]) -> None:
    if not state.planned:
        # Nothing configured at all is far likelier a wrong or emptied table than the intent to
        # drop every account: the run fails and removes nothing.
        state.errors.append(ScopeError("", "", "NoScopesConfigured", NO_SCOPES_MESSAGE))
        log.error("sync_no_scopes_configured", table=rt.settings.tables.target_accounts)
    else:
        # Only here: this run read the target-accounts table successfully.
        await remove_unconfigured_scopes(rt, state.planned, targets, state.removed)


async def _sync_planned(rt: Runtime, state: RunState, executions: ExecutionSource) -> None:
    request = state.request
    await sync_scopes(
        rt,
        state.planned,
        executions,
        run_id=state.run_id,
        server_ids=request.server_ids,
        progress=request.progress,
        results=state.results,
    )


def _report(state: RunState) -> SyncReport:
    """The run's report: every planned scope, those the deadline left unstarted as skipped."""
    for scope, _account in state.planned:
        if scope not in state.results:
            error = ScopeError(scope.account_id, scope.region, "DeadlineExceeded", UNSTARTED_MESSAGE)
            state.results[scope] = ScopeResult(scope, ScopeOutcome.SKIPPED, error=error)
    report = SyncReport.from_results(
        [state.results[scope] for scope, _ in state.planned],
        duration_ms=int((time.monotonic() - state.started) * 1000),
        started_at=state.started_at,
        finished_at=utc_now_iso(),
        run_id=state.run_id,
        extra_errors=tuple(state.errors),
    )
    return dataclasses.replace(
        report,
        scopes_removed=state.removed.scopes,
        instances_deleted=report.instances_deleted + state.removed.records,
    )


def setup_deadline_report(account_id: str | None, region: str | None) -> SyncReport:
    """The report of a run whose caller's deadline passed before it could start (the runtime's
    setup, the scope's check): failed with ``DeadlineExceeded``, nothing touched."""
    log.warning("sync_deadline_before_run", account_id=account_id, region=region)
    error = ScopeError(account_id or "", region or "", "DeadlineExceeded", SETUP_DEADLINE_MESSAGE)
    now = utc_now_iso()
    return SyncReport.from_results([], duration_ms=0, started_at=now, finished_at=now, extra_errors=(error,))


def deadline_skipped_report(scope: Scope, message: str) -> SyncReport:
    """The report of a scope a caller's deadline left no time to start (nothing touched)."""
    error = ScopeError(scope.account_id, scope.region, "DeadlineExceeded", message)
    now = utc_now_iso()
    return SyncReport.from_results(
        [ScopeResult(scope, ScopeOutcome.SKIPPED, error=error)], duration_ms=0, started_at=now, finished_at=now
    )


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


async def remove_unconfigured_scopes(
    rt: Runtime, planned: Planned, targets: list[AccountTarget], removed: RemovedScopes
) -> None:
    """Delete the records and status of every scope with a status item that the configuration
    just read no longer names (an inactive or removed account, a removed region). An account
    whose item is malformed keeps all its scopes until it is fixed. Records go first: a scope
    whose records could not all be deleted keeps its status item, so the next full sync retries."""
    configured = {scope for scope, _ in planned}
    keep = {t.account_id for t in targets if t.config_error}
    probed = {t.account_id for t in targets if t.regions_found}
    try:
        known = await rt.status.scope_statuses()
        for status in known:
            scope = Scope(status.account_id, status.region)
            if scope in configured or scope.account_id in keep:
                continue
            if scope.account_id in probed and targeted_since_reconciled(status):
                # A wave synced it after this run read the region probes: DRS is in use there
                # (syncengine.tables.region_discovery); the next full sync plans it.
                continue
            records = await rt.store.delete_scope_records(scope)
            removed.records += records
            if await rt.status.remove_scope(scope):
                removed.scopes += 1
                log.info("scope_removed", account_id=scope.account_id, region=scope.region, records=records)
    except AwsError as exc:
        log.error("scope_removal_failed", error_type=exc.error_type, error=str(exc))


async def finish_run(rt: Runtime, report: SyncReport, *, full: bool, record: bool = True) -> None:
    """The run's status (unless ``record`` is off), the full-sync lease released, its metrics and
    its summary line."""
    try:
        if record:
            await rt.status.write_run(report, full=full)
    except AwsError as exc:
        log.error("run_status_write_failed", error=str(exc))
    if full:
        try:
            await rt.status.release_full_sync_lease(report.run_id)
        except AwsError as exc:
            log.error("full_sync_lease_release_failed", error=str(exc))
    rt.metrics.emit(_run_metrics(rt, report, full=full), runId=report.run_id, full=full)
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


def _run_metrics(rt: Runtime, report: SyncReport, *, full: bool) -> dict[str, float]:
    # A scope busy with another sync is skipped, not failed: its holder syncs it. Neither is the
    # run of a busy scope alone an error.
    busy = sum(1 for r in report.scopes if is_busy(r))
    errors = [e for e in report.errors if e.error_type != BUSY_ERROR_TYPE]
    return {
        m.SYNC_DURATION: report.duration_ms,
        m.INSTANCES_UPDATED: report.instances_updated,
        m.INSTANCES_UNCHANGED: report.instances_unchanged,
        m.INSTANCES_DELETED: report.instances_deleted,
        m.SCOPES_SYNCED: report.scopes_synced,
        m.SCOPES_FAILED: report.scopes_failed,
        m.SCOPES_NOT_ENABLED: report.scopes_not_enabled,
        m.SCOPES_REMOVED: report.scopes_removed,
        m.SYNCS_SKIPPED: busy,
        m.SYNC_ERRORS: report.scopes_failed - busy + (1 if report.scopes_synced == 0 and errors else 0),
        m.THROTTLE_RETRIES: rt.stats.throttle_retries,
        m.DYNAMODB_THROTTLES: rt.stats.dynamodb_throttles,
        # A full sync that synced at least one scope (a scope failing in every run is the
        # sync-error alarm's business; a heartbeat that stops means the syncs stopped).
        **({m.FULL_SYNC_HEARTBEAT: 1} if full and report.scopes_synced > 0 else {}),
    }


async def require_configured_scope(rt: Runtime, account_id: str | None, region: str | None) -> list[AccountTarget]:
    """A scoped sync must name an account and region that a full sync would cover: otherwise the
    caller made a mistake, and an empty "SUCCESS" would hide it. Every configured region counts,
    whatever the last region probe found: DRS may have been set up there since (a first drill's
    wave sync must not wait an hour for the next probe)."""
    targets = await load_targets(rt.aws, rt.dynamo, rt.settings, stored_probes=False)
    if plan_scopes(targets, rt.settings, account_id=account_id, region=region):
        return targets
    if account_id and not any(t.account_id == account_id for t in targets):
        raise InvalidRequestError(f"Account {account_id} is not an active target account.")
    where = f"account {account_id}" if account_id else "any target account"
    raise InvalidRequestError(f"Region {region} is not configured for {where}.")
