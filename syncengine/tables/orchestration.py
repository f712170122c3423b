"""The orchestration's tables (recovery plans, protection groups, execution history): every read
and write of them.

The DRS orchestration owns these tables; this engine reads plans, groups and executions, and
writes to the execution's items only what terminate records: the jobs it started
(``terminateJobs``, ``terminationInitiatedAt``) and, once they completed, ``instancesTerminated``
and ``instancesTerminatedAt``. (The
execution index a sync builds is read by ``syncengine.tables.execution_index.lookup``.)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import anyio

from syncengine.core.errors import AwsError, ExecutionNotFoundError, RecoveryPlanNotFoundError
from syncengine.core.logging import get_logger
from syncengine.dynamodb.seam import BATCH_GET_MAX, Dynamo, chunked, from_item, to_attr, to_item

log = get_logger(__name__)

# Missing groups are logged with a sample of ids, not all of them.
MISS_LOG_SAMPLE = 20


async def load_plan(dynamo: Dynamo, table: str, plan_id: str) -> dict[str, Any]:
    response = await dynamo.call("get_item", TableName=table, Key=to_item({"planId": plan_id}))
    item = response.get("Item")
    if not item:
        raise RecoveryPlanNotFoundError(f"Recovery plan {plan_id!r} was not found.")
    return from_item(item)


async def load_groups(dynamo: Dynamo, table: str, group_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Protection groups by id: BatchGetItem, 100 keys a call; missing groups are absent."""
    unique = list(dict.fromkeys(group_ids))
    groups: dict[str, dict[str, Any]] = {}

    async def fetch(batch: list[str]) -> None:
        for item in await dynamo.batch_get(table, [to_item({"groupId": gid}) for gid in batch]):
            groups[str(item["groupId"])] = item

    async with anyio.create_task_group() as tg:
        for batch in chunked(unique, BATCH_GET_MAX):
            tg.start_soon(fetch, batch)
    missing = [gid for gid in unique if gid not in groups]
    if missing:
        log.warning("protection_groups_missing", group_ids=missing[:MISS_LOG_SAMPLE], count=len(missing))
    return groups


# Only what the execution index needs: history items can carry large per-server payloads.
_INDEX_PROJECTION = "#eid, #plan, #start, #waves, #status"
_INDEX_NAMES = {
    "#eid": "executionId",
    "#plan": "planName",
    "#start": "startTime",
    "#waves": "waves",
    "#status": "status",
}


async def scan_execution_history(dynamo: Dynamo, table: str) -> list[dict[str, Any]]:
    """Every execution's id, plan name, start time, status and waves: one paginated, projected scan."""
    return await dynamo.scan_all(table, ProjectionExpression=_INDEX_PROJECTION, ExpressionAttributeNames=_INDEX_NAMES)


_ACTIVITY_PROJECTION = "#status, #acct, #waves"
_ACTIVITY_NAMES = {"#status": "status", "#acct": "accountId", "#waves": "waves"}


async def scan_execution_activity(dynamo: Dynamo, table: str) -> list[dict[str, Any]]:
    """Every execution's status, account and waves (which account/regions it runs in): one
    paginated, projected scan, without the per-server payloads."""
    return await dynamo.scan_all(
        table, ProjectionExpression=_ACTIVITY_PROJECTION, ExpressionAttributeNames=_ACTIVITY_NAMES
    )


async def load_execution_items(dynamo: Dynamo, table: str, execution_id: str) -> list[dict[str, Any]]:
    """Every item of an execution (one per plan it ran; normally one): a Query on the key."""
    pages = dynamo.paginate(
        "query",
        TableName=table,
        KeyConditionExpression="#eid = :eid",
        ExpressionAttributeNames={"#eid": "executionId"},
        ExpressionAttributeValues={":eid": {"S": execution_id}},
    )
    items = [from_item(raw) async for raw in pages]
    if not items:
        raise ExecutionNotFoundError(f"Execution {execution_id!r} was not found.")
    return items


# Appending a job re-reads the item and writes on the list's length: at most this many rounds when
# other writers keep appending meanwhile.
RECORD_JOB_ROUNDS = 5


