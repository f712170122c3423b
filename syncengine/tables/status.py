"""The status table: per-scope status, the last run's summary, the leases and the fan-out run
records, all written and read by one store (``StatusStore``).

Layout (partition ``pk``, sort ``sk``):

* ``SCOPE`` / ``<account>#<region>``: last success, last attempt, instance count, last error,
  ``attributedAt`` (when its last successful whole-scope sync read the execution index: what the
  next one re-attributes is judged from it, ``syncengine.sync.attribution``), and the scope lease
  (``leaseOwner``, ``leaseExpiresAt``) that serialises syncs of one scope, so the order of
  observations is the order of writes;
* ``RUN`` / ``LATEST``: the last full run's report; ``RUN`` / ``HISTORY#<finishedAt>#<runId>``
  keeps a week of full reports (TTL); ``RUN`` / ``LAST_SCOPED``: the newest scoped, wave or
  event-driven run's report, which never replaces the full run's;
* ``LEASE`` / ``FULL_SYNC``: held by a full sync so two never overlap. A lease expires at its
  holder's deadline plus a margin, never later, so a holder killed at its timeout cannot freeze a
  scope;
* ``RUN`` / ``FANOUT`` and ``FANOUT#<runId>`` / ``PART#<n>``: the current fan-out run
  (``syncengine.sync.fanout``), counted as described below;
* ``REGIONS`` / ``<account>``: where the last region probe found DRS in use in the account
  (``regions``), the regions it asked about (``checkedRegions``), those whose probe failed (kept,
  ``failedRegions``) and when (``checkedAt``, epoch seconds): ``syncengine.tables.region_discovery``.

Reading the status is one Query on ``SCOPE`` and three GetItems: never a scan of the cache.
Health comes from the scopes (``syncengine.tables.health``): a configured scope (NOT_ENABLED ones
aside) that failed its last attempt, or has had no success for ``stale_after`` seconds, makes it
``degraded``.

Fan-out runs: how many scopes a run enqueued, how many finished and their summed results, counted
so that each scope counts exactly once however often SQS delivers its message, and so that no item
grows past a few KB at any number of scopes. Two levels, each counted by single-item conditional
updates (DynamoDB's item limit is 400 KB and every update is billed on the whole item; one marker
per scope on one item reached the limit near 12,000 scopes):

- **Parts** (``FANOUT#<runId>``/``PART#<n>``): the sweep splits the run's message groups into
  parts of at most ``FANOUT_PART_SCOPES`` scopes (a group never spans two parts; its messages say
  their ``part``). A part item holds its scopes' markers (``<account>#<region>``, set when
  counted), its counters and ``remaining``; a count is refused whole when any of its scopes is
  counted already (a second delivery) or the part is not this run's.
- **The run record** (``RUN``/``FANOUT``): the run's total, ``remaining`` and the summed counters
  of the parts that finished, each added once under its part's marker (``p:<n>``, refused when
  present). The update that brings ``remaining`` to 0 finishes the run.

A part that reached 0 but whose report to the run record was lost (the worker died in between) is
reported by the next count the part refuses (``report_part_if_done``): a redelivered message.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio

from syncengine.core.concurrency import gather
from syncengine.core.errors import SyncInProgressError
from syncengine.core.logging import get_logger
from syncengine.core.models import (
    Scope,
    ScopeResult,
    ScopeStatus,
    SyncReport,
    SyncStatus,
    utc_now_iso,
)
from syncengine.dynamodb.seam import BATCH_GET_MAX, BATCH_WRITE_MAX, Dynamo, chunked, from_item, to_attr, to_item
from syncengine.tables.health import summarise_status, with_fanout_run

log = get_logger(__name__)

LATEST_SK = "LATEST"
LAST_SCOPED_SK = "LAST_SCOPED"
HISTORY_DAYS = 7
# When a successful sync last reconciled the whole scope (a full-scope sync, not a targeted one).
RECONCILED_ATTRIBUTE = "lastReconciledTime"


SCOPE_PK = "SCOPE"
LEASE_PK = "LEASE"
FULL_SYNC_SK = "FULL_SYNC"
# When the scope's lease was taken (epoch ms) and whether its holder syncs the whole scope: a
# refresh that finds the scope busy learns whether the holder's read covers its event.
LEASE_ACQUIRED_AT = "leaseAcquiredAt"
LEASE_WHOLE_SCOPE = "leaseWholeScope"
_SCOPE_LEASE_NAMES = {
    "#owner": "leaseOwner",
    "#exp": "leaseExpiresAt",
    "#acct": "accountId",
    "#region": "region",
    "#acq": LEASE_ACQUIRED_AT,
    "#whole": LEASE_WHOLE_SCOPE,
}
# When the scope's records were last attributed (epoch seconds; see ``take_scope_lease``).
ATTRIBUTED_AT = "attributedAt"
# A fan-out worker's sync names its lease ``<fan-out run id>.<run id>`` (``family_owner``).
FAMILY_SEPARATOR = "."

RUN_PK = "RUN"
# One item per account: the regions its last region probe found DRS in use in.
REGIONS_PK = "REGIONS"
FANOUT_SK = "FANOUT"
# A fan-out run's part items: pk ``FANOUT#<runId>``, sk ``PART#<n>`` (n zero-padded).
FANOUT_PART_PK_PREFIX = "FANOUT#"
FANOUT_PART_SK_PREFIX = "PART#"
# The run record's marker of a part whose counts it holds: ``p:<n>``.
FANOUT_PART_MARKER_PREFIX = "p:"
# At most this many scopes in one part: with the longest scope key a part item stays under 3 KB
# (tests/unit/sync/test_fanout.py computes the worst case), and 20,000 scopes make 313 parts, whose
# markers keep the run record under 3 KB too.
FANOUT_PART_SCOPES = 64
# Scopes counted in one update at most (its condition names each scope's marker).
FANOUT_COUNT_CHUNK = 25
# Part items expire a week after their run started (the status table's TTL attribute).
FANOUT_PART_TTL_SECONDS = 7 * 86_400

FANOUT_COUNTERS = (
    "scopesSynced",
    "scopesFailed",
    "scopesNotEnabled",
    "instancesUpdated",
    "instancesUnchanged",
    "instancesDeleted",
)


def family_owner(family: str | None, run_id: str) -> str:
    """The lease owner name of a run: ``run_id``, prefixed by its fan-out run when it has one."""
    return f"{family}{FAMILY_SEPARATOR}{run_id}" if family else run_id


def lease_family(owner: str) -> str | None:
    """The fan-out run of a lease owner named by ``family_owner``, None for any other owner."""
    family, separator, _ = owner.rpartition(FAMILY_SEPARATOR)
    return family if separator and family else None


@dataclass(frozen=True)
class ScopeLease:
    """A granted scope lease, and what the scope's status item said before it was taken."""

    attributed_at: float | None = None


