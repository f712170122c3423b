"""Terminate the recovery instances an execution launched, found through the cache.

The execution's instances come from the cache's ``sourceExecutionId`` index (no DRS describe
call). ``syncengine.terminate.rules`` decides which of them may be touched (proven attribution,
drills unless ``includeNonDrill``, never while the execution runs); the rest are ``skipped``.
The terminable ones are grouped by (account, region) and terminated by
``syncengine.terminate.drs`` (100 ids a call, the account's sync role, no blind retry of the
non-idempotent call). As each call is accepted its job is appended to the execution item (once
per job id) and the cache records of its ids are deleted, so a cut-off invocation loses nothing.

``execution_recovery_instances`` is the read-only preview of the same decision, from the cache.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aioboto3
import anyio

from syncengine.aws.sessions import SessionPurpose
from syncengine.core import metrics as m
from syncengine.core.config import SyncSettings
from syncengine.core.errors import AwsError, InvalidRequestError
from syncengine.core.logging import get_logger
from syncengine.core.models import AccountTarget, Scope, utc_now_iso
from syncengine.plans.check_existing import validate_identifier
from syncengine.runtime import Runtime, open_runtime
from syncengine.sync.execution_sync import refresh_quietly
from syncengine.sync.terminate_completion import note_pending
from syncengine.tables.accounts import targets_by_id
from syncengine.tables.orchestration import load_execution_items, record_terminate_job
from syncengine.terminate.drs import CONFLICT, Budget, GroupReport, Job, ScopeTerminator
from syncengine.terminate.rules import (
    Candidate,
    TerminateOptions,
    candidates,
    preview_body,
    refuse_if_active,
)

log = get_logger(__name__)


@dataclass(frozen=True)
class Terminated:
    recovery_instance_id: str
    source_server_id: str
    scope: Scope
    job_id: str | None  # None: DRS was found terminating it after an ambiguous answer, job unknown

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
class Skipped:
    recovery_instance_id: str
    scope: Scope
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "recoveryInstanceId": self.recovery_instance_id,
            "region": self.scope.region,
            "reason": self.reason,
            "accountId": self.scope.account_id,
        }


@dataclass
class TerminationOutcome:
    """What happened to one execution's instances (mutable while the groups report in)."""

    found: int = 0
    terminated: list[Terminated] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    # Terminable instances left alone because the budget ran out (a second request finishes them).
    not_attempted: int = 0

    @property
    def already_terminated(self) -> bool:
        """Nothing was terminated and every failure is DRS saying "already terminating"
        (ConflictException). The orchestration's Execution Details page stops tracking the
        termination on this flag (frontend/src/pages/ExecutionDetailsPage.tsx), so it is never
        set when this request terminated anything."""
        return not self.terminated and bool(self.failed) and all(f.error_type == CONFLICT for f in self.failed)


# -- the response ---------------------------------------------------------------------------------


def _message(outcome: TerminationOutcome) -> str:
    text = _done_message(outcome)
    if outcome.skipped:
        text += f" {len(outcome.skipped)} skipped (see 'skipped')."
    if outcome.not_attempted:
        text += f" {outcome.not_attempted} not attempted within the time budget: send the request again."
    return text


def _done_message(outcome: TerminationOutcome) -> str:
    done, failed, found = len(outcome.terminated), len(outcome.failed), outcome.found
    if not done and not failed:
        return "Nothing was terminated."
    if outcome.already_terminated and not done:
        return f"All {failed} recovery instances of this execution are already being terminated."
    if not failed:
        return f"Termination started for {done} recovery instances."
    if all(f.error_type == CONFLICT for f in outcome.failed):
        return f"Termination started for {done} of {found} recovery instances; {failed} were already terminating."
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
        "skipped": [s.to_dict() for s in outcome.skipped],
        "totalSkipped": len(outcome.skipped),
    }
    if outcome.already_terminated:
        body["alreadyTerminated"] = True
    if outcome.not_attempted:
        body["incomplete"] = True
        body["totalNotAttempted"] = outcome.not_attempted
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
        "skipped": [],
        "totalSkipped": 0,
        "noInstancesFound": True,
        "reason": (
            "The cache holds no recovery instance launched by this execution: they were terminated "
            "already, or the execution launched none."
        ),
    }


# -- accounts -------------------------------------------------------------------------------------