async def record_terminate_job(
    dynamo: Dynamo, table: str, executions: Sequence[Mapping[str, Any]], job_id: str, entry: Mapping[str, Any]
) -> bool:
    """Append one accepted terminate job (``entry``) to ``terminateJobs`` of the execution's
    items, at most once, and set ``terminationInitiatedAt`` (epoch seconds); False when an item
    could not be updated.

    Only lists, maps, strings, numbers and booleans are written: the orchestration returns whole
    execution items through a JSON encoder that knows ``Decimal`` and nothing else
    (lambda/shared/response_utils.py), so a set on its item would make its execution pages answer
    500. Its own terminate writes the same two attributes, ``terminationInitiatedAt`` as
    ``int(time.time())`` (lambda/execution-handler/index.py, terminate_recovery_instances)."""
    ok = True
    for item in executions:
        key = to_item({"executionId": item["executionId"], "planId": item["planId"]})
        try:
            await _append_job(dynamo, table, key, job_id, entry)
        except AwsError as exc:
            ok = False
            log.error("terminate_execution_update_failed", error_type=exc.error_type, error=str(exc))
    return ok


async def _append_job(dynamo: Dynamo, table: str, key: dict[str, Any], job_id: str, entry: Mapping[str, Any]) -> None:
    """Read the item's jobs; append unless the job is there, on the condition that the list is
    still the one read (its length), else read again. No set is needed to test membership."""
    for _ in range(RECORD_JOB_ROUNDS):
        response = await dynamo.call(
            "get_item",
            TableName=table,
            Key=key,
            ConsistentRead=True,
            ProjectionExpression="#eid, #jobs",
            ExpressionAttributeNames={"#eid": "executionId", "#jobs": "terminateJobs"},
        )
        current = from_item(response.get("Item") or {})
        if not current:
            return  # the execution item is gone: never create a phantom one
        jobs = current.get("terminateJobs")
        jobs = jobs if isinstance(jobs, list) else []
        if any(isinstance(j, Mapping) and j.get("jobId") == job_id for j in jobs):
            return  # recorded already (a retried call, a second POST, a job found again)
        names = {"#jobs": "terminateJobs", "#at": "terminationInitiatedAt", "#eid": "executionId"}
        values: dict[str, Any] = {":job": to_attr([dict(entry)]), ":empty": {"L": []}, ":at": to_attr(int(time.time()))}
        if jobs:
            # The list is the one just read: nobody appended meanwhile (else read again).
            condition = "attribute_exists(#eid) AND size(#jobs) = :n"
            values[":n"] = to_attr(len(jobs))
        else:
            # attribute_exists: never create a phantom execution item if it was deleted meanwhile;
            # attribute_not_exists(#jobs): nobody recorded a first job meanwhile (else read again).
            condition = "attribute_exists(#eid) AND attribute_not_exists(#jobs)"
        written = await dynamo.write_if(
            "update_item",
            TableName=table,
            Key=key,
            UpdateExpression="SET #jobs = list_append(if_not_exists(#jobs, :empty), :job), #at = :at",
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        if written is not None:
            return
    log.warning("terminate_execution_update_contended", job_id=job_id)


async def mark_instances_terminated(dynamo: Dynamo, table: str, keys: Iterable[Mapping[str, Any]]) -> int:
    """Set ``instancesTerminated`` and ``instancesTerminatedAt`` (epoch seconds) on these
    execution items, as the orchestration's own termination-status path does once every job has
    completed (lambda/execution-handler/index.py, get_termination_job_status); its Execution
    Details page polls the execution until the flag is true. Returns how many items changed."""
    changed = 0
    for key in keys:
        written = await dynamo.write_if(
            "update_item",
            TableName=table,
            Key=to_item({"executionId": key["executionId"], "planId": key["planId"]}),
            UpdateExpression="SET #done = :true, #at = :at",
            # attribute_exists: never create a phantom item; the flag not yet true: the first
            # time wins, as the orchestration sets it only when it is not set.
            ConditionExpression="attribute_exists(#eid) AND (attribute_not_exists(#done) OR #done <> :true)",
            ExpressionAttributeNames={
                "#done": "instancesTerminated",
                "#at": "instancesTerminatedAt",
                "#eid": "executionId",
            },
            ExpressionAttributeValues={":true": {"BOOL": True}, ":at": to_attr(int(time.time()))},
        )
        if written is not None:
            changed += 1
    return changed