@dataclass(frozen=True)
class AccountRegions:
    """What an account's last region probe found: the regions to sync (DRS initialised there, or
    the probe failed there, or the scope held instances), of the ``checked`` ones, at ``checked_at``
    (epoch seconds)."""

    account_id: str
    regions: tuple[str, ...]
    checked: tuple[str, ...]
    failed: tuple[str, ...] = ()
    checked_at: float = 0.0


@dataclass(frozen=True)
class FullSyncLease:
    owner: str
    expires_at: float


@dataclass(frozen=True)
class ScopeLeaseHolder:
    """Who holds a scope's lease: its owner, since when (epoch ms; its reads of the scope start
    after it), and whether it syncs the whole scope (the sweep, a fan-out slice, a scope message)
    or only some servers (a wave, an event refresh)."""

    owner: str
    expires_at: float
    acquired_at_ms: int | None
    whole_scope: bool


def _fanout_counts(result: ScopeResult) -> dict[str, int]:
    """What one finished scope adds to its fan-out run's counters."""
    return {
        "scopesSynced": int(result.ok),
        "scopesFailed": int(not result.ok and not result.not_enabled),
        "scopesNotEnabled": int(result.not_enabled),
        "instancesUpdated": result.updated,
        "instancesUnchanged": result.unchanged,
        "instancesDeleted": result.deleted,
    }


def part_key(run_id: str, part: int) -> dict[str, Any]:
    return to_item({"pk": f"{FANOUT_PART_PK_PREFIX}{run_id}", "sk": f"{FANOUT_PART_SK_PREFIX}{part:05d}"})


def part_marker(part: int) -> str:
    return f"{FANOUT_PART_MARKER_PREFIX}{part}"


