"""The status table: per-scope status, the last run's summary, and the leases.

Layout (partition ``pk``, sort ``sk``):

* ``SCOPE`` / ``<account>#<region>``: last success, last attempt, instance count, last error,
  ``attributedAt`` (when its last successful whole-scope sync read the execution index: what the
  next one re-attributes is judged from it, ``syncengine.attribution``), and the scope lease
  (``leaseOwner``, ``leaseExpiresAt``) that serialises syncs of one scope;
* ``RUN`` / ``LATEST``: the last full run's report; ``RUN`` / ``HISTORY#<finishedAt>#<runId>``
  keeps a week of full reports (TTL); ``RUN`` / ``LAST_SCOPED``: the newest scoped, wave or
  event-driven run's report, which never replaces the full run's;
* ``LEASE`` / ``FULL_SYNC``: held by a full sync so two never overlap (the leases are
  ``syncengine.leases``, the part of this table's owner that takes and frees them).
* ``RUN`` / ``FANOUT``: the current fan-out run (``syncengine.fanout``): how many scopes it
  enqueued, how many finished (each scope counted once), and their summed results (written and
  read by ``syncengine.fanout_runs``, which this store inherits).

Reading the status is one Query on ``SCOPE`` and three GetItems: never a scan of the cache.
Health comes from the scopes: a configured scope (NOT_ENABLED ones aside) that failed its last
attempt, or has had no success for ``stale_after`` seconds, makes it ``degraded``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from syncengine.concurrency import gather
from syncengine.dynamo import BATCH_GET_MAX, Dynamo, chunked, from_item, to_attr, to_item
from syncengine.fanout_runs import RUN_PK, FanoutRuns
from syncengine.health import summarise_status, with_fanout_run
from syncengine.leases import ATTRIBUTED_AT, LEASE_ACQUIRED_AT, LEASE_WHOLE_SCOPE, SCOPE_PK, Leases
from syncengine.logging import get_logger
from syncengine.models import (
    Scope,
    ScopeResult,
    ScopeStatus,
    SyncReport,
    SyncStatus,
    utc_now_iso,
)

log = get_logger(__name__)

LATEST_SK = "LATEST"
LAST_SCOPED_SK = "LAST_SCOPED"
HISTORY_DAYS = 7
# When a successful sync last reconciled the whole scope (a full-scope sync, not a targeted one).
RECONCILED_ATTRIBUTE = "lastReconciledTime"


class StatusStore(FanoutRuns, Leases):
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

    async def scope_statuses(self) -> list[ScopeStatus]:
        statuses: list[ScopeStatus] = []
        pages = self.dynamo.paginate(
            "query",
            TableName=self.table,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": "pk"},
            ExpressionAttributeValues={":pk": {"S": SCOPE_PK}},
        )
        async for raw in pages:
            item = from_item(raw)
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
