"""The status table's fan-out run record (``RUN``/``FANOUT``; the rest of that table is
``syncengine.status``, whose store inherits this): how many scopes a fan-out run enqueued, how
many finished and their summed results, and one marker attribute per counted scope, so that each
scope counts exactly once however often SQS delivers its message (``syncengine.fanout``).
"""

from __future__ import annotations

from typing import Any

from syncengine.dynamo import Dynamo, from_item, to_item
from syncengine.models import ScopeResult

RUN_PK = "RUN"  # the status table's run partition (syncengine.status)
FANOUT_SK = "FANOUT"
# The marker attribute of a scope a fan-out run has counted: ``done:<account>#<region>``.
FANOUT_DONE_PREFIX = "done:"
# Scopes counted in one update at most (its condition names each scope's marker).
FANOUT_COUNT_CHUNK = 25


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


FANOUT_COUNTERS = (
    "scopesSynced",
    "scopesFailed",
    "scopesNotEnabled",
    "instancesUpdated",
    "instancesUnchanged",
    "instancesDeleted",
)


class FanoutRuns:
    """Writes and reads the fan-out run record; ``StatusStore`` is the one that has it."""

    dynamo: Dynamo
    table: str

    async def start_fanout_run(self, run_id: str, total: int, started_at: str) -> None:
        """The run record of a fan-out run that enqueued ``total`` scope messages."""
        item = {
            "pk": RUN_PK,
            "sk": FANOUT_SK,
            "runId": run_id,
            "total": total,
            "finished": 0,
            "remaining": total,
            "startedAt": started_at,
        }
        # No condition: the new run replaces the previous run's record. Only the holder of the
        # full-sync lease starts a run, and a late message of the old run fails the runId
        # condition of ``finish_fanout_scope`` instead of counting in this one.
        await self.dynamo.call(
            "put_item", TableName=self.table, Item={**to_item(item), **{c: {"N": "0"} for c in FANOUT_COUNTERS}}
        )

    async def finish_fanout_scope(self, run_id: str, result: ScopeResult) -> dict[str, Any] | None:
        """Count one finished scope of a fan-out run (atomic ADD); the counters after the count
        (``finished``, ``remaining``: 0 when this was the run's last scope), or None when it did
        not count (another run's message, or a scope already counted)."""
        return await self.finish_fanout_scopes(run_id, [result])

    async def finish_fanout_scopes(self, run_id: str, results: list[ScopeResult]) -> dict[str, Any] | None:
        """Count several finished scopes of a fan-out run in one update (a batch's scopes of one
        run, at most ``FANOUT_COUNT_CHUNK``): all of them, or none when any was counted already
        or the run was replaced (None; the caller then counts them one by one)."""
        totals = {name: 0 for name in FANOUT_COUNTERS}
        for result in results:
            for name, value in _fanout_counts(result).items():
                totals[name] += value
        # One marker attribute per counted scope, not a set of them: UPDATED_NEW then answers a
        # few counters, where a growing set came back whole on every count (quadratic in the
        # run's scopes: 2,000 scopes cost seconds of CPU). The conditions: runId, the record is
        # this run's (a newer run replaced it: a late message must not count in the other run);
        # markers absent, SQS delivers at least once and a scope counted twice would finish the
        # run before its last scope did; remaining, a record written before it existed is never
        # finished early.
        markers = {f"#d{i}": f"{FANOUT_DONE_PREFIX}{r.scope.key}" for i, r in enumerate(results)}
        adds = ", ".join(f"{name} :{name}" for name in totals)
        attributes = await self._update_run_record(
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
            ReturnValues="UPDATED_NEW",
        )
        if attributes is None:
            return None
        return {k: v for k, v in attributes.items() if not k.startswith(FANOUT_DONE_PREFIX)}

    async def count_unsent_fanout_scopes(self, run_id: str, count: int) -> dict[str, Any] | None:
        """Count ``count`` scopes whose messages could not be enqueued as finished and failed (no
        worker will ever count them); the record after the count, None if the run was replaced."""
        # runId: only this run's record; a newer run's must not count our unsent scopes.
        return await self._update_run_record(
            run_id,
            UpdateExpression="ADD finished :count, scopesFailed :count, remaining :minus",
            ConditionExpression="runId = :run",
            ExpressionAttributeValues={":count": {"N": str(count)}, ":minus": {"N": str(-count)}},
            ReturnValues="ALL_NEW",
        )

    async def _update_run_record(self, run_id: str, **params: Any) -> dict[str, Any] | None:
        """An update of the fan-out run record whose condition names ``:run`` (its ``runId``); the
        attributes it returns, or None when the condition refused it."""
        params["ExpressionAttributeValues"] = {**params["ExpressionAttributeValues"], ":run": {"S": run_id}}
        key = to_item({"pk": RUN_PK, "sk": FANOUT_SK})
        response = await self.dynamo.write_if("update_item", TableName=self.table, Key=key, **params)
        return None if response is None else from_item(response["Attributes"])

    async def fanout_run(self, *, consistent: bool = False) -> dict[str, Any] | None:
        """The current (or last) fan-out run's record, without its scope markers (``consistent``:
        a strongly consistent read, for the worker that writes the run's summary)."""
        response = await self.dynamo.call(
            "get_item", TableName=self.table, Key=to_item({"pk": RUN_PK, "sk": FANOUT_SK}), ConsistentRead=consistent
        )
        item = response.get("Item")
        if not item:
            return None
        return {
            k: v for k, v in from_item(item).items() if k not in ("pk", "sk") and not k.startswith(FANOUT_DONE_PREFIX)
        }
