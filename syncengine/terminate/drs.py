"""DRS TerminateRecoveryInstances for one (account, region), without ever terminating twice.

TerminateRecoveryInstances is not idempotent, so the one retry layer is narrowed for it:

* throttling (HTTP 429, ``ThrottlingException``) proves DRS did not act: retried with backoff;
* an ambiguous outcome (5xx, timeout, connection reset) may have been applied: never retried
  blindly. The ids are looked at first (DescribeRecoveryInstances filtered by
  ``recoveryInstanceIDs``; DescribeJobs from just before the call, for a TERMINATE job whose
  ``participatingServers[].recoveryInstanceID`` names them). An id named by such a job, or no
  longer known to DRS, is terminated (job id when found, else None); only the others are sent
  again, at most ``MAX_AMBIGUOUS_ROUNDS`` times;
* a per-id rejection (``ConflictException``, ``ValidationException``: DRS refuses the whole call
  for one bad id) splits the batch into single-id calls, so one bad id does not fail the rest.
  A conflict on an id whose earlier call was ambiguous means that call was applied: terminated.

API reference: TerminateRecoveryInstances (errors: ConflictException 409, ValidationException
400, ThrottlingException 429, InternalServerException 500, ...); DescribeJobsRequestFilters
(``fromDate``, ``toDate``, ``jobIDs`` only: no filter by recovery instance); ParticipatingServer
(``recoveryInstanceID``). The normal path makes no describe call at all.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio

from syncengine.core.config import TERMINATE_MAX_IDS
from syncengine.core.errors import AwsError, ThrottledError, TransientAwsError
from syncengine.core.logging import get_logger
from syncengine.core.models import Scope, utc_now_iso
from syncengine.core.retry import CallContext, call_with_retry
from syncengine.dynamodb.seam import chunked

log = get_logger(__name__)

CONFLICT = "ConflictException"
# DRS refuses a whole call for one id it will not terminate; these are split into single-id calls.
PER_ID_REJECTIONS = frozenset({CONFLICT, "ValidationException", "ResourceNotFoundException"})
OPERATION = "drs:TerminateRecoveryInstances"
MAX_AMBIGUOUS_ROUNDS = 3
# DescribeJobs looks from this long before the ambiguous call (clock skew between us and DRS).
JOB_LOOKBACK_SECONDS = 300
DESCRIBE_PAGE_SIZE = 200
# DRS's own EC2InstanceState values that mean the instance is going or gone (DRS keeps listing a
# recovery instance while its TERMINATE job runs; RecoveryInstance.ec2InstanceState).
GONE_EC2_STATES = frozenset({"SHUTTING-DOWN", "TERMINATED", "NOT_FOUND"})


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


@dataclass(frozen=True)
class Budget:
    """When to stop starting DRS calls (monotonic seconds; None: never)."""

    ends_at: float | None = None

    @classmethod
    def of(cls, seconds: float | None) -> Budget:
        return cls(None if seconds is None else time.monotonic() + seconds)

    def expired(self) -> bool:
        return self.ends_at is not None and time.monotonic() >= self.ends_at


@dataclass(frozen=True)
class GroupReport:
    """Where a group reports each id's fate (the caller owns the outcome and the bookkeeping)."""

    accepted: Callable[[Sequence[Mapping[str, Any]], Job | None], Awaitable[None]]
    rejected: Callable[[Sequence[Mapping[str, Any]], AwsError], None]
    not_attempted: Callable[[Sequence[Mapping[str, Any]]], None]


def _ids(records: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(r["recoveryInstanceId"]) for r in records]


def _job(response: Mapping[str, Any], scope: Scope, count: int) -> Job:
    job = response.get("job") or {}
    return Job(
        job_id=str(job.get("jobID", "")),
        scope=scope,
        type=str(job.get("type", "TERMINATE")),
        status=str(job.get("status", "PENDING")),
        instance_count=count,
    )