class StatusStore:
    """The status table's one store: scope status, run summaries, the leases and the fan-out run
    records."""

    def __init__(self, dynamo: Dynamo, table: str, *, lease_seconds: float = 900.0, stale_after_seconds: float = 900.0):
        self.dynamo = dynamo
        self.table = table
        # A lease's lifetime when the caller names none (a holder without a deadline).
        self.lease_seconds = lease_seconds
        self.stale_after = timedelta(seconds=stale_after_seconds)

    async def finish_scope(self, result: ScopeResult, owner: str | None) -> bool:
        """Record the scope's outcome and release its lease. With ``owner``, only if that run holds
        the lease (returns False, writing nothing, when it does not).

        A targeted result (some servers of the scope: a wave, an event refresh) is recorded apart,
        as ``lastTargetedTime``/``lastTargetedStatus``: the scope's ``status``, ``lastSuccessTime``
        and ``instanceCount`` describe its last whole-scope sync, which is what health and
        freshness are judged by."""
        now = utc_now_iso()
        names = {"#acct": "accountId", "#region": "region"}
        values: dict[str, Any] = {
            ":status": to_attr(result.outcome.value),
            ":attempt": to_attr(now),
            ":acct": to_attr(result.scope.account_id),
            ":region": to_attr(result.scope.region),
        }
        sets = ["#acct = :acct", "#region = :region"]
        removes: list[str] = []
        if result.targeted:
            names.update({"#tstatus": "lastTargetedStatus", "#tattempt": "lastTargetedTime"})
            sets += ["#tstatus = :status", "#tattempt = :attempt"]
            return await self._update_scope(result, owner, names, values, sets, removes)
        names.update({"#status": "status", "#attempt": "lastAttemptTime"})
        sets += ["#status = :status", "#attempt = :attempt"]
        _whole_scope_outcome(result, names, values, sets, removes)
        return await self._update_scope(result, owner, names, values, sets, removes)

    async def _update_scope(
        self,
        result: ScopeResult,
        owner: str | None,
        names: dict[str, str],
        values: dict[str, Any],
        sets: list[str],
        removes: list[str],
    ) -> bool:
        params: dict[str, Any] = {}
        if owner is not None:
            names.update(
                {
                    "#owner": "leaseOwner",
                    "#exp": "leaseExpiresAt",
                    "#acq": LEASE_ACQUIRED_AT,
                    "#whole": LEASE_WHOLE_SCOPE,
                }
            )
            removes += ["#owner", "#exp", "#acq", "#whole"]
            values[":owner"] = to_attr(owner)
            # Release only our own lease; if it expired and another sync took it, leave theirs.
            params["ConditionExpression"] = "#owner = :owner"
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        written = await self.dynamo.write_if(
            "update_item",
            TableName=self.table,
            Key=to_item({"pk": SCOPE_PK, "sk": result.scope.key}),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            **params,
        )
        return written is not None

    async def remove_scope(self, scope: Scope) -> bool:
        """Delete a scope's status item (a scope no longer configured). False when a sync holds
        its lease: that sync would write the item again, so the next full sync retries."""
        written = await self.dynamo.write_if(
            "delete_item",
            TableName=self.table,
            Key=to_item({"pk": SCOPE_PK, "sk": scope.key}),
            # Never under a live lease: its holder is still writing this scope.
            ConditionExpression="attribute_not_exists(#exp) OR #exp < :now",
            ExpressionAttributeNames={"#exp": "leaseExpiresAt"},
            ExpressionAttributeValues={":now": {"N": str(int(time.time()))}},
        )
        return written is not None

    async def _partition(self, pk: str) -> AsyncIterator[dict[str, Any]]:
        """Every item of one partition (``SCOPE``, ``REGIONS``), page by page."""
        pages = self.dynamo.paginate(
            "query",
            TableName=self.table,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": "pk"},
            ExpressionAttributeValues={":pk": {"S": pk}},
        )
        async for raw in pages:
            yield from_item(raw)

    async def scope_statuses(self) -> list[ScopeStatus]:
        statuses: list[ScopeStatus] = []
        async for item in self._partition(SCOPE_PK):
            scope = Scope.from_key(item["sk"])
            statuses.append(
                ScopeStatus(
                    account_id=item.get("accountId", scope.account_id),
                    region=item.get("region", scope.region),
                    status=item.get("status", "RUNNING" if item.get("leaseOwner") else "UNKNOWN"),
                    last_success_time=item.get("lastSuccessTime"),
                    last_attempt_time=item.get("lastAttemptTime"),
                    instance_count=int(item.get("instanceCount", 0)),
                    last_error=item.get("lastError"),
                    last_targeted_time=item.get("lastTargetedTime"),
                )
            )
        statuses.sort(key=lambda s: (s.account_id, s.region))
        return statuses

    async def scope_reconciled_times(self, scopes: Iterable[Scope]) -> dict[Scope, str]:
        """When each of these scopes was last reconciled by a successful full-scope sync (scopes
        never reconciled are absent). Read-only: one BatchGetItem per 100 scopes."""
        unique = list(dict.fromkeys(scopes))
        keys = [to_item({"pk": SCOPE_PK, "sk": scope.key}) for scope in unique]
        times: dict[Scope, str] = {}
        for batch in chunked(keys, BATCH_GET_MAX):
            found = await self.dynamo.batch_get(
                self.table,
                batch,
                ProjectionExpression="#sk, #reconciled",
                ExpressionAttributeNames={"#sk": "sk", "#reconciled": RECONCILED_ATTRIBUTE},
            )
            for item in found:
                value = item.get(RECONCILED_ATTRIBUTE)
                if isinstance(value, str) and value:
                    times[Scope.from_key(str(item["sk"]))] = value
        return times

    # -- region probes ---------------------------------------------------------------------------

    async def account_regions(self) -> dict[str, AccountRegions]:
        """Every account's last region probe (one Query of a few hundred bytes an account)."""
        found: dict[str, AccountRegions] = {}
        async for item in self._partition(REGIONS_PK):
            account_id = str(item["sk"])
            found[account_id] = AccountRegions(
                account_id=account_id,
                regions=tuple(str(r) for r in item.get("regions") or ()),
                checked=tuple(str(r) for r in item.get("checkedRegions") or ()),
                failed=tuple(str(r) for r in item.get("failedRegions") or ()),
                checked_at=float(item.get("checkedAt", 0)),
            )
        return found

    async def put_account_regions(self, found: AccountRegions) -> None:
        """Record an account's region probe. Only the full sync probes (one at a time, under
        its lease), so a plain put: the newest probe is the last written."""
        item = {
            "pk": REGIONS_PK,
            "sk": found.account_id,
            "accountId": found.account_id,
            "regions": list(found.regions),
            "checkedRegions": list(found.checked),
            "failedRegions": list(found.failed),
            "checkedAt": int(found.checked_at),
            "checkedAtIso": utc_now_iso(),
        }
        await self.dynamo.call("put_item", TableName=self.table, Item=to_item(item))

    async def remove_account_regions(self, account_ids: Iterable[str]) -> None:
        """Delete these accounts' region probes (accounts no longer configured), 25 a batch."""
        deletes = ({"DeleteRequest": {"Key": to_item({"pk": REGIONS_PK, "sk": a})}} for a in account_ids)
        for batch in chunked(deletes, BATCH_WRITE_MAX):
            await self.dynamo.batch_write(self.table, batch)

    # -- runs ------------------------------------------------------------------------------------

    async def write_run(self, report: SyncReport, *, full: bool) -> None:
        """A full run's report is the run summary (and its history); any other run's is kept
        apart as the last scoped sync, so a wave or event sync never hides a stopped schedule."""
        body = report.to_dict()
        finished = report.finished_at or utc_now_iso()
        if not full:
            scoped = {**body, "errors": body["errors"][:100], "lastSyncTime": finished}
            await self.dynamo.write_if(
                "put_item",
                TableName=self.table,
                Item=to_item({"pk": RUN_PK, "sk": LAST_SCOPED_SK, **scoped}),
                # Two scoped syncs finishing close together may write in either order: the
                # newest (ISO times of one format compare as strings) must stay the newest.
                ConditionExpression="attribute_not_exists(#t) OR #t <= :t",
                ExpressionAttributeNames={"#t": "lastSyncTime"},
                ExpressionAttributeValues={":t": {"S": finished}},
            )
            return
        record = {
            "status": body["status"],
            "lastSyncTime": finished,
            "startedAt": report.started_at,
            "runId": report.run_id,
            "full": full,
            "instancesUpdated": report.instances_updated,
            "instancesUnchanged": report.instances_unchanged,
            "instancesDeleted": report.instances_deleted,
            "instancesFound": report.instances_found,
            "scopesSynced": report.scopes_synced,
            "scopesFailed": report.scopes_failed,
            "scopesNotEnabled": report.scopes_not_enabled,
            "scopesRemoved": report.scopes_removed,
            "durationMs": report.duration_ms,
            # Keep the item well under 400 KB however many scopes failed.
            "errors": body["errors"][:100],
        }
        history_ttl = int(time.time()) + HISTORY_DAYS * 86400
        await self.dynamo.call(
            "put_item", TableName=self.table, Item=to_item({"pk": RUN_PK, "sk": LATEST_SK, **record})
        )
        await self.dynamo.call(
            "put_item",
            TableName=self.table,
            Item=to_item({"pk": RUN_PK, "sk": f"HISTORY#{finished}#{report.run_id}", "ttl": history_ttl, **record}),
        )

    async def latest_run(self) -> dict[str, Any] | None:
        """The last full run's summary."""
        return await self._run_item(LATEST_SK)

    async def last_scoped_run(self) -> dict[str, Any] | None:
        return await self._run_item(LAST_SCOPED_SK)

    async def _run_item(self, sk: str) -> dict[str, Any] | None:
        response = await self.dynamo.call("get_item", TableName=self.table, Key=to_item({"pk": RUN_PK, "sk": sk}))
        item = response.get("Item")
        if not item:
            return None
        return {k: v for k, v in from_item(item).items() if k not in ("pk", "sk")}

    async def sync_status(self) -> SyncStatus:
        latest, scoped, holder, scopes, fanout = await gather(
            self.latest_run, self.last_scoped_run, self.full_sync_holder, self.scope_statuses, self.fanout_run
        )
        status = summarise_status(latest, holder is not None, scopes, stale_after=self.stale_after, last_scoped=scoped)
        return with_fanout_run(status, fanout, latest_started_at=(latest or {}).get("startedAt"))

    # -- the full-sync lease ---------------------------------------------------------------------

    async def acquire_full_sync_lease(self, owner: str, *, seconds: float | None = None) -> FullSyncLease:
        now = time.time()
        expires_at = now + (seconds or self.lease_seconds)
        written = await self.dynamo.write_if(
            "put_item",
            TableName=self.table,
            Item=to_item(
                {
                    "pk": LEASE_PK,
                    "sk": FULL_SYNC_SK,
                    "owner": owner,
                    "expiresAt": int(expires_at),
                    "acquiredAt": utc_now_iso(),
                    "ttl": int(expires_at) + 86400,
                }
            ),
            # Only one full sync at a time; a lease whose holder died expires on its own; and
            # our own lease again, when a retry follows an attempt whose answer was lost.
            ConditionExpression="attribute_not_exists(#pk) OR #exp < :now OR #owner = :owner",
            ExpressionAttributeNames={"#pk": "pk", "#exp": "expiresAt", "#owner": "owner"},
            ExpressionAttributeValues={":now": {"N": str(int(now))}, ":owner": {"S": owner}},
        )
        if written is None:
            holder = await self.full_sync_holder()
            raise SyncInProgressError(
                "A full sync is already running; try again when it finishes.",
                holder=holder.owner if holder else None,
                expires_at=holder.expires_at if holder else None,
            )
        return FullSyncLease(owner, expires_at)

    async def release_full_sync_lease(self, owner: str) -> None:
        written = await self.dynamo.write_if(
            "delete_item",
            TableName=self.table,
            Key=to_item({"pk": LEASE_PK, "sk": FULL_SYNC_SK}),
            # Never release a lease that expired and was taken by another run.
            ConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":owner": {"S": owner}},
        )
        if written is None:
            log.warning("full_sync_lease_lost", owner=owner)

    async def full_sync_holder(self) -> FullSyncLease | None:
        response = await self.dynamo.call(
            "get_item", TableName=self.table, Key=to_item({"pk": LEASE_PK, "sk": FULL_SYNC_SK}), ConsistentRead=True
        )
        item = from_item(response.get("Item") or {})
        if not item or float(item.get("expiresAt", 0)) < time.time():
            return None
        return FullSyncLease(str(item.get("owner", "")), float(item["expiresAt"]))

    # -- scope leases and status -----------------------------------------------------------------

    async def acquire_scope_lease(
        self, scope: Scope, owner: str, *, wait: float, expires_at: float | None = None, whole_scope: bool = False
    ) -> bool:
        """``take_scope_lease``: whether the lease was granted."""
        lease = await self.take_scope_lease(scope, owner, wait=wait, expires_at=expires_at, whole_scope=whole_scope)
        return lease is not None

    async def take_scope_lease(
        self, scope: Scope, owner: str, *, wait: float, expires_at: float | None = None, whole_scope: bool = False
    ) -> ScopeLease | None:
        """Take the scope's lease until ``expires_at`` (epoch seconds: its holder's deadline plus
        a margin; default ``lease_seconds`` from now), waiting up to ``wait`` seconds for another
        sync of the same scope to finish; noting when, and whether for the ``whole_scope``.
        Syncs of one scope are serialised: an older observation never overwrites a newer one.

        An owner of a fan-out run (``family_owner``) waits for no other sync of the same run: that
        is a second delivery of the same message (SQS delivers at least once), already syncing the
        scope; waiting would sync it again after it, and under a rate limit wait out another
        Retry-After (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/standard-queues-at-least-once-delivery.html).
        Granted: with the item's ``ATTRIBUTED_AT`` as it was (the update returns it, no read)."""
        deadline = anyio.current_time() + wait
        delay = 0.05
        while True:
            now = time.time()
            written = await self.dynamo.write_if(
                "update_item",
                TableName=self.table,
                Key=to_item({"pk": SCOPE_PK, "sk": scope.key}),
                UpdateExpression="SET #owner = :owner, #exp = :exp, #acct = :acct, #region = :region, "
                "#acq = :acq, #whole = :whole",
                # Free, expired (its holder died), or already ours.
                ConditionExpression="attribute_not_exists(#exp) OR #exp < :now OR #owner = :owner",
                ExpressionAttributeNames=dict(_SCOPE_LEASE_NAMES),
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":acq": {"N": str(int(now * 1000))},
                    ":whole": {"BOOL": whole_scope},
                    ":exp": {"N": str(int(expires_at or now + self.lease_seconds))},
                    ":now": {"N": str(int(now))},
                    ":acct": {"S": scope.account_id},
                    ":region": {"S": scope.region},
                },
                ReturnValues="ALL_OLD",
            )
            if written is not None:
                previous = from_item(written.get("Attributes") or {}).get(ATTRIBUTED_AT)
                return ScopeLease(float(previous) if previous is not None else None)
            if anyio.current_time() + delay > deadline or await self._held_by_family(scope, owner):
                return None
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def scope_lease_holder(self, scope: Scope) -> ScopeLeaseHolder | None:
        """The scope lease's live holder (one consistent read), None when the lease is free."""
        response = await self.dynamo.call(
            "get_item",
            TableName=self.table,
            Key=to_item({"pk": SCOPE_PK, "sk": scope.key}),
            ProjectionExpression="#owner, #exp, #acq, #whole",
            ExpressionAttributeNames={
                "#owner": "leaseOwner",
                "#exp": "leaseExpiresAt",
                "#acq": LEASE_ACQUIRED_AT,
                "#whole": LEASE_WHOLE_SCOPE,
            },
            ConsistentRead=True,
        )
        item = from_item(response.get("Item") or {})
        if not item.get("leaseOwner") or float(item.get("leaseExpiresAt", 0)) < time.time():
            return None
        acquired = item.get(LEASE_ACQUIRED_AT)
        return ScopeLeaseHolder(
            owner=str(item["leaseOwner"]),
            expires_at=float(item["leaseExpiresAt"]),
            acquired_at_ms=int(acquired) if acquired is not None else None,
            whole_scope=bool(item.get(LEASE_WHOLE_SCOPE, False)),
        )

    async def _held_by_family(self, scope: Scope, owner: str) -> bool:
        """Whether another sync of ``owner``'s fan-out run holds the scope's lease (one read, only
        for a fan-out owner)."""
        family = lease_family(owner)
        if family is None:
            return False
        response = await self.dynamo.call(
            "get_item",
            TableName=self.table,
            Key=to_item({"pk": SCOPE_PK, "sk": scope.key}),
            ProjectionExpression="#owner",
            ExpressionAttributeNames={"#owner": "leaseOwner"},
            ConsistentRead=True,
        )
        holder = str(from_item(response.get("Item") or {}).get("leaseOwner", ""))
        return holder != owner and lease_family(holder) == family

    # -- fan-out runs ----------------------------------------------------------------------------

    async def start_fanout_run(
        self, run_id: str, total: int, started_at: str, *, parts: Mapping[int, int] | None = None
    ) -> None:
        """The records of a fan-out run that enqueued ``total`` scopes in ``parts`` (part -> its
        scope count; None: one part of them all): the part items first, then the run record, so a
        worker never counts in a run whose parts are missing."""
        parts = dict(parts) if parts is not None else {0: total}
        if sum(parts.values()) != total:
            raise ValueError(f"the parts hold {sum(parts.values())} scopes, the run {total}")
        expires = int(time.time()) + FANOUT_PART_TTL_SECONDS
        zero = {c: {"N": "0"} for c in FANOUT_COUNTERS}
        items = [
            {
                "PutRequest": {
                    "Item": {
                        **part_key(run_id, part),
                        **to_item({"runId": run_id, "total": size, "finished": 0, "remaining": size, "ttl": expires}),
                        **zero,
                    }
                }
            }
            for part, size in sorted(parts.items())
        ]
        for batch in chunked(items, BATCH_WRITE_MAX):
            await self.dynamo.batch_write(self.table, batch)
        record = {
            "pk": RUN_PK,
            "sk": FANOUT_SK,
            "runId": run_id,
            "total": total,
            "finished": 0,
            "remaining": total,
            "parts": len(parts),
            "startedAt": started_at,
        }
        # No condition: the new run replaces the previous run's record. Only the holder of the
        # full-sync lease starts a run, and a late message of the old run finds no part of this
        # run under its own run id: its count is refused.
        await self.dynamo.call("put_item", TableName=self.table, Item={**to_item(record), **zero})

    async def finish_fanout_scope(self, run_id: str, result: ScopeResult, *, part: int = 0) -> dict[str, Any] | None:
        """Count one finished scope of a fan-out run's part (atomic ADD); the part's counters after
        the count (``finished``, ``remaining``), with ``runRemaining`` when this count finished the
        part and the run record took its counts (0: the run's last); None when it did not count
        (another run's message, or a scope already counted)."""
        return await self.finish_fanout_scopes(run_id, [result], part=part)

    async def finish_fanout_scopes(
        self, run_id: str, results: list[ScopeResult], *, part: int = 0
    ) -> dict[str, Any] | None:
        """Count several finished scopes of one part in one update (at most
        ``FANOUT_COUNT_CHUNK``): all of them, or none when any was counted already or the part is
        not this run's (None; the caller then counts them one by one)."""
        totals = {name: 0 for name in FANOUT_COUNTERS}
        for result in results:
            for name, value in _fanout_counts(result).items():
                totals[name] += value
        # One marker attribute per counted scope on its part's item (at most FANOUT_PART_SCOPES).
        # The conditions: runId, the part is this run's; markers absent, SQS delivers at least once
        # and a scope counted twice would finish the run before its last scope did; remaining, an
        # item written before it existed is never counted.
        markers = {f"#d{i}": r.scope.key for i, r in enumerate(results)}
        adds = ", ".join(f"{name} :{name}" for name in totals)
        attributes = await self._update(
            part_key(run_id, part),
            run_id,
            UpdateExpression=f"ADD finished :n, remaining :minus_n, {adds} SET "
            + ", ".join(f"{name} = :done" for name in markers),
            ConditionExpression="runId = :run AND attribute_exists(remaining) AND "
            + " AND ".join(f"attribute_not_exists({name})" for name in markers),
            ExpressionAttributeNames=markers,
            ExpressionAttributeValues={
                ":n": {"N": str(len(results))},
                ":minus_n": {"N": str(-len(results))},
                ":done": {"BOOL": True},
                **{f":{name}": {"N": str(value)} for name, value in totals.items()},
            },
            # The part's whole item (a few KB at most): its counters as they are now, the ones this
            # count left unchanged included (an ADD of 0 need not be among UPDATED_NEW's).
            ReturnValues="ALL_NEW",
        )
        if attributes is None:
            return None
        counted = {k: attributes[k] for k in ("finished", "remaining", *FANOUT_COUNTERS) if k in attributes}
        if int(counted["remaining"]) <= 0:
            run = await self._report_part(run_id, part, counted)
            if run is not None:
                counted["runRemaining"] = run["remaining"]
        return counted

    async def report_part_if_done(self, run_id: str, part: int) -> dict[str, Any] | None:
        """A part that reached 0 but whose counts the run record lacks (its last counter died in
        between): add them now. The run record's counters after it (None: nothing to add)."""
        response = await self.dynamo.call(
            "get_item", TableName=self.table, Key=part_key(run_id, part), ConsistentRead=True
        )
        item = from_item(response.get("Item") or {})
        if item.get("runId") != run_id or int(item.get("remaining", 1)) > 0:
            return None
        counted = {k: item[k] for k in ("finished", "remaining", *FANOUT_COUNTERS) if k in item}
        return await self._report_part(run_id, part, counted)

    async def _report_part(self, run_id: str, part: int, counted: Mapping[str, Any]) -> dict[str, Any] | None:
        """Add a finished part's counts to the run record, once (its marker); the run record's
        counters after it, None when it holds them already or the run was replaced."""
        size = int(counted["finished"])
        adds = ", ".join(f"{name} :{name}" for name in FANOUT_COUNTERS)
        attributes = await self._update(
            to_item({"pk": RUN_PK, "sk": FANOUT_SK}),
            run_id,
            UpdateExpression=f"ADD finished :n, remaining :minus_n, {adds} SET #part = :done",
            ConditionExpression="runId = :run AND attribute_exists(remaining) AND attribute_not_exists(#part)",
            ExpressionAttributeNames={"#part": part_marker(part)},
            ExpressionAttributeValues={
                ":n": {"N": str(size)},
                ":minus_n": {"N": str(-size)},
                ":done": {"BOOL": True},
                **{f":{name}": {"N": str(int(counted.get(name, 0)))} for name in FANOUT_COUNTERS},
            },
            ReturnValues="UPDATED_NEW",
        )
        if attributes is None:
            return None
        return {k: v for k, v in attributes.items() if not k.startswith(FANOUT_PART_MARKER_PREFIX)}

    async def _update(self, key: dict[str, Any], run_id: str, **params: Any) -> dict[str, Any] | None:
        """An update of a fan-out record whose condition names ``:run`` (its ``runId``); the
        attributes it returns, or None when the condition refused it."""
        params["ExpressionAttributeValues"] = {**params["ExpressionAttributeValues"], ":run": {"S": run_id}}
        response = await self.dynamo.write_if("update_item", TableName=self.table, Key=key, **params)
        return None if response is None else from_item(response["Attributes"])

    async def fanout_run(self, *, consistent: bool = False) -> dict[str, Any] | None:
        """The current (or last) fan-out run's record, without its part markers (``consistent``:
        a strongly consistent read, for the worker that writes the run's summary)."""
        response = await self.dynamo.call(
            "get_item", TableName=self.table, Key=to_item({"pk": RUN_PK, "sk": FANOUT_SK}), ConsistentRead=consistent
        )
        item = response.get("Item")
        if not item:
            return None
        record = from_item(item)
        reported = {k for k in record if k.startswith(FANOUT_PART_MARKER_PREFIX)}
        run = {k: v for k, v in record.items() if k not in ("pk", "sk") and k not in reported}
        if int(run.get("remaining", 0)) > 0 and "parts" in run:
            # Unfinished: the run record holds the finished parts only; the scopes counted in the
            # others (a Query of the run's part items, their ``finished`` only) say how far it got.
            run["finished"] = int(run["finished"]) + await self._unreported_finished(str(run["runId"]), reported)
        return run

    async def _unreported_finished(self, run_id: str, reported: set[str]) -> int:
        """Scopes counted in the run's parts whose counts the run record does not hold yet."""
        finished = 0
        async for raw in self.dynamo.paginate(
            "query",
            TableName=self.table,
            KeyConditionExpression="#pk = :pk",
            ProjectionExpression="#sk, finished",
            ExpressionAttributeNames={"#pk": "pk", "#sk": "sk"},
            ExpressionAttributeValues={":pk": {"S": f"{FANOUT_PART_PK_PREFIX}{run_id}"}},
        ):
            item = from_item(raw)
            part = int(str(item["sk"]).removeprefix(FANOUT_PART_SK_PREFIX))
            if part_marker(part) not in reported:
                finished += int(item.get("finished", 0))
        return finished


