"""The DynamoDB cache of recovery instances: every item mapping lives here.

Writes are change-aware (a record whose content hash equals the cached one is not written
again), batched (25 unique keys per BatchWriteItem, several in flight) and scoped: reconciliation
deletes only records of a scope whose sync succeeded. Reads are batch gets and index queries;
nothing here scans the cache.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from syncengine.core.concurrency import run_concurrently
from syncengine.core.logging import get_logger
from syncengine.core.models import RecoveryInstanceRecord, Scope
from syncengine.dynamodb.seam import BATCH_GET_MAX, BATCH_WRITE_MAX, Dynamo, chunked, from_item
from syncengine.tables.records import (
    newer,
    public_record,
    record_content,
    record_hash,
    record_to_item,
    split_record_hash,
)

log = get_logger(__name__)

EXECUTION_INDEX = "sourceExecutionId-index"
SCOPE_INDEX = "scopeKey-index"
EC2_INSTANCE_INDEX = "ec2InstanceId-index"


@dataclass(frozen=True)
class CachedEntry:
    """What reconciliation and change detection need of a cached record (from the scope index)."""

    source_server_id: str
    recovery_instance_id: str
    content_hash: str
    observed_at: int

    @property
    def observed_hash(self) -> str | None:
        """The digest of what DRS and EC2 said (None for a hash of the older, single form)."""
        return split_record_hash(self.content_hash)[0]

    @property
    def attribution_kind(self) -> str | None:
        """How the record was attributed (``records.ATTRIBUTION_KINDS``' letters), None if unknown."""
        return split_record_hash(self.content_hash)[1]


@dataclass(frozen=True)
class InstanceOwner:
    """Which cached record holds an EC2 instance (from the EC2 instance index)."""

    ec2_instance_id: str
    source_server_id: str
    scope_key: str


@dataclass(frozen=True)
class WriteOutcome:
    updated: int
    unchanged: int


class CacheStore:
    """Reads and writes of the ``recovery-instances`` table."""

    def __init__(self, dynamo: Dynamo, table: str, *, write_concurrency: int = 8):
        self.dynamo = dynamo
        self.table = table
        self.write_concurrency = write_concurrency
        # Batch writes in flight for the whole run (every scope's), see ``_batch_write``.
        self._write_slots = anyio.CapacityLimiter(write_concurrency)

    # -- reads -----------------------------------------------------------------------------------

    async def scope_entries(self, scope: Scope) -> dict[str, CachedEntry]:
        """The cached records of one scope, from the scope index (keys, hashes, observation times)."""
        entries: dict[str, CachedEntry] = {}
        pages = self.dynamo.paginate(
            "query",
            TableName=self.table,
            IndexName=SCOPE_INDEX,
            KeyConditionExpression="#scope = :scope",
            ExpressionAttributeNames={
                "#scope": "scopeKey",
                "#sid": "sourceServerId",
                "#rid": "recoveryInstanceId",
                "#hash": "contentHash",
                "#obs": "observedAt",
            },
            ExpressionAttributeValues={":scope": {"S": scope.key}},
            ProjectionExpression="#sid, #rid, #hash, #obs",
        )
        async for raw in pages:
            item = from_item(raw)
            server_id = item["sourceServerId"]
            entries[server_id] = CachedEntry(
                server_id,
                item.get("recoveryInstanceId", ""),
                item.get("contentHash", ""),
                int(item.get("observedAt", 0)),
            )
        return entries

    async def scope_server_tags(self, scope: Scope) -> dict[str, dict[str, str]]:
        """sourceServerId -> sourceServerTags for one scope (tag-selected protection groups)."""
        tags: dict[str, dict[str, str]] = {}
        pages = self.dynamo.paginate(
            "query",
            TableName=self.table,
            IndexName=SCOPE_INDEX,
            KeyConditionExpression="#scope = :scope",
            ExpressionAttributeNames={"#scope": "scopeKey", "#sid": "sourceServerId", "#tags": "sourceServerTags"},
            ExpressionAttributeValues={":scope": {"S": scope.key}},
            ProjectionExpression="#sid, #tags",
        )
        async for raw in pages:
            item = from_item(raw)
            tags[item["sourceServerId"]] = dict(item.get("sourceServerTags") or {})
        return tags

    async def scope_records(self, scope: Scope) -> list[dict[str, Any]]:
        """The whole cached records of one scope (the scope index's keys, then the records)."""
        return await self.get_records(sorted(await self.scope_entries(scope)))

    async def get_records(self, server_ids: Iterable[str], *, consistent: bool = False) -> list[dict[str, Any]]:
        """Records of these source servers (BatchGetItem, 100 keys a call, several in flight);
        servers with no record are simply absent from the result."""
        unique = list(dict.fromkeys(sid for sid in server_ids if sid))
        results: list[dict[str, Any]] = []

        async def fetch(batch: list[str]) -> None:
            keys = [{"sourceServerId": {"S": sid}} for sid in batch]
            found = await self.dynamo.batch_get(self.table, keys, ConsistentRead=consistent)
            results.extend(public_record(item) for item in found)

        await run_concurrently(functools.partial(fetch, batch) for batch in chunked(unique, BATCH_GET_MAX))
        order = {sid: i for i, sid in enumerate(unique)}
        results.sort(key=lambda r: order.get(r["sourceServerId"], 0))
        return results

    async def records_by_execution(self, execution_id: str) -> list[dict[str, Any]]:
        """Records whose recovery instance was launched by this execution (the execution index)."""
        pages = self.dynamo.paginate(
            "query",
            TableName=self.table,
            IndexName=EXECUTION_INDEX,
            KeyConditionExpression="#exec = :exec",
            ExpressionAttributeNames={"#exec": "sourceExecutionId"},
            ExpressionAttributeValues={":exec": {"S": execution_id}},
        )
        return [public_record(from_item(raw)) async for raw in pages]

    async def owners_of_ec2_instances(self, instance_ids: Iterable[str]) -> list[InstanceOwner]:
        """The cached records holding these EC2 instances (one index query per id, several in
        flight); an instance no record holds is simply absent. DynamoDB only: no AWS call."""
        owners: list[InstanceOwner] = []

        async def lookup(instance_id: str) -> None:
            pages = self.dynamo.paginate(
                "query",
                TableName=self.table,
                IndexName=EC2_INSTANCE_INDEX,
                KeyConditionExpression="#ec2 = :ec2",
                ExpressionAttributeNames={"#ec2": "ec2InstanceId", "#sid": "sourceServerId", "#scope": "scopeKey"},
                ExpressionAttributeValues={":ec2": {"S": instance_id}},
                ProjectionExpression="#sid, #scope",
            )
            async for raw in pages:
                item = from_item(raw)
                owners.append(InstanceOwner(instance_id, item["sourceServerId"], item.get("scopeKey", "")))

        unique = list(dict.fromkeys(i for i in instance_ids if i))
        await run_concurrently(functools.partial(lookup, instance_id) for instance_id in unique)
        return owners

    # -- writes ----------------------------------------------------------------------------------

    async def write_records(
        self,
        records: Sequence[RecoveryInstanceRecord],
        cached: Mapping[str, CachedEntry],
        *,
        last_sync_time: str,
    ) -> WriteOutcome:
        """Write the records whose content changed; skip those equal to the cache.

        A record older than the cached observation is skipped too. This is a second line only:
        between reading ``cached`` and the unconditional batch puts another writer could slip in,
        which is why syncs of one scope are serialised by the scope lease (``syncengine.tables.status``).
        """
        changed: list[tuple[RecoveryInstanceRecord, str]] = []
        unchanged = 0
        for record in newest_per_server(records):
            digest = record_hash(record_content(record))
            entry = cached.get(record.source_server_id)
            if entry is not None and (entry.content_hash == digest or entry.observed_at > record.observed_at):
                unchanged += 1
                continue
            changed.append((record, digest))

        def items(batch: list[tuple[RecoveryInstanceRecord, str]]) -> list[dict[str, Any]]:
            return [{"PutRequest": {"Item": record_to_item(r, last_sync_time, digest)}} for r, digest in batch]

        await self._batch_write(changed, items)
        return WriteOutcome(updated=len(changed), unchanged=unchanged)

    async def delete_stale(self, scope: Scope, entries: Iterable[CachedEntry]) -> int:
        """Reconciliation's deletes: one conditional DeleteItem per record, several in flight.

        The entries come from the scope index, which is eventually consistent: by the time we
        delete, the record may have been rewritten (a newer observation, another scope's sync).
        So each delete holds only while the item is still the one this sync decided to delete;
        BatchWriteItem cannot carry a condition, hence single deletes. Returns how many went."""
        limiter = anyio.CapacityLimiter(self.write_concurrency)
        deleted = 0

        async def delete(entry: CachedEntry) -> None:
            nonlocal deleted
            async with limiter:
                if await self._delete_if_unchanged(scope, entry):
                    deleted += 1

        await run_concurrently(functools.partial(delete, entry) for entry in entries if entry.source_server_id)
        return deleted

    async def _delete_if_unchanged(self, scope: Scope, entry: CachedEntry) -> bool:
        written = await self.dynamo.write_if(
            "delete_item",
            TableName=self.table,
            Key={"sourceServerId": {"S": entry.source_server_id}},
            # Only the record reconciliation saw in the index (see _unchanged_condition).
            **_unchanged_condition(scope, entry),
        )
        if written is None:
            log.info("stale_delete_skipped", source_server_id=entry.source_server_id, reason="record changed")
            return False
        return True

    async def delete_scope_records(self, scope: Scope) -> int:
        """Delete every record of a scope that is no longer configured (a removed account or
        region); returns how many were deleted. Each delete is conditional on the item still
        belonging to that scope: the scope index is eventually consistent, and a key it names may
        meanwhile hold another scope's record."""
        server_ids = list(await self.scope_entries(scope))
        limiter = anyio.CapacityLimiter(self.write_concurrency)
        deleted = 0

        async def delete(server_id: str) -> None:
            nonlocal deleted
            async with limiter:
                written = await self.dynamo.write_if(
                    "delete_item",
                    TableName=self.table,
                    Key={"sourceServerId": {"S": server_id}},
                    # Still this scope's record: the index named the key, another scope may own it now.
                    ConditionExpression="#scope = :scope",
                    ExpressionAttributeNames={"#scope": "scopeKey"},
                    ExpressionAttributeValues={":scope": {"S": scope.key}},
                )
                if written is None:
                    return
            deleted += 1

        await run_concurrently(functools.partial(delete, sid) for sid in server_ids)
        return deleted

    async def delete_terminated(self, source_server_id: str, recovery_instance_id: str) -> bool:
        """Delete a server's record after its recovery instance was terminated; False when the
        record now holds another instance (or is gone)."""
        written = await self.dynamo.write_if(
            "delete_item",
            TableName=self.table,
            Key={"sourceServerId": {"S": source_server_id}},
            # A sync may have replaced the record with the server's newer recovery instance
            # since it was read: delete only the record of the terminated one.
            ConditionExpression="#rid = :rid",
            ExpressionAttributeNames={"#rid": "recoveryInstanceId"},
            ExpressionAttributeValues={":rid": {"S": recovery_instance_id}},
        )
        return written is not None

    async def _batch_write(
        self,
        changed: list[tuple[RecoveryInstanceRecord, str]],
        items: Callable[[list[tuple[RecoveryInstanceRecord, str]]], list[dict[str, Any]]],
    ) -> None:
        """The records in batches of 25, at most ``write_concurrency`` batches of the whole run in
        flight; each batch's items are built only once it may be sent. Built up front, every
        scope's items waited at once behind DynamoDB (~4.6 KB of attribute-value dicts per record:
        the largest share of a cold sync's memory, ``benchmarks/RESULTS.md``, issue 24)."""

        async def send(batch: list[tuple[RecoveryInstanceRecord, str]]) -> None:
            async with self._write_slots:
                await self.dynamo.batch_write(self.table, items(batch))

        await run_concurrently(functools.partial(send, batch) for batch in chunked(changed, BATCH_WRITE_MAX))


def newest_per_server(records: Iterable[RecoveryInstanceRecord]) -> list[RecoveryInstanceRecord]:
    """One record per source server: a newer recovery instance replaces the older one."""
    newest: dict[str, RecoveryInstanceRecord] = {}
    for record in records:
        current = newest.get(record.source_server_id)
        if current is None or newer(record, current):
            newest[record.source_server_id] = record
    return list(newest.values())


def _unchanged_condition(scope: Scope, entry: CachedEntry) -> dict[str, Any]:
    """Delete only the record reconciliation saw in the index: still in this scope and still
    carrying the observation it was judged by. A record rewritten since (a newer observation) or
    moved to another scope is someone else's truth; a record already gone needs no delete."""
    names = {"#scope": "scopeKey", "#obs": "observedAt"}
    values: dict[str, Any] = {":scope": {"S": scope.key}}
    if entry.observed_at:
        values[":obs"] = {"N": str(entry.observed_at)}
        return {
            # Same scope, same observation: the item the sync decided to delete.
            "ConditionExpression": "#scope = :scope AND #obs = :obs",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    return {
        # A record written before observation times were kept has none: it must still have none
        # (any rewrite since adds one) and still be in this scope.
        "ConditionExpression": "#scope = :scope AND attribute_not_exists(#obs)",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
