"""Our index of the orchestration's execution history (the ``execution-index`` table): every read
and write of it (docs/EXECUTION-INDEX.md; ``syncengine.sync.execution_sync`` decides when).

The history (``execution-history``) belongs to the orchestration and can only be scanned whole or
read by execution id. This table holds, persisted, the three maps of ``ExecutionIndex``: one item
per launch job (``job#<jobId>``), per recovery instance (``ri#<id>``) and per source server and
region (``srv#<serverId>#<region>``), each naming the most recent execution (by ``startTime``,
ties by ``executionId``) that lists it; markers for jobs no execution named when first seen
(``job#<jobId>`` with ``firstSeen`` and no execution); and ``meta#state``, the index's own state,
including ``activeExecutions``: the executions not yet finished (``executions.is_active``) as the last
rebuild saw them, kept current by every refresh, so "what is running now" needs no Scan.

Reads: a scope's keys (``lookup``), the state and the change log. Writes: a refresh by execution
id (a Query of the history on its partition key, then conditional puts), unknown-job markers, and
the full rebuild (the only Scan of the history), claimed by a conditional update.

The change log (``meta#changes``: which keys were written when) is ``syncengine.tables.execution_index.changes``;
every writer of keys here logs them there first.

Every write of a key keeps "most recent wins": refreshes use a conditional put; a rebuild writes
in batches only keys absent or older when it read them, then replays every refresh logged since
shortly before its claim, so a refresh racing a rebuild is never lost.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncengine.core.concurrency import run_concurrently
from syncengine.core.errors import AwsError, ExecutionNotFoundError
from syncengine.core.logging import get_logger
from syncengine.dynamodb.seam import (
    BATCH_GET_MAX,
    BATCH_WRITE_MAX,
    Dynamo,
    chunked,
    from_item,
)
from syncengine.tables.execution_index.changes import CHANGE_LOG_RETENTION_SECONDS, CHANGES_KEY, ChangeLog, KeyChanges
from syncengine.tables.execution_index.items import (
    KEY,
    entries,
    entry_item,
    entry_ref,
    first_keys,
    index_of,
    job_key,
    order,
    second_keys,
)
from syncengine.tables.execution_index.lookup import ExecutionIndex, ExecutionRef, is_active
from syncengine.tables.orchestration import load_execution_items, scan_execution_history

log = get_logger(__name__)

STATE_KEY = "meta#state"
FIRST_SEEN = "firstSeen"
ACTIVE = "activeExecutions"
# A refresh logged up to this long before a rebuild's claim is replayed after the rebuild's writes:
# a refresh lives inside one Lambda invocation (at most 900 s).
REPLAY_MARGIN_SECONDS = 900.0
# A claimed rebuild that neither finished nor released its claim (its process died) blocks others
# this long.
CLAIM_SECONDS = 900.0

# An unknown-job marker (no executionId) is older than any execution.
_NEWER_CONDITION = (
    "attribute_not_exists(#key) OR attribute_not_exists(#eid) OR #start < :start OR (#start = :start AND #eid < :eid)"
)
_NEWER_NAMES = {"#key": KEY, "#start": "startTime", "#eid": "executionId"}


@dataclass(frozen=True)
class Lookup:
    """What a scope read: the index of its keys; the job keys of its recovery instances that
    the table has no item for (``unknown``); the unknown-job markers read (key -> first seen)."""

    index: ExecutionIndex
    unknown: list[str]
    markers: dict[str, float]


@dataclass
class RebuildReport:
    """What one rebuild did: history items scanned, keys computed and written, refreshes replayed."""

    history_items: int = 0
    keys: int = 0
    written: int = 0
    replayed: int = 0


class ExecutionIndexTable:
    """Reads and writes of the ``execution-index`` table (and the history reads that feed it)."""

    def __init__(self, dynamo: Dynamo, table: str, history_table: str):
        self.dynamo = dynamo
        self.table = table
        self.history_table = history_table
        self.change_log = ChangeLog(dynamo, table)

    # -- reads -------------------------------------------------------------------------------------

    async def get(self, keys: Iterable[str]) -> dict[str, ExecutionRef]:
        """The entries of these keys that name an execution (absent keys and markers absent)."""
        return (await self.read(keys))[0]

    async def read(self, keys: Iterable[str]) -> tuple[dict[str, ExecutionRef], dict[str, float]]:
        """The items of these keys (BatchGetItem, 100 keys a call): the entries that name an
        execution, and the unknown-job markers (key -> when the job was first seen unknown)."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, ExecutionRef] = {}
        markers: dict[str, float] = {}

        async def fetch(batch: list[str]) -> None:
            for item in await self.dynamo.batch_get(self.table, [{KEY: {"S": key}} for key in batch]):
                if item.get("executionId"):
                    found[str(item[KEY])] = entry_ref(item)
                else:
                    markers[str(item[KEY])] = float(item.get(FIRST_SEEN) or 0)

        await run_concurrently(functools.partial(fetch, batch) for batch in chunked(unique, BATCH_GET_MAX))
        return found, markers

    async def lookup(self, region: str, recovery_instances: Sequence[Mapping[str, Any]]) -> Lookup:
        """The part of the index that resolves these recovery instances of ``region`` exactly as
        the whole index would: their job keys first; the recovery-instance and server keys only
        for those whose job names no execution (at most two rounds of BatchGetItem)."""
        found, markers = await self.read(first_keys(region, recovery_instances))
        second = second_keys(region, recovery_instances, found)
        if second:
            found.update((await self.read(second))[0])
        jobs = {job_key(str(ri["jobID"])) for ri in recovery_instances if ri.get("jobID")}
        unknown = sorted(jobs - set(found) - set(markers))
        return Lookup(index_of(found), unknown, markers)

    async def state(self) -> dict[str, Any] | None:
        """The ``meta#state`` item (strongly consistent), None before the first rebuild or refresh."""
        response = await self.dynamo.call(
            "get_item", TableName=self.table, Key={KEY: {"S": STATE_KEY}}, ConsistentRead=True
        )
        item = response.get("Item")
        return from_item(item) if item else None

    async def state_and_changes(self) -> tuple[dict[str, Any] | None, KeyChanges]:
        """``state()`` and the change log, in one strongly consistent BatchGetItem."""
        keys = [{KEY: {"S": STATE_KEY}}, {KEY: {"S": CHANGES_KEY}}]
        found = {str(item[KEY]): item for item in await self.dynamo.batch_get(self.table, keys, ConsistentRead=True)}
        return found.get(STATE_KEY), KeyChanges.from_item(found.get(CHANGES_KEY))

    # -- writes ------------------------------------------------------------------------------------

    async def put_latest(self, key: str, ref: ExecutionRef) -> bool:
        """Write ``key`` -> ``ref`` only if the stored entry is absent or older; False when a newer
        (or the same) execution is stored already."""
        written = await self.dynamo.write_if(
            "put_item",
            TableName=self.table,
            Item=entry_item(key, ref),
            ConditionExpression=_NEWER_CONDITION,
            ExpressionAttributeNames=_NEWER_NAMES,
            ExpressionAttributeValues={":start": {"N": str(ref.start_time)}, ":eid": {"S": ref.execution_id}},
        )
        return written is not None

    async def put_all_latest(self, found: Mapping[str, ExecutionRef]) -> int:
        written = 0

        async def put(key: str, ref: ExecutionRef) -> None:
            nonlocal written
            written += await self.put_latest(key, ref)

        await run_concurrently(functools.partial(put, key, ref) for key, ref in found.items())
        return written

    async def mark_unknown(self, keys: Sequence[str], now: float) -> None:
        """Markers for job keys no execution named when first seen (``firstSeen``), so the same
        unknown job asks for at most one rebuild. Batched: a positive entry a racing writer put
        meanwhile may be overwritten, which the next rebuild repairs (a marker is older than any
        execution), the index never naming a wrong execution meanwhile."""
        markers = [{"PutRequest": {"Item": {KEY: {"S": key}, FIRST_SEEN: {"N": str(now)}}}} for key in keys]
        for batch in chunked(markers, BATCH_WRITE_MAX):
            await self.dynamo.batch_write(self.table, batch)

    async def refresh(self, execution_id: str, items: Sequence[Mapping[str, Any]] | None = None) -> int:
        """Bring the index up to date with one execution: its items (``items`` when the caller
        read them already, else a Query of the history on its key; ``ExecutionNotFoundError``
        when it has none). Logged in the state item before any put, so a rebuild running
        meanwhile replays it. Returns the keys written."""
        if items is None:
            items = await load_execution_items(self.dynamo, self.history_table, execution_id)
        await self._log_refresh(execution_id)
        return await self._apply(execution_id, items)

    async def _apply(self, execution_id: str, items: Sequence[Mapping[str, Any]] | None = None) -> int:
        if items is None:
            items = await load_execution_items(self.dynamo, self.history_table, execution_id)
        found = entries(ExecutionIndex.from_items(items))
        logged = await self.change_log.log_changes(list(found), time.time())
        written = await self.put_all_latest(found)
        await self.change_log.changes_written(logged, time.time())
        await self.set_active(execution_id, any(is_active(item) for item in items))
        return written

    async def set_active(self, execution_id: str, active: bool) -> None:
        """Add ``execution_id`` to ``activeExecutions`` (running) or take it out (finished)."""
        await self.dynamo.call(
            "update_item",
            TableName=self.table,
            Key={KEY: {"S": STATE_KEY}},
            UpdateExpression=f"{'ADD' if active else 'DELETE'} #active :id",
            ExpressionAttributeNames={"#active": ACTIVE},
            ExpressionAttributeValues={":id": {"SS": [execution_id]}},
        )

    async def active_executions(self) -> set[str] | None:
        """The executions running now as far as the index knows; None before its first rebuild
        (the caller must then look at the history itself)."""
        state = await self.state()
        if not state or state.get("lastRebuildTime") is None:
            return None
        return {str(execution_id) for execution_id in state.get(ACTIVE) or ()}

    async def _log_refresh(self, execution_id: str) -> None:
        await self.dynamo.call(
            "update_item",
            TableName=self.table,
            Key={KEY: {"S": STATE_KEY}},
            UpdateExpression="ADD #log :entry",
            ExpressionAttributeNames={"#log": "refreshLog"},
            ExpressionAttributeValues={":entry": {"SS": [f"{int(time.time())}#{execution_id}"]}},
        )

    # -- rebuild -----------------------------------------------------------------------------------

    async def claim_rebuild(self, now: float, every_seconds: float, *, early: bool = False) -> bool:
        """Claim the rebuild if none ran for ``every_seconds`` (an ``early`` one: if no early one
        ran for that long) and no other is running: one conditional update, so two syncs never
        both rebuild."""
        last = "lastEarlyRebuildTime" if early else "lastRebuildTime"
        written = await self.dynamo.write_if(
            "update_item",
            TableName=self.table,
            Key={KEY: {"S": STATE_KEY}},
            UpdateExpression="SET #claimed = :now" + (", #last = :now" if early else ""),
            ConditionExpression=(
                "(attribute_not_exists(#last) OR #last <= :due) "
                "AND (attribute_not_exists(#claimed) OR #claimed <= :stale)"
            ),
            ExpressionAttributeNames={"#claimed": "rebuildClaimedAt", "#last": last},
            ExpressionAttributeValues={
                ":now": {"N": str(now)},
                ":due": {"N": str(now - every_seconds)},
                ":stale": {"N": str(now - CLAIM_SECONDS)},
            },
        )
        return written is not None

    async def release_claim(self, claimed_at: float) -> None:
        """Give up our claim (a failed rebuild): the next sync may try again at once."""
        await self.dynamo.write_if(
            "update_item",
            TableName=self.table,
            Key={KEY: {"S": STATE_KEY}},
            UpdateExpression="REMOVE #claimed",
            ConditionExpression="#claimed = :ours",
            ExpressionAttributeNames={"#claimed": "rebuildClaimedAt"},
            ExpressionAttributeValues={":ours": {"N": str(claimed_at)}},
        )

    async def rebuild(
        self, claimed_at: float, index: ExecutionIndex | None = None, active: set[str] | None = None
    ) -> RebuildReport:
        """The full rebuild (claimed at ``claimed_at``): ``index`` and ``active`` (the running
        executions) when the caller scanned the history already, else one Scan of it; then the
        keys absent or older in the table are written in batches, the running executions set, the
        refreshes logged since shortly before the claim replayed, and the state recorded."""
        report = RebuildReport()
        if index is None:
            history = await scan_execution_history(self.dynamo, self.history_table)
            report.history_items = len(history)
            index, active = ExecutionIndex.from_items(history), active_ids(history)
        computed = entries(index)
        report.keys = len(computed)
        stored = await self.get(computed)
        stale = [(k, ref) for k, ref in computed.items() if k not in stored or order(stored[k]) < order(ref)]
        logged = await self.change_log.log_changes([k for k, _ in stale], time.time())
        await self._write_batches(stale)
        await self.change_log.changes_written(logged, time.time())
        report.written = len(stale)
        if active is not None:
            await self._set_active_all(active)
        report.replayed = await self._replay(claimed_at)
        await self._record_rebuild(claimed_at, report)
        await self.change_log.prune_changes(time.time() - CHANGE_LOG_RETENTION_SECONDS)
        return report

    async def _set_active_all(self, active: set[str]) -> None:
        """The rebuild's view of what runs now (a refresh replayed after it corrects a racer)."""
        update = "SET #active = :ids" if active else "REMOVE #active"
        values = {":ids": {"SS": sorted(active)}} if active else None
        await self.dynamo.call(
            "update_item",
            TableName=self.table,
            Key={KEY: {"S": STATE_KEY}},
            UpdateExpression=update,
            ExpressionAttributeNames={"#active": ACTIVE},
            **({"ExpressionAttributeValues": values} if values else {}),
        )

    async def _write_batches(self, found: Sequence[tuple[str, ExecutionRef]]) -> None:
        async def write(batch: list[tuple[str, ExecutionRef]]) -> None:
            await self.dynamo.batch_write(self.table, [{"PutRequest": {"Item": entry_item(k, r)}} for k, r in batch])

        await run_concurrently(functools.partial(write, batch) for batch in chunked(found, BATCH_WRITE_MAX))

    async def _replay(self, claimed_at: float) -> int:
        """Re-apply (conditionally) every refresh logged since ``claimed_at - REPLAY_MARGIN``: a
        refresh that wrote between this rebuild's read and its batch writes may have been
        overwritten by an older entry. Older log entries are pruned."""
        state = await self.state() or {}
        since = claimed_at - REPLAY_MARGIN_SECONDS
        recent: set[str] = set()
        old: list[str] = []
        for entry in state.get("refreshLog") or []:
            logged, _, execution_id = str(entry).partition("#")
            if _as_float(logged) >= since:
                recent.add(execution_id)
            else:
                old.append(str(entry))

        async def replay(execution_id: str) -> None:
            try:
                await self._apply(execution_id)
            except (AwsError, ExecutionNotFoundError) as exc:  # deleted since: nothing to keep
                log.warning("execution_index_replay_failed", execution_id=execution_id, error=str(exc))

        await run_concurrently(functools.partial(replay, eid) for eid in sorted(recent))
        if old:
            await self.dynamo.call(
                "update_item",
                TableName=self.table,
                Key={KEY: {"S": STATE_KEY}},
                UpdateExpression="DELETE #log :old",
                ExpressionAttributeNames={"#log": "refreshLog"},
                ExpressionAttributeValues={":old": {"SS": old}},
            )
        return len(recent)

    async def _record_rebuild(self, claimed_at: float, report: RebuildReport) -> None:
        await self.dynamo.call(
            "update_item",
            TableName=self.table,
            Key={KEY: {"S": STATE_KEY}},
            UpdateExpression="SET #built = :claimed, #keys = :keys REMOVE #claimed",
            ExpressionAttributeNames={"#built": "lastRebuildTime", "#keys": "keys", "#claimed": "rebuildClaimedAt"},
            ExpressionAttributeValues={":claimed": {"N": str(claimed_at)}, ":keys": {"N": str(report.keys)}},
        )


def active_ids(history: Iterable[Mapping[str, Any]]) -> set[str]:
    return {str(item["executionId"]) for item in history if is_active(item) and item.get("executionId")}


def _as_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0
