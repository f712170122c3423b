"""The orchestration's tables (recovery plans, protection groups, execution history): every read
and write of them.

The DRS orchestration owns these tables; this engine reads plans, groups and executions, and
writes one thing: the terminate jobs it started, appended to the execution's items. (The
execution index a sync builds is read by ``syncengine.executions``.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import anyio

from syncengine.dynamo import BATCH_GET_MAX, Dynamo, chunked, from_item, is_condition_failed, to_attr, to_item
from syncengine.errors import AwsError, ExecutionNotFoundError, RecoveryPlanNotFoundError
from syncengine.logging import get_logger

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


async def record_terminate_job(
    dynamo: Dynamo, table: str, executions: Sequence[Mapping[str, Any]], job_id: str, entry: Mapping[str, Any]
) -> bool:
    """Append one accepted terminate job (``entry``) to ``terminateJobs`` of the execution's
    items, at most once; False when an item could not be updated."""
    ok = True
    for item in executions:
        try:
            await dynamo.call(
                "update_item",
                TableName=table,
                Key=to_item({"executionId": item["executionId"], "planId": item["planId"]}),
                # Appended, not replaced: earlier jobs stay. ``terminateJobIds`` (a string set)
                # mirrors the list so the condition below can test membership by job id.
                UpdateExpression=(
                    "SET #jobs = list_append(if_not_exists(#jobs, :empty), :job), #at = :at ADD #ids :idset"
                ),
                # attribute_exists: never create a phantom execution item if it was deleted
                # meanwhile. NOT contains: a job already recorded (a retried call, a second POST,
                # a job found again after an ambiguous answer) is never appended twice.
                ConditionExpression="attribute_exists(#eid) AND NOT contains(#ids, :id)",
                ExpressionAttributeNames={
                    "#jobs": "terminateJobs",
                    "#ids": "terminateJobIds",
                    "#at": "terminationInitiatedAt",
                    "#eid": "executionId",
                },
                ExpressionAttributeValues={
                    ":job": to_attr([dict(entry)]),
                    ":empty": {"L": []},
                    ":at": to_attr(entry["recordedAt"]),
                    ":idset": {"SS": [job_id]},
                    ":id": {"S": job_id},
                },
            )
        except AwsError as exc:
            if is_condition_failed(exc):
                continue  # recorded already (or the item is gone): nothing to add
            ok = False
            log.error("terminate_execution_update_failed", error_type=exc.error_type, error=str(exc))
    return ok
