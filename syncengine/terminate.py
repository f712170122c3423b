"""Terminate the recovery instances an execution launched, found through the cache.

The execution's instances come from the cache's ``sourceExecutionId`` index (no DRS describe
call), grouped by (account, region). Each group calls DRS TerminateRecoveryInstances with at most
100 ids, acting in the account through the same role sync uses (the target-accounts item; the
current account uses its own credentials). The cache records of accepted ids are deleted and the
jobs are recorded on the execution item.

DRS rejects a whole TerminateRecoveryInstances call with ``ConflictException`` when any id in it
is unknown or already terminating. The ids of such a batch are then sent one by one (at most 100
calls for the batch), so the others still terminate and the conflicting ones are reported.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aioboto3
import anyio

from syncengine import metrics as m
from syncengine.accounts import target_from_item
from syncengine.config import TERMINATE_MAX_IDS, SyncSettings
from syncengine.dynamo import BATCH_GET_MAX, chunked, to_attr, to_item
from syncengine.engine import Runtime, open_runtime
from syncengine.errors import AwsError, InvalidRequestError
from syncengine.logging import get_logger
from syncengine.models import AccountTarget, Scope, utc_now_iso
from syncengine.plans import load_execution_items, validate_identifier
from syncengine.retry import CallContext

log = get_logger(__name__)

CONFLICT = "ConflictException"
CONDITION_FAILED = "ConditionalCheckFailedException"
OPERATION = "drs:TerminateRecoveryInstances"


@dataclass(frozen=True)
class Terminated:
    recovery_instance_id: str
    source_server_id: str
    scope: Scope
    job_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "recoveryInstanceId": self.recovery_instance_id,
            "region": self.scope.region,
            "jobId": self.job_id,
            "sourceServerId": self.source_server_id,
            "accountId": self.scope.account_id,
        }


@dataclass(frozen=True)
class Failed:
    recovery_instance_id: str
    source_server_id: str
    scope: Scope
    error: str
    error_type: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "recoveryInstanceId": self.recovery_instance_id,
            "region": self.scope.region,
            "error": self.error,
            "errorType": self.error_type,
            "sourceServerId": self.source_server_id,
            "accountId": self.scope.account_id,
        }


@dataclass(frozen=True)
class Job:
    job_id: str
    scope: Scope
    type: str
    status: str
    instance_count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id,
            "region": self.scope.region,
            "type": self.type,
            "status": self.status,
            "accountId": self.scope.account_id,
            "instanceCount": self.instance_count,
        }


@dataclass
class TerminationOutcome:
    """What happened to one execution's instances (mutable while the groups report in)."""

    found: int = 0
    terminated: list[Terminated] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)

    @property
    def already_terminated(self) -> bool:
        """Every failure is DRS saying "already terminating" (ConflictException)."""
        return bool(self.failed) and all(f.error_type == CONFLICT for f in self.failed)


# -- the response ---------------------------------------------------------------------------------


def _message(outcome: TerminationOutcome) -> str:
    done, failed, found = len(outcome.terminated), len(outcome.failed), outcome.found
    if outcome.already_terminated and not done:
        return f"All {failed} recovery instances of this execution are already being terminated."
    if not failed:
        return f"Termination started for {done} recovery instances."
    if outcome.already_terminated:
        return (
            f"Termination started for {done} of {found} recovery instances; "
            f"{failed} were already terminating."
        )
    return f"Termination started for {done} of {found} recovery instances; {failed} failed."


def termination_body(execution_id: str, outcome: TerminationOutcome) -> dict[str, Any]:
    """The 200 body of ``POST /executions/{executionId}/terminate-instances``."""
    body: dict[str, Any] = {
        "executionId": execution_id,
        "message": _message(outcome),
        "terminated": [t.to_dict() for t in outcome.terminated],
        "failed": [f.to_dict() for f in outcome.failed],
        "jobs": [j.to_dict() for j in outcome.jobs],
        "totalFound": outcome.found,
        "totalTerminated": len(outcome.terminated),
        "totalFailed": len(outcome.failed),
    }
    if outcome.already_terminated:
        body["alreadyTerminated"] = True
    return body


def no_instances_body(execution_id: str) -> dict[str, Any]:
    return {
        "executionId": execution_id,
        "message": "No recovery instances of this execution were found.",
        "terminated": [],
        "failed": [],
        "jobs": [],
        "totalFound": 0,
        "totalTerminated": 0,
        "totalFailed": 0,
        "noInstancesFound": True,
        "reason": (
            "The cache holds no recovery instance launched by this execution: they were terminated "
            "already, or the execution launched none."
        ),
    }


