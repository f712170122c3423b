"""When an execution's terminate jobs have all completed, say so on its items.

The orchestration's Execution Details page polls the execution item after a terminate until
``instancesTerminated`` is true (frontend/src/pages/ExecutionDetailsPage.tsx); its own
termination-status route sets the flag once DRS reports every job COMPLETED
(lambda/execution-handler/index.py, get_termination_job_status). Terminate through this engine
notes each accepted job in the status table (partition ``TERMINATION``, one small item a job);
every full sync then asks DRS about the noted jobs (DescribeJobs, by id, per account and region)
and marks the executions whose jobs are all COMPLETED, then forgets their notes. Nothing is
scanned: the notes are the few jobs still being followed, and a note nobody settles expires.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from syncengine.core.errors import AwsError
from syncengine.core.logging import get_logger
from syncengine.core.models import Scope
from syncengine.core.retry import CallContext
from syncengine.dynamodb.seam import chunked, from_item, to_item
from syncengine.runtime import Runtime
from syncengine.tables.accounts import targets_by_id
from syncengine.tables.orchestration import mark_instances_terminated

log = get_logger(__name__)

PENDING_PK = "TERMINATION"
COMPLETED = "COMPLETED"
# A job DRS still reports unfinished (or no longer reports) after this long stops being followed.
FOLLOW_DAYS = 14
# DescribeJobs takes up to 1000 ids a filter in the model; a smaller page keeps answers small.
DESCRIBE_JOB_IDS = 200


async def note_pending(rt: Runtime, executions: Sequence[Mapping[str, Any]], job_id: str, scope: Scope) -> None:
    """Remember an accepted terminate job until DRS reports it complete. A failure is logged: the
    orchestration's own termination-status route can still set the flag."""
    execution_id = str(executions[0]["executionId"])
    item = {
        "pk": PENDING_PK,
        "sk": f"{execution_id}#{job_id}",
        "executionId": execution_id,
        "planIds": sorted({str(e["planId"]) for e in executions}),
        "jobId": job_id,
        "accountId": scope.account_id,
        "region": scope.region,
        "ttl": int(time.time()) + FOLLOW_DAYS * 86400,
    }
    try:
        await rt.dynamo.call("put_item", TableName=rt.settings.tables.status, Item=to_item(item))
    except AwsError as exc:
        log.warning("terminate_job_note_failed", job_id=job_id, error_type=exc.error_type, error=str(exc))


async def follow_terminations(rt: Runtime) -> int:
    """Mark the executions whose noted terminate jobs all completed; returns how many execution
    items changed. Never raises for AWS errors: a failure here fails no scope."""
    try:
        notes = [
            from_item(raw)
            async for raw in rt.dynamo.paginate(
                "query",
                TableName=rt.settings.tables.status,
                KeyConditionExpression="#pk = :pk",
                ExpressionAttributeNames={"#pk": "pk"},
                ExpressionAttributeValues={":pk": {"S": PENDING_PK}},
            )
        ]
        if not notes:
            return 0
        statuses = await _job_statuses(rt, notes)
        return await _settle(rt, notes, statuses)
    except AwsError as exc:
        log.warning("terminate_follow_failed", error_type=exc.error_type, error=str(exc))
        return 0


async def _job_statuses(rt: Runtime, notes: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Job id -> DRS status, asked per (account, region); a scope that fails is left for later."""
    by_scope: dict[Scope, set[str]] = defaultdict(set)
    for note in notes:
        by_scope[Scope(str(note["accountId"]), str(note["region"]))].add(str(note["jobId"]))
    targets = await targets_by_id(rt.aws, rt.dynamo, rt.settings, sorted({s.account_id for s in by_scope}))
    statuses: dict[str, str] = {}
    for scope, job_ids in sorted(by_scope.items()):
        try:
            drs = await rt.aws.client("drs", scope.region, targets[scope.account_id])
            for batch in chunked(sorted(job_ids), DESCRIBE_JOB_IDS):
                token = None
                while True:
                    params: dict[str, Any] = {"filters": {"jobIDs": batch}}
                    if token:
                        params["nextToken"] = token
                    context = CallContext("drs:DescribeJobs", scope.account_id, scope.region)
                    answer = await rt.aws.call(drs, "describe_jobs", context, **params)
                    for job in answer.get("items") or []:
                        statuses[str(job.get("jobID"))] = str(job.get("status") or "")
                    token = answer.get("nextToken")
                    if not token:
                        break
        except AwsError as exc:
            log.warning(
                "terminate_follow_scope_failed",
                account_id=scope.account_id,
                region=scope.region,
                error_type=exc.error_type,
                error=str(exc),
            )
    return statuses


async def _settle(rt: Runtime, notes: Sequence[Mapping[str, Any]], statuses: Mapping[str, str]) -> int:
    by_execution: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for note in notes:
        by_execution[str(note["executionId"])].append(note)
    changed = 0
    for execution_id, pending in sorted(by_execution.items()):
        if not all(statuses.get(str(n["jobId"])) == COMPLETED for n in pending):
            continue
        plan_ids = sorted({str(p) for n in pending for p in n.get("planIds") or []})
        keys = [{"executionId": execution_id, "planId": plan_id} for plan_id in plan_ids]
        changed += await mark_instances_terminated(rt.dynamo, rt.settings.tables.execution_history, keys)
        for note in pending:
            await rt.dynamo.call(
                "delete_item", TableName=rt.settings.tables.status, Key=to_item({"pk": PENDING_PK, "sk": note["sk"]})
            )
        log.info("terminate_jobs_completed", execution_id=execution_id, jobs=len(pending))
    return changed
