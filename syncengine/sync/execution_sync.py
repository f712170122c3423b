"""How a sync, a wave and a terminate use the execution index (``syncengine.tables.execution_index.table``
owns the table; docs/EXECUTION-INDEX.md).

- ``open_for_sync``, before a run's scopes: the stored index and its change log (each scope then
  reads the keys of the records it must attribute, ``StoredExecutions``: new or changed ones,
  those whose keys the log lists since the scope last attributed, and young ones not attributed
  by job; ``StoredExecutions.recheck``); or, before the index was ever built, one Scan of the history as every
  sync did before the index (``ScannedExecutions``), which the run's rebuild writes out.
- ``StoredExecutions.for_instances``, per scope: the scope's keys; a job the index has no item for
  is marked, and the run asks once for an early rebuild (at most one per
  ``EARLY_REBUILD_SECONDS`` for all syncs), run before the asking scope's records are built, so
  an execution the orchestration recorded without our hearing of it (no wave event) is
  attributed by its job at once. A failed early rebuild only leaves the job unattributed until
  the next one.
- ``rebuild_if_due``, after a full run's scopes and after a fan-out sweep's sending (and beside
  the scopes of the first sync ever, whatever its kind, which writes out the Scan it made before
  them, inside their throttle waits; ``settle_unknown`` after them): the periodic rebuild,
  claimed; never fails a scope. Targeted syncs (events, waves, fan-out slices) never try it: an
  event's refresh never pays for a Scan of the history, and thousands of slices of one fan-out
  run do not each try the claim.
- ``refresh_quietly``: one execution read by key into the index (wave completion, terminate).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncengine.core.config import SyncSettings
from syncengine.core.errors import AwsError, ExecutionNotFoundError
from syncengine.core.logging import get_logger
from syncengine.dynamodb.seam import Dynamo
from syncengine.tables.execution_index.items import job_key
from syncengine.tables.execution_index.lookup import ExecutionIndex, Recheck
from syncengine.tables.execution_index.table import ExecutionIndexTable, KeyChanges, Lookup, RebuildReport, active_ids
from syncengine.tables.orchestration import scan_execution_history

log = get_logger(__name__)

# Jobs no execution names (launched by hand, or by an execution we have not heard of) ask for a
# rebuild at most this often.
EARLY_REBUILD_SECONDS = 300.0
# A record written without job attribution is attributed again by every sync for this long (unless a
# rebuild came after it): its job's marker asks for the early rebuild only when it is read, and
# three periods leave every 5-minute sync a chance to make the ask after a refused claim.
PENDING_MARKER_SECONDS = 3 * EARLY_REBUILD_SECONDS


@dataclass
class EarlyClaim:
    """Whether a scope of this run (of this process, for a run in shard workers) already asked for
    the early rebuild: the run asks once, not once per scope. A fan-out batch of hundreds of
    scopes meeting jobs launched outside the orchestration (a drill from the DRS console) made
    hundreds of conditional writes to the index's one state item, all but the first failing; a
    single item takes at most 1,000 write units a second
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html)."""

    asked: bool = False


@dataclass(frozen=True)
class StoredExecutions:
    """A sync's execution source once the index exists: each scope reads the keys of its own
    recovery instances. Picklable (table names and a time), for shard worker processes."""

    table: str
    history_table: str
    # lastRebuildTime when the run opened the index: a marker not newer than it is settled (a
    # rebuild since looked for the job and did not find it).
    rebuilt_at: float
    # When the run read the index's state and change log (before the read), and the log.
    read_at: float = 0.0
    changes: KeyChanges = field(default_factory=KeyChanges, compare=False)
    early: EarlyClaim = field(default_factory=EarlyClaim, compare=False)

    def recheck(self, stamp: float | None) -> Recheck:
        """The records whose keys the change log lists since ``stamp`` (all when it cannot tell),
        and those not attributed by job written since the last rebuild and within
        ``PENDING_MARKER_SECONDS`` (a marker of theirs may still ask for its early rebuild)."""
        return Recheck(
            keys=self.changes.since_stamp(stamp),
            pending_after=max(self.rebuilt_at, self.read_at - PENDING_MARKER_SECONDS),
            stamp=self.read_at,
        )

    async def for_instances(
        self, dynamo: Dynamo, region: str, recovery_instances: Sequence[Mapping[str, Any]]
    ) -> ExecutionIndex:
        table = ExecutionIndexTable(dynamo, self.table, self.history_table)
        found = await table.lookup(region, recovery_instances)
        if not self._asks_for_rebuild(found):
            return found.index
        now = time.time()
        try:
            if found.unknown:
                await table.mark_unknown(found.unknown, now)
            if self.early.asked:
                return found.index  # the run's one ask was made; the marker waits for the next
            self.early.asked = True
            if not await table.claim_rebuild(now, EARLY_REBUILD_SECONDS, early=True):
                return found.index
        except AwsError as exc:
            log.warning("execution_index_mark_failed", error_type=exc.error_type, error=str(exc))
            return found.index
        if await _rebuild(table, now, None, early=True) is None:
            return found.index
        return (await table.lookup(region, recovery_instances)).index

    def _asks_for_rebuild(self, found: Lookup) -> bool:
        # A marker written before a rebuild's claim was covered by its Scan (which follows the claim).
        return bool(found.unknown) or any(first > self.rebuilt_at for first in found.markers.values())


@dataclass
class ScannedExecutions:
    """The first sync's source (no index yet): the in-memory index of the Scan it made before its
    scopes. The jobs its scopes meet that no execution names are noted (in this process; a shard
    worker's are lost, and asked about again by the next sync), so its rebuild marks them settled
    and the next sync asks for no early rebuild for them."""

    index: ExecutionIndex
    scanned_at: float
    unknown: set[str] = field(default_factory=set)
    # The executions the Scan saw running (``activeExecutions`` of the index's state).
    active: set[str] = field(default_factory=set)

    async def for_instances(
        self, dynamo: Dynamo, region: str, recovery_instances: Sequence[Mapping[str, Any]]
    ) -> ExecutionIndex:
        jobs = {str(ri["jobID"]) for ri in recovery_instances if ri.get("jobID")}
        self.unknown.update(job_key(job) for job in jobs if job not in self.index.by_job)
        return self.index

    def recheck(self, stamp: float | None) -> Recheck:
        """Everything (the index is in memory); the scopes keep their stamps, which stay true: a
        record attributed from the Scan is at least as fresh as the stamp says."""
        return Recheck()


@dataclass(frozen=True)
class SyncExecutions:
    """What a run attributes with (``source``), and, on the first sync ever (no index yet), the
    Scan it made instead (``scanned``), which its rebuild writes out."""

    source: StoredExecutions | ScannedExecutions
    scanned: ScannedExecutions | None = None


def index_table(dynamo: Dynamo, settings: SyncSettings) -> ExecutionIndexTable:
    return ExecutionIndexTable(dynamo, settings.tables.execution_index, settings.tables.execution_history)


async def open_for_sync(dynamo: Dynamo, settings: SyncSettings) -> SyncExecutions:
    """Before a run's scopes: the stored index once it was ever built (one GetItem); otherwise
    (the first sync, or an index table that cannot be read) one Scan of the history, as every sync
    did before the index existed, so no record is written without its attribution."""
    table = index_table(dynamo, settings)
    read_at = time.time()
    try:
        state, changes = await table.state_and_changes()
    except AwsError as exc:
        log.warning("execution_index_unreadable", error_type=exc.error_type, error=str(exc))
        state, changes = None, KeyChanges()
    if state and state.get("lastRebuildTime") is not None:
        rebuilt_at = float(state["lastRebuildTime"])
        return SyncExecutions(StoredExecutions(table.table, table.history_table, rebuilt_at, read_at, changes))
    scanned_at = time.time()
    history = await scan_execution_history(dynamo, settings.tables.execution_history)
    scanned = ScannedExecutions(ExecutionIndex.from_items(history), scanned_at, active=active_ids(history))
    return SyncExecutions(scanned, scanned=scanned)


async def rebuild_if_due(
    dynamo: Dynamo, settings: SyncSettings, executions: SyncExecutions | None = None
) -> RebuildReport | None:
    """After a full run's scopes (or a fan-out sweep's sending): the rebuild, if this caller
    claims it (none for ``execution_index_rebuild_seconds``, none running), from the run's own
    Scan when it made one. Never raises an AWS error."""
    table = index_table(dynamo, settings)
    claimed_at = time.time()
    try:
        if not await table.claim_rebuild(claimed_at, settings.execution_index_rebuild_seconds):
            return None
    except AwsError as exc:
        log.error("execution_index_rebuild_failed", error_type=exc.error_type, error=str(exc))
        return None
    return await _rebuild(table, claimed_at, None if executions is None else executions.scanned)


async def _rebuild(
    table: ExecutionIndexTable, claimed_at: float, scanned: ScannedExecutions | None, *, early: bool = False
) -> RebuildReport | None:
    """A claimed rebuild; on failure logged, its claim released (the next sync tries again)."""
    try:
        report = await (
            table.rebuild(claimed_at) if scanned is None else table.rebuild(claimed_at, scanned.index, scanned.active)
        )
    except AwsError as exc:
        log.error("execution_index_rebuild_failed", error_type=exc.error_type, error=str(exc), early=early)
        try:
            await table.release_claim(claimed_at)
        except AwsError as release_error:
            log.warning("execution_index_claim_release_failed", error=str(release_error))
        return None
    log.info("execution_index_rebuilt", early=early, **vars(report))
    return report


async def settle_unknown(dynamo: Dynamo, settings: SyncSettings, scanned: ScannedExecutions) -> None:
    """After the first sync's scopes, once its rebuild wrote the index: the jobs its scopes met that
    no execution names, as settled markers (seen unknown by a Scan older than the rebuild's claim),
    so the next sync asks for no early rebuild for them. A failure only costs that early rebuild."""
    if not scanned.unknown:
        return
    try:
        await index_table(dynamo, settings).mark_unknown(sorted(scanned.unknown), scanned.scanned_at)
    except AwsError as exc:
        log.warning("execution_index_mark_failed", error_type=exc.error_type, error=str(exc))


async def refresh_quietly(dynamo: Dynamo, settings: SyncSettings, execution_id: str, items: Any = None) -> None:
    """``ExecutionIndexTable.refresh`` for callers whose own work must not fail on it (wave sync,
    terminate): a failure is logged, and the next rebuild catches up."""
    try:
        written = await index_table(dynamo, settings).refresh(execution_id, items)
    except (AwsError, ExecutionNotFoundError) as exc:
        log.warning("execution_index_refresh_failed", execution_id=execution_id, error=str(exc))
        return
    log.debug("execution_index_refreshed", execution_id=execution_id, written=written)