# -- accounts -------------------------------------------------------------------------------------


async def account_targets(rt: Runtime, account_ids: Sequence[str]) -> dict[str, AccountTarget]:
    """The sync roles of these accounts: their target-accounts items (BatchGetItem), read the way
    sync reads them. An account without an item is the current account (own credentials) or
    gets the default role name."""
    items: dict[str, dict[str, Any]] = {}
    for batch in chunked(account_ids, BATCH_GET_MAX):
        keys = [to_item({"accountId": a}) for a in batch]
        for item in await rt.dynamo.batch_get(rt.settings.tables.target_accounts, keys):
            items[str(item["accountId"])] = item
    current = await rt.aws.current_account_id()
    targets: dict[str, AccountTarget] = {}
    for account_id in account_ids:
        item = items.get(account_id)
        if item is None:
            if account_id != current:
                log.warning("terminate_account_not_configured", account_id=account_id)
            item = {"accountId": account_id}
        targets[account_id] = target_from_item(item, rt.settings, current)
    return targets


# -- DRS ------------------------------------------------------------------------------------------


async def _terminate_batch(
    rt: Runtime, drs: Any, scope: Scope, records: Sequence[Mapping[str, Any]], limiter: anyio.CapacityLimiter
) -> Job:
    ids = [str(r["recoveryInstanceId"]) for r in records]
    context = CallContext(OPERATION, scope.account_id, scope.region)
    response = await rt.aws.call(
        drs, "terminate_recovery_instances", context, scope_limiter=limiter, recoveryInstanceIDs=ids
    )
    job = response.get("job") or {}
    return Job(
        job_id=str(job.get("jobID", "")),
        scope=scope,
        type=str(job.get("type", "TERMINATE")),
        status=str(job.get("status", "PENDING")),
        instance_count=len(ids),
    )


async def terminate_group(
    rt: Runtime,
    scope: Scope,
    target: AccountTarget,
    records: Sequence[Mapping[str, Any]],
    outcome: TerminationOutcome,
) -> None:
    """Terminate one (account, region)'s instances, 100 ids a call, reporting into ``outcome``."""

    def accepted(batch: Sequence[Mapping[str, Any]], job: Job) -> None:
        outcome.jobs.append(job)
        outcome.terminated.extend(
            Terminated(str(r["recoveryInstanceId"]), str(r["sourceServerId"]), scope, job.job_id)
            for r in batch
        )

    def rejected(batch: Sequence[Mapping[str, Any]], exc: AwsError) -> None:
        outcome.failed.extend(
            Failed(str(r["recoveryInstanceId"]), str(r["sourceServerId"]), scope, str(exc), exc.error_type)
            for r in batch
        )

    try:
        drs = await rt.aws.client("drs", scope.region, target)
    except AwsError as exc:
        log.warning("terminate_scope_unreachable", error_type=exc.error_type, error=str(exc))
        rejected(records, exc)
        return
    limiter = anyio.CapacityLimiter(rt.settings.per_scope_concurrency)

    async def one(record: Mapping[str, Any]) -> None:
        try:
            accepted([record], await _terminate_batch(rt, drs, scope, [record], limiter))
        except AwsError as exc:
            rejected([record], exc)

    for batch in chunked(records, TERMINATE_MAX_IDS):
        try:
            accepted(batch, await _terminate_batch(rt, drs, scope, batch, limiter))
        except AwsError as exc:
            if exc.code != CONFLICT or len(batch) == 1:
                log.warning(
                    "terminate_batch_failed", error_type=exc.error_type, error=str(exc), ids=len(batch)
                )
                rejected(batch, exc)
                continue
            # One conflicting id fails the whole call: find which, and terminate the rest.
            log.info("terminate_batch_conflict", ids=len(batch))
            async with anyio.create_task_group() as tg:
                for record in batch:
                    tg.start_soon(one, record)


# -- the cache and the execution item --------------------------------------------------------------


