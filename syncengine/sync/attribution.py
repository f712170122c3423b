"""Which of a scope's recovery instances a sync attributes (reads their execution-index keys for,
resolves and, if anything differs, writes), so that a steady-state sync pays for what changed,
not for the estate (issue 24; docs/EXECUTION-INDEX.md, "Reads on a sync's path").

Records are built without attribution (``NOT_ATTRIBUTED``); ``ScopeAttribution`` picks those that
need it, reads their keys (as soon as DRS has listed the scope's recovery instances for those the
listing and the cache already show, after discovery for the rest) and resolves them with the
rules of ``syncengine.tables.execution_index.lookup`` unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from syncengine.core.models import RecoveryInstanceRecord
from syncengine.sync.discovery import ScopeDiscovery
from syncengine.tables.cache import CachedEntry
from syncengine.tables.execution_index.items import fallback_keys, job_key, recovery_instance_key, server_key
from syncengine.tables.execution_index.lookup import ExecutionIndex, ExecutionSource, Recheck
from syncengine.tables.records import observed_hash, record_content

if TYPE_CHECKING:  # pragma: no cover
    from syncengine.runtime import Runtime

# Records are built before their attribution is known (``ScopeAttribution`` adds it).
NOT_ATTRIBUTED = ExecutionIndex()


class ScopeAttribution:
    """Which of a scope's recovery instances have their execution-index keys read, and what was
    read: a steady-state sync pays for what changed, not for the estate.

    A record is attributed again (its keys read, ``resolve`` run, written if anything differs)
    when it is new or DRS names another recovery instance for its server, when what DRS and EC2
    say of it changed (the observed part of ``contentHash``), when its hash predates that split,
    or when ``Recheck`` says its attribution may have changed unseen: one of its keys is in the
    index's change log since the scope was last attributed (a rebuild found an execution naming
    its job, a wave's refresh named its recovery instance), the log cannot tell, or it is not
    attributed by job and young enough that its job's unknown marker may still ask for an early
    rebuild. Every other record is left as cached: not read, not written, counted unchanged.
    Attribution by job and recovery instance never changes by itself (ids of one launch), and
    ``inferred`` changes only through a key the log lists."""

    def __init__(self, executions: ExecutionSource, recheck: Recheck, region: str):
        self.executions = executions
        self.recheck = recheck
        self.region = region
        self.cached: dict[str, CachedEntry] = {}
        self.index = ExecutionIndex()
        # Source servers whose recovery instances' keys were read (their records are resolved).
        self.read_for: set[str] = set()

    def wanted_from_listing(self, recovery_instance: Mapping[str, Any]) -> bool:
        """Whether DRS's listing and the cache alone show that this instance needs its keys."""
        entry = self.cached.get(str(recovery_instance.get("sourceServerID") or ""))
        if entry is None or entry.observed_hash is None:
            return True
        if entry.recovery_instance_id != recovery_instance.get("recoveryInstanceID"):
            return True
        return self._may_have_changed(entry, _keys_of_listing(recovery_instance, self.region))

    def wanted(self, record: RecoveryInstanceRecord) -> bool:
        """Whether a built record (not yet attributed) needs its keys read."""
        entry = self.cached.get(record.source_server_id)
        if entry is None or entry.observed_hash is None:
            return True
        if entry.observed_at > record.observed_at:
            return False  # a newer observation is cached: nothing will be written
        if entry.observed_hash != observed_hash(record_content(record)):
            return True
        return self._may_have_changed(entry, _keys_of_record(record))

    def _may_have_changed(self, entry: CachedEntry, keys: list[str]) -> bool:
        recheck = self.recheck
        if recheck.keys is None:
            return True
        if entry.attribution_kind != "j" and entry.observed_at > recheck.pending_after * 1000:
            return True
        return any(key in recheck.keys for key in keys)

    async def read(self, rt: Runtime, recovery_instances: Sequence[Mapping[str, Any]]) -> None:
        if not recovery_instances:
            return
        found = await self.executions.for_instances(rt.dynamo, self.region, recovery_instances)
        self.index = _merged(self.index, found)
        self.read_for.update(str(ri.get("sourceServerID") or "") for ri in recovery_instances)

    async def attribute(
        self, rt: Runtime, records: list[RecoveryInstanceRecord], discovery: ScopeDiscovery
    ) -> list[RecoveryInstanceRecord]:
        """The records to write (attributed; ``write_records`` still skips those equal to the
        cache): those that needed their keys, read now for the ones the listing did not show."""
        wanted = [r for r in records if r.source_server_id in self.read_for or self.wanted(r)]
        late = {r.source_server_id for r in wanted} - self.read_for
        if late:
            await self.read(rt, [ri for ri in discovery.recovery_instances if ri.get("sourceServerID") in late])
        return [self._attributed(record) for record in wanted]

    def _attributed(self, record: RecoveryInstanceRecord) -> RecoveryInstanceRecord:
        match = self.index.resolve(
            job_id=record.job_id,
            recovery_instance_id=record.recovery_instance_id,
            source_server_id=record.source_server_id,
            region=self.region,
        )
        if match is None:
            return record
        return dataclasses.replace(
            record,
            source_execution_id=match.execution_id,
            source_plan_name=match.plan_name,
            attribution=match.attribution.value,
        )


def _merged(read: ExecutionIndex, found: ExecutionIndex) -> ExecutionIndex:
    """What a scope has read so far and what it just read. Never a copy of a whole index: an
    in-memory source (the first sync's Scan) answers every scope with the same object, and 400
    scopes each copying its maps held 1.5 GB instead of 0.7 GB in a cold sync of 50,000."""
    if found is read or not (read.by_job or read.by_recovery_instance or read.by_server_region):
        return found
    return ExecutionIndex(
        {**read.by_job, **found.by_job},
        {**read.by_recovery_instance, **found.by_recovery_instance},
        {**read.by_server_region, **found.by_server_region},
    )


def _keys_of_listing(recovery_instance: Mapping[str, Any], region: str) -> list[str]:
    job = recovery_instance.get("jobID")
    return [*([job_key(str(job))] if job else []), *fallback_keys(recovery_instance, region)]


def _keys_of_record(record: RecoveryInstanceRecord) -> list[str]:
    keys = [recovery_instance_key(record.recovery_instance_id), server_key(record.source_server_id, record.region)]
    return [job_key(record.job_id), *keys] if record.job_id else keys