async def account_targets(rt: Runtime, account_ids: Sequence[str]) -> dict[str, AccountTarget]:
    """The sync roles of these accounts, read the way sync reads them (``syncengine.tables.accounts``)."""
    return await targets_by_id(rt.aws, rt.dynamo, rt.settings, account_ids)


# -- the cache and the execution item --------------------------------------------------------------


async def forget_terminated(rt: Runtime, terminated: Sequence[Terminated]) -> int:
    """Delete the cache records of accepted ids; a failure is logged (the next sync reconciles)."""
    limiter = anyio.CapacityLimiter(rt.settings.write_concurrency)
    deleted = 0

    async def delete(entry: Terminated) -> None:
        nonlocal deleted
        try:
            async with limiter:
                deleted += await rt.store.delete_terminated(entry.source_server_id, entry.recovery_instance_id)
        except AwsError as exc:
            log.warning("terminate_cache_delete_failed", source_server_id=entry.source_server_id, error=str(exc))

    async with anyio.create_task_group() as tg:
        for entry in terminated:
            tg.start_soon(delete, entry)
    return deleted


async def record_job(rt: Runtime, executions: Sequence[Mapping[str, Any]], job: Job, requested_by: str | None) -> bool:
    """Append one accepted job to ``terminateJobs`` of the execution's items, at most once."""
    entry = {**job.to_dict(), "recordedAt": utc_now_iso()}
    if requested_by:
        entry["requestedBy"] = requested_by
    return await record_terminate_job(rt.dynamo, rt.settings.tables.execution_history, executions, job.job_id, entry)


# -- one execution's termination --------------------------------------------------------------------


class Termination:
    """The bookkeeping of one request: outcome, cache deletes and job records as calls return."""

    def __init__(
        self, rt: Runtime, execution_id: str, executions: Sequence[Mapping[str, Any]], options: TerminateOptions
    ):
        self.rt = rt
        self.execution_id = execution_id
        self.executions = executions
        self.options = options
        self.outcome = TerminationOutcome()
        self.execution_updated = True
        self.cache_deleted = 0
        # Groups (accounts/regions) finish concurrently but write the same execution items: one
        # job at a time, so no two read-modify-writes of one item race (DynamoDB serialises them;
        # moto's server does not) and each job is on the item before the next is appended.
        self.recording = anyio.Lock()

    def report_for(self, scope: Scope) -> GroupReport:
        async def accepted(records: Sequence[Mapping[str, Any]], job: Job | None) -> None:
            entries = [
                Terminated(str(r["recoveryInstanceId"]), str(r["sourceServerId"]), scope, job.job_id if job else None)
                for r in records
            ]
            self.outcome.terminated.extend(entries)
            if job is not None and job.job_id:
                self.outcome.jobs.append(job)
                async with self.recording:
                    recorded = await record_job(self.rt, self.executions, job, self.options.requested_by)
                self.execution_updated &= recorded
                # Followed until DRS reports it complete (``instancesTerminated``).
                await note_pending(self.rt, self.executions, job.job_id, scope)
            self.cache_deleted += await forget_terminated(self.rt, entries)

        def rejected(records: Sequence[Mapping[str, Any]], exc: AwsError) -> None:
            self.outcome.failed.extend(
                Failed(str(r["recoveryInstanceId"]), str(r["sourceServerId"]), scope, str(exc), exc.error_type)
                for r in records
            )

        def not_attempted(records: Sequence[Mapping[str, Any]]) -> None:
            self.outcome.not_attempted += len(records)

        return GroupReport(accepted=accepted, rejected=rejected, not_attempted=not_attempted)

    async def group(
        self, scope: Scope, target: AccountTarget, records: Sequence[Mapping[str, Any]], budget: Budget
    ) -> None:
        report = self.report_for(scope)
        try:
            drs = await self.rt.aws.client("drs", scope.region, target, SessionPurpose.TERMINATE)
        except AwsError as exc:
            log.warning("terminate_scope_unreachable", error_type=exc.error_type, error=str(exc))
            report.rejected(records, exc)
            return
        await ScopeTerminator(self.rt, drs, scope, report, budget).run(records)

    async def run(self, chosen: Sequence[Candidate]) -> TerminationOutcome:
        self.outcome.found = len(chosen)
        groups: dict[Scope, list[Mapping[str, Any]]] = defaultdict(list)
        for candidate in chosen:
            record = candidate.record
            scope = Scope(str(record["accountId"]), str(record["region"]))
            if candidate.terminable:
                groups[scope].append(record)
            else:
                self.outcome.skipped.append(Skipped(str(record["recoveryInstanceId"]), scope, str(candidate.reason)))
        if groups:
            budget = Budget.of(self.options.budget_seconds)
            targets = await account_targets(self.rt, sorted({scope.account_id for scope in groups}))
            async with anyio.create_task_group() as tg:
                for scope, records in sorted(groups.items()):
                    tg.start_soon(self.group, scope, targets[scope.account_id], records, budget)
        return self.outcome