async def forget_terminated(rt: Runtime, terminated: Sequence[Terminated]) -> int:
    """Delete the cache records of accepted ids; a failure is logged (the next sync reconciles)."""
    limiter = anyio.CapacityLimiter(rt.settings.write_concurrency)
    deleted = 0

    async def delete(entry: Terminated) -> None:
        nonlocal deleted
        try:
            async with limiter:
                await rt.dynamo.call(
                    "delete_item",
                    TableName=rt.settings.tables.cache,
                    Key=to_item({"sourceServerId": entry.source_server_id}),
                    # A sync may have replaced the record with the server's newer recovery
                    # instance since it was read: delete only the record of the terminated one.
                    ConditionExpression="#rid = :rid",
                    ExpressionAttributeNames={"#rid": "recoveryInstanceId"},
                    ExpressionAttributeValues={":rid": {"S": entry.recovery_instance_id}},
                )
            deleted += 1
        except AwsError as exc:
            if exc.code != CONDITION_FAILED:
                log.warning(
                    "terminate_cache_delete_failed", source_server_id=entry.source_server_id, error=str(exc)
                )

    async with anyio.create_task_group() as tg:
        for entry in terminated:
            tg.start_soon(delete, entry)
    return deleted


async def record_jobs(rt: Runtime, executions: Sequence[Mapping[str, Any]], jobs: Sequence[Job]) -> bool:
    """Append ``terminateJobs`` and set ``terminationInitiatedAt`` on the execution's items."""
    if not jobs:
        return True
    values = {
        ":jobs": to_attr([j.to_dict() for j in jobs]),
        ":empty": {"L": []},
        ":at": to_attr(utc_now_iso()),
    }
    ok = True
    for item in executions:
        try:
            await rt.dynamo.call(
                "update_item",
                TableName=rt.settings.tables.execution_history,
                Key=to_item({"executionId": item["executionId"], "planId": item["planId"]}),
                # Appended, not replaced: a retried termination keeps the earlier jobs.
                UpdateExpression="SET #jobs = list_append(if_not_exists(#jobs, :empty), :jobs), #at = :at",
                # Never create a phantom execution item if it was deleted meanwhile.
                ConditionExpression="attribute_exists(#eid)",
                ExpressionAttributeNames={
                    "#jobs": "terminateJobs",
                    "#at": "terminationInitiatedAt",
                    "#eid": "executionId",
                },
                ExpressionAttributeValues=values,
            )
        except AwsError as exc:
            ok = False
            log.error("terminate_execution_update_failed", error_type=exc.error_type, error=str(exc))
    return ok


# -- public API -----------------------------------------------------------------------------------


async def terminate_execution_instances(
    settings: SyncSettings, execution_id: str, *, session: aioboto3.Session | None = None
) -> dict[str, Any]:
    """Terminate the recovery instances an execution launched; the contract's 200 body.

    Raises ``InvalidRequestError`` (malformed id, or an execution without waves),
    ``ExecutionNotFoundError``, and the engine's ``AwsError`` when DynamoDB fails before any
    termination was attempted. DRS failures are reported per instance in ``failed``.
    """
    execution_id = validate_identifier("executionId", execution_id)
    started = time.monotonic()
    async with open_runtime(settings, session=session) as rt:
        executions = await load_execution_items(rt.dynamo, settings.tables.execution_history, execution_id)
        if not any(item.get("waves") for item in executions):
            raise InvalidRequestError(
                f"Execution {execution_id!r} has no waves: it launched nothing to terminate."
            )
        records = await rt.store.records_by_execution(execution_id)
        if not records:
            log.info("terminate_execution_instances", execution_id=execution_id, found=0)
            return no_instances_body(execution_id)
        groups: dict[Scope, list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            groups[Scope(str(record["accountId"]), str(record["region"]))].append(record)
        targets = await account_targets(rt, sorted({scope.account_id for scope in groups}))
        outcome = TerminationOutcome(found=len(records))
        async with anyio.create_task_group() as tg:
            for scope, scope_records in sorted(groups.items()):
                tg.start_soon(terminate_group, rt, scope, targets[scope.account_id], scope_records, outcome)
        deleted = await forget_terminated(rt, outcome.terminated)
        updated = await record_jobs(rt, executions, outcome.jobs)
        rt.metrics.emit(
            {m.INSTANCES_TERMINATED: len(outcome.terminated), m.TERMINATE_FAILURES: len(outcome.failed)},
            executionId=execution_id,
        )
        log.info(
            "terminate_execution_instances",
            execution_id=execution_id,
            found=outcome.found,
            terminated=len(outcome.terminated),
            failed=len(outcome.failed),
            jobs=len(outcome.jobs),
            cache_records_deleted=deleted,
            execution_updated=updated,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    body = termination_body(execution_id, outcome)
    if not updated:
        body["executionUpdated"] = False
    return body


__all__ = [
    "TerminationOutcome",
    "account_targets",
    "no_instances_body",
    "terminate_execution_instances",
    "terminate_group",
    "termination_body",
]