class ScopeTerminator:
    """Terminates one scope's records through one DRS client, reporting into ``report``."""

    def __init__(self, rt: Any, drs: Any, scope: Scope, report: GroupReport, budget: Budget):
        self.rt = rt
        self.drs = drs
        self.scope = scope
        self.report = report
        self.budget = budget
        self.limiter = anyio.CapacityLimiter(rt.settings.per_scope_concurrency)

    async def run(self, records: Sequence[Mapping[str, Any]]) -> None:
        for batch in chunked(records, TERMINATE_MAX_IDS):
            await self.batch(batch)

    async def _call(self, method: str, context: CallContext, *, retry_on: type[AwsError], **params: Any) -> Any:
        operation = getattr(self.drs, method)

        async def attempt() -> Any:
            self.rt.aws.stats.calls[context.operation] += 1
            async with self.limiter, self.rt.aws.limiter:
                return await operation(**params)

        return await call_with_retry(
            attempt,
            context,
            settings=self.rt.settings.retry,
            on_retry=self.rt.aws.stats.record_retry,
            retry_on=retry_on,
        )

    def _context(self, operation: str) -> CallContext:
        return CallContext(operation, self.scope.account_id, self.scope.region)

    async def batch(self, batch: Sequence[Mapping[str, Any]], *, round_: int = 0) -> None:
        """One TerminateRecoveryInstances call for ``batch`` (``round_`` > 0: after an ambiguous one)."""
        if self.budget.expired():
            self.report.not_attempted(batch)
            return
        started = time.time()
        try:
            response = await self._call(
                "terminate_recovery_instances",
                self._context(OPERATION),
                retry_on=ThrottledError,
                recoveryInstanceIDs=_ids(batch),
            )
        except ThrottledError as exc:
            self.report.rejected(batch, exc)  # throttled on every attempt: DRS did not act
        except TransientAwsError as exc:
            await self.after_ambiguous(batch, exc, started, round_)
        except AwsError as exc:
            await self.after_rejection(batch, exc, round_)
        else:
            await self.report.accepted(batch, _job(response, self.scope, len(batch)))

    async def after_rejection(self, batch: Sequence[Mapping[str, Any]], exc: AwsError, round_: int) -> None:
        if exc.code in PER_ID_REJECTIONS and len(batch) > 1:
            log.info("terminate_batch_split", error_type=exc.error_type, ids=len(batch))
            async with anyio.create_task_group() as tg:
                for record in batch:
                    tg.start_soon(self._single, record, round_)
            return
        if exc.code == CONFLICT and round_ > 0:
            # The earlier, ambiguous call was applied after all: DRS now says it is terminating.
            await self.report.accepted(batch, None)
            return
        log.warning("terminate_batch_failed", error_type=exc.error_type, error=str(exc), ids=len(batch))
        self.report.rejected(batch, exc)

    async def _single(self, record: Mapping[str, Any], round_: int) -> None:
        await self.batch([record], round_=round_)

    async def after_ambiguous(
        self, batch: Sequence[Mapping[str, Any]], exc: AwsError, started: float, round_: int
    ) -> None:
        """Look before any second call: what is terminating is done, only the rest is sent again."""
        log.warning("terminate_outcome_ambiguous", error_type=exc.error_type, ids=len(batch), round=round_)
        try:
            terminating = await self.look(batch, started - JOB_LOOKBACK_SECONDS)
        except AwsError as look_exc:
            log.error("terminate_look_failed", error_type=look_exc.error_type, error=str(look_exc))
            self.report.rejected(batch, exc)
            return
        by_job: dict[str | None, list[Mapping[str, Any]]] = {}
        rest = []
        for record in batch:
            rid = str(record["recoveryInstanceId"])
            if rid in terminating:
                by_job.setdefault(terminating[rid], []).append(record)
            else:
                rest.append(record)
        for job_id, records in by_job.items():
            job = None if job_id is None else Job(job_id, self.scope, "TERMINATE", "STARTED", len(records))
            await self.report.accepted(records, job)
        if not rest:
            return
        if round_ + 1 >= MAX_AMBIGUOUS_ROUNDS:
            self.report.rejected(rest, exc)
            return
        await self.batch(rest, round_=round_ + 1)

    async def look(self, batch: Sequence[Mapping[str, Any]], since: float) -> dict[str, str | None]:
        """recoveryInstanceId -> terminate job id (None when no job was found) for the ids DRS is
        terminating or has terminated; ids it still holds untouched are absent."""
        wanted = set(_ids(batch))
        found: dict[str, str | None] = {}
        listed: set[str] = set()
        async for item in self._items("describe_recovery_instances", {"recoveryInstanceIDs": sorted(wanted)}):
            rid = str(item.get("recoveryInstanceID"))
            listed.add(rid)
            if str(item.get("ec2InstanceState") or "").upper() in GONE_EC2_STATES:
                found[rid] = None
        found.update(dict.fromkeys(wanted - listed))  # ids DRS no longer knows at all
        try:
            named, by_server = await self._terminate_jobs(batch, wanted, since)
        except AwsError as exc:
            # Without the jobs, what DescribeRecoveryInstances proved still stands (job id null).
            log.warning("terminate_job_lookup_failed", error_type=exc.error_type, error=str(exc))
            return found
        # A TERMINATE job that names the recovery instance proves DRS accepted it.
        found.update(named)
        # One that names only the source server could be about an older instance of that server:
        # it proves nothing, and only supplies the job id of an instance already proven above.
        for rid, job_id in by_server.items():
            if rid in found and found[rid] is None:
                found[rid] = job_id
        return found

    async def _terminate_jobs(
        self, batch: Sequence[Mapping[str, Any]], wanted: set[str], since: float
    ) -> tuple[dict[str, str], dict[str, str]]:
        """TERMINATE jobs since ``since``: recoveryInstanceId -> job id for those that name the
        instance, and for those that name only its source server."""
        server_to_instance = {str(r.get("sourceServerId")): str(r["recoveryInstanceId"]) for r in batch}
        since_iso = utc_now_iso(datetime.fromtimestamp(since, UTC))
        named: dict[str, str] = {}
        by_server: dict[str, str] = {}
        async for job in self._items("describe_jobs", {"fromDate": since_iso}):
            if job.get("type") != "TERMINATE":
                continue
            for server in job.get("participatingServers") or []:
                rid = server.get("recoveryInstanceID")
                if rid in wanted:
                    named[str(rid)] = str(job.get("jobID"))
                elif not rid and (rid := server_to_instance.get(str(server.get("sourceServerID")))):
                    by_server[rid] = str(job.get("jobID"))
        return named, by_server

    async def _items(self, method: str, filters: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        operation = "drs:" + "".join(part.title() for part in method.split("_"))
        pages = self.rt.aws.pages(
            self.drs,
            method,
            self._context(operation),
            cursor="nextToken",
            scope_limiter=self.limiter,
            filters=filters,
            maxResults=DESCRIBE_PAGE_SIZE,
        )
        async for page in pages:
            for item in page.get("items") or []:
                yield item