def _whole_scope_outcome(
    result: ScopeResult, names: dict[str, str], values: dict[str, Any], sets: list[str], removes: list[str]
) -> None:
    """The fields a whole-scope sync's outcome sets and removes on its scope's status item."""
    now = values[":attempt"]
    if result.ok:
        names.update(
            {
                "#success": "lastSuccessTime",
                "#count": "instanceCount",
                "#err": "lastError",
                "#errtype": "lastErrorType",
            }
        )
        values.update({":success": now, ":count": to_attr(result.instances_found)})
        sets += ["#success = :success", "#count = :count"]
        removes += ["#err", "#errtype"]
        if result.reconciled:
            # What confirms a cached record (see records.confirmed_sync_time): targeted syncs
            # succeed too, but they confirm only the servers they were asked about.
            names["#reconciled"] = RECONCILED_ATTRIBUTE
            sets.append("#reconciled = :success")
        if result.reconciled and result.attributed_at is not None:
            # Every record of the scope is attributed as of this time (read back by the lease).
            names["#attributed"] = ATTRIBUTED_AT
            values[":attributed"] = to_attr(result.attributed_at)
            sets.append("#attributed = :attributed")
    elif result.not_enabled:
        # Not an error: the account has not enabled the region.
        names.update({"#err": "lastError", "#errtype": "lastErrorType"})
        removes += ["#err", "#errtype"]
    elif result.error is not None:
        names.update({"#err": "lastError", "#errtype": "lastErrorType"})
        values.update(
            {
                ":err": to_attr(result.error.message[:1000] or "unknown error"),
                ":errtype": to_attr(result.error.error_type or "Error"),
            }
        )
        sets += ["#err = :err", "#errtype = :errtype"]
