"""The status table's fan-out run records (the rest of that table is ``syncengine.status``, whose
store inherits this): how many scopes a fan-out run enqueued, how many finished and their summed
results, counted so that each scope counts exactly once however often SQS delivers its message
(``syncengine.fanout``), and so that no item grows past a few KB at any number of scopes.

Two levels, each counted by single-item conditional updates (DynamoDB's item limit is 400 KB and
every update is billed on the whole item; one marker per scope on one item reached the limit near
12,000 scopes):

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
from collections.abc import Mapping
from typing import Any

from syncengine.dynamo import BATCH_WRITE_MAX, Dynamo, chunked, from_item, to_item
from syncengine.models import ScopeResult

RUN_PK = "RUN"  # the status table's run partition (syncengine.status)
FANOUT_SK = "FANOUT"
# A fan-out run's part items: pk ``FANOUT#<runId>``, sk ``PART#<n>`` (n zero-padded).
FANOUT_PART_PK_PREFIX = "FANOUT#"
FANOUT_PART_SK_PREFIX = "PART#"
# The run record's marker of a part whose counts it holds: ``p:<n>``.
FANOUT_PART_MARKER_PREFIX = "p:"
# At most this many scopes in one part: with the longest scope key a part item stays under 3 KB
# (tests/unit/test_fanout.py computes the worst case), and 20,000 scopes make 313 parts, whose
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


class FanoutRuns:
    """Writes and reads the fan-out run records; ``StatusStore`` is the one that has them."""

    dynamo: Dynamo
    table: str

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