# -- public API -----------------------------------------------------------------------------------


async def execution_recovery_instances(
    settings: SyncSettings, execution_id: str, *, session: aioboto3.Session | None = None
) -> dict[str, Any]:
    """The preview of a terminate (cache and execution item only: no DRS, EC2 or STS call)."""
    execution_id = validate_identifier("executionId", execution_id)
    async with open_runtime(settings, session=session, read_only=True) as rt:
        executions = await load_execution_items(rt.dynamo, settings.tables.execution_history, execution_id)
        records = await rt.store.records_by_execution(execution_id)
    chosen = candidates(execution_id, executions, records, include_non_drill=False)
    return preview_body(execution_id, executions, chosen)


async def terminate_execution_instances(
    settings: SyncSettings,
    execution_id: str,
    options: TerminateOptions | None = None,
    *,
    session: aioboto3.Session | None = None,
) -> dict[str, Any]:
    """Terminate the recovery instances an execution provably launched; the contract's 200 body.

    Raises ``InvalidRequestError`` (malformed id, or an execution without waves),
    ``ExecutionNotFoundError``, ``ExecutionInProgressError`` (nothing is touched), and the
    engine's ``AwsError`` when DynamoDB fails before any termination was attempted. DRS failures
    are reported per instance in ``failed``.
    """
    options = options or TerminateOptions()
    execution_id = validate_identifier("executionId", execution_id)
    started = time.monotonic()
    log.info(
        "terminate_requested",
        execution_id=execution_id,
        requested_by=options.requested_by,
        include_non_drill=options.include_non_drill,
    )
    async with open_runtime(settings, session=session) as rt:
        executions = await load_execution_items(rt.dynamo, settings.tables.execution_history, execution_id)
        # The items just read by key refresh the execution index too (no other read). Terminate
        # itself never uses the index: it reads its execution by key, so the execution it acts
        # on is always known, and a missing index entry can only make it skip an instance.
        await refresh_quietly(rt.dynamo, settings, execution_id, executions)
        refuse_if_active(execution_id, executions)
        if not any(item.get("waves") for item in executions):
            raise InvalidRequestError(f"Execution {execution_id!r} has no waves: it launched nothing to terminate.")
        records = await rt.store.records_by_execution(execution_id)
        if not records:
            log.info(
                "terminate_execution_instances", execution_id=execution_id, found=0, requested_by=options.requested_by
            )
            return no_instances_body(execution_id)
        termination = Termination(rt, execution_id, executions, options)
        chosen = candidates(execution_id, executions, records, include_non_drill=options.include_non_drill)
        outcome = await termination.run(chosen)
        _report_termination(rt, termination, outcome, started)
    body = termination_body(execution_id, outcome)
    if not termination.execution_updated:
        body["executionUpdated"] = False
    return body


def _report_termination(rt: Runtime, termination: Termination, outcome: TerminationOutcome, started: float) -> None:
    """The request's metrics and its one summary log line."""
    rt.metrics.emit(
        {m.INSTANCES_TERMINATED: len(outcome.terminated), m.TERMINATE_FAILURES: len(outcome.failed)},
        executionId=termination.execution_id,
    )
    log.info(
        "terminate_execution_instances",
        execution_id=termination.execution_id,
        requested_by=termination.options.requested_by,
        found=outcome.found,
        terminated=len(outcome.terminated),
        failed=len(outcome.failed),
        skipped=len(outcome.skipped),
        not_attempted=outcome.not_attempted,
        jobs=len(outcome.jobs),
        cache_records_deleted=termination.cache_deleted,
        execution_updated=termination.execution_updated,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


__all__ = [
    "TerminateOptions",
    "TerminationOutcome",
    "account_targets",
    "execution_recovery_instances",
    "no_instances_body",
    "terminate_execution_instances",
    "termination_body",
]
