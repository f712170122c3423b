"""syncengine.terminate.drs and the response shapes: batching, per-id rejections, the
throttle-only retry, and the look-first path after an ambiguous answer, against an in-memory
DRS client (the integration tests run the same paths through the simulator)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from syncengine.aws.clients import CallStats
from syncengine.core.config import RetrySettings, SyncSettings
from syncengine.core.errors import AwsError, PermanentAwsError, ThrottledError, TransientAwsError
from syncengine.core.models import Scope
from syncengine.terminate.drs import CONFLICT, Budget, GroupReport, Job, ScopeTerminator
from syncengine.terminate.instances import (
    Failed,
    Skipped,
    Terminated,
    TerminationOutcome,
    no_instances_body,
    termination_body,
)

SCOPE = Scope("123456789012", "us-east-1")


def records(count: int) -> list[dict[str, Any]]:
    return [
        {
            "sourceServerId": f"s-{n:017x}",
            "recoveryInstanceId": f"i-{n:017x}",
            "accountId": SCOPE.account_id,
            "region": SCOPE.region,
        }
        for n in range(count)
    ]


def ids(batch: Sequence[Mapping[str, Any]]) -> set[str]:
    return {r["recoveryInstanceId"] for r in batch}


@dataclass
class InMemoryDrs:
    """TerminateRecoveryInstances with DRS's all-or-nothing rejection, DescribeRecoveryInstances
    by ids and DescribeJobs. ``script`` gives each terminate call's fault in turn: ``throttle``
    (429, not applied), ``fail`` (500, not applied), ``apply-then-fail`` (applied, then 500)."""

    live: set[str]
    script: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    publish_jobs: bool = True
    # After a termination DRS keeps listing the instance in this EC2 state (None: gone at once).
    listed_while_terminating: str | None = None
    # Terminate jobs name only the source server, not the recovery instance.
    jobs_name_servers_only: bool = False
    terminating: set[str] = field(default_factory=set)
    describe_error: AwsError | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, list[str]]] = field(default_factory=list)

    def terminate_calls(self) -> list[list[str]]:
        return [i for op, i in self.calls if op == "terminate"]

    def describe_calls(self) -> int:
        return sum(1 for op, _ in self.calls if op != "terminate")

    async def terminate_recovery_instances(self, recoveryInstanceIDs: list[str]) -> dict[str, Any]:
        wanted = list(recoveryInstanceIDs)
        self.calls.append(("terminate", wanted))
        assert len(wanted) <= 100
        action = self.script.pop(0) if self.script else "ok"
        if action == "throttle":
            raise ThrottledError("Rate exceeded", code="ThrottlingException", status_code=429)
        if action == "fail":
            raise TransientAwsError("Internal error", code="InternalServerException", status_code=500)
        for rid in wanted:
            if rid in self.rejected:
                raise PermanentAwsError(f"{rid} refused", code=self.rejected[rid], status_code=400)
        if any(rid not in self.live for rid in wanted):
            raise PermanentAwsError("already terminated", code=CONFLICT, status_code=409)
        self.live -= set(wanted)
        self.terminating |= set(wanted)
        servers = [
            {"sourceServerID": "s-" + rid[2:]}
            if self.jobs_name_servers_only
            else {"sourceServerID": "s-" + rid[2:], "recoveryInstanceID": rid}
            for rid in wanted
        ]
        job = {
            "jobID": f"drsjob-{len(self.calls):017d}",
            "type": "TERMINATE",
            "status": "PENDING",
            "participatingServers": servers,
        }
        if self.publish_jobs:
            self.jobs.append(job)
        if action == "apply-then-fail":
            raise TransientAwsError("Internal error", code="InternalServerException", status_code=500)
        return {"job": job}

    async def describe_recovery_instances(self, filters: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.calls.append(("describe_recovery_instances", list(filters["recoveryInstanceIDs"])))
        if self.describe_error is not None:
            raise self.describe_error
        items = [
            {"recoveryInstanceID": i, "ec2InstanceState": "RUNNING"}
            for i in filters["recoveryInstanceIDs"]
            if i in self.live
        ]
        if self.listed_while_terminating:
            state = self.listed_while_terminating
            items += [
                {"recoveryInstanceID": i, "ec2InstanceState": state}
                for i in filters["recoveryInstanceIDs"]
                if i in self.terminating
            ]
        return {"items": items}

    async def describe_jobs(self, filters: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.calls.append(("describe_jobs", []))
        assert set(filters) == {"fromDate"} and filters["fromDate"].endswith("Z")
        return {"items": list(self.jobs)}


class FakeAws:
    """What ScopeTerminator uses of ``AwsClients``: stats, the global limiter, ``pages``."""

    def __init__(self) -> None:
        self.stats = CallStats()
        self.limiter = anyio.CapacityLimiter(8)

    async def pages(self, client: Any, method: str, context: Any, *, cursor: str, scope_limiter: Any, **params: Any):
        yield await getattr(client, method)(**params)


@dataclass
class FakeRuntime:
    aws: FakeAws = field(default_factory=FakeAws)
    settings: SyncSettings = field(
        default_factory=lambda: SyncSettings(retry=RetrySettings(max_attempts=3, base_delay=0.001, max_delay=0.01))
    )


@dataclass
class Collected:
    terminated: dict[str, str | None] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    not_attempted: list[str] = field(default_factory=list)

    def report(self) -> GroupReport:
        async def accepted(batch: Sequence[Mapping[str, Any]], job: Job | None) -> None:
            for rid in ids(batch):
                assert rid not in self.terminated, "reported terminated twice"
                self.terminated[rid] = job.job_id if job else None

        def rejected(batch: Sequence[Mapping[str, Any]], exc: AwsError) -> None:
            self.failed.update({rid: exc.error_type for rid in ids(batch)})

        def not_attempted(batch: Sequence[Mapping[str, Any]]) -> None:
            self.not_attempted.extend(ids(batch))

        return GroupReport(accepted, rejected, not_attempted)


async def run_group(drs: InMemoryDrs, batch: list[dict[str, Any]], budget: Budget | None = None) -> Collected:
    collected = Collected()
    terminator = ScopeTerminator(FakeRuntime(), drs, SCOPE, collected.report(), budget or Budget())
    await terminator.run(batch)
    return collected


async def test_scope_terminator_sends_at_most_100_ids_a_call_and_describes_nothing() -> None:
    batch = records(250)
    drs = InMemoryDrs(live=ids(batch))

    collected = await run_group(drs, batch)

    assert [len(c) for c in drs.terminate_calls()] == [100, 100, 50]
    assert set(collected.terminated) == ids(batch) and not collected.failed
    assert drs.describe_calls() == 0


async def test_scope_terminator_isolates_conflicting_ids_one_by_one() -> None:
    """One already-terminated id fails DRS's whole call; the others still terminate."""
    batch = records(5)
    gone = batch[2]["recoveryInstanceId"]
    drs = InMemoryDrs(live=ids(batch) - {gone})

    collected = await run_group(drs, batch)

    assert len(drs.terminate_calls()) == 1 + 5
    assert collected.failed == {gone: CONFLICT}
    assert set(collected.terminated) == ids(batch) - {gone}
    assert not drs.live


async def test_scope_terminator_splits_a_batch_on_a_validation_rejection_too() -> None:
    batch = records(4)
    bad = batch[1]["recoveryInstanceId"]
    drs = InMemoryDrs(live=ids(batch), rejected={bad: "ValidationException"})

    collected = await run_group(drs, batch)

    assert collected.failed == {bad: "ValidationException"}
    assert set(collected.terminated) == ids(batch) - {bad}


async def test_scope_terminator_retries_a_throttled_call() -> None:
    batch = records(3)
    drs = InMemoryDrs(live=ids(batch), script=["throttle"])

    collected = await run_group(drs, batch)

    assert len(drs.terminate_calls()) == 2
    assert set(collected.terminated) == ids(batch)
    assert drs.describe_calls() == 0


async def test_scope_terminator_reports_throttling_past_the_attempts_as_failed() -> None:
    batch = records(2)
    drs = InMemoryDrs(live=ids(batch), script=["throttle"] * 3)

    collected = await run_group(drs, batch)

    assert collected.failed == dict.fromkeys(ids(batch), "ThrottlingException")
    assert drs.live == ids(batch)


async def test_scope_terminator_applied_then_500_reports_terminated_with_the_job_and_calls_once() -> None:
    batch = records(3)
    drs = InMemoryDrs(live=ids(batch), script=["apply-then-fail"])

    collected = await run_group(drs, batch)

    assert len(drs.terminate_calls()) == 1
    assert set(collected.terminated) == ids(batch) and not collected.failed
    assert set(collected.terminated.values()) == {drs.jobs[0]["jobID"]}


async def test_scope_terminator_applied_then_500_without_a_visible_job_reports_terminated_without_job() -> None:
    batch = records(2)
    drs = InMemoryDrs(live=ids(batch), script=["apply-then-fail"], publish_jobs=False)

    collected = await run_group(drs, batch)

    assert len(drs.terminate_calls()) == 1
    assert collected.terminated == dict.fromkeys(ids(batch))


async def test_scope_terminator_applied_then_500_still_listed_while_shutting_down_is_terminated() -> None:
    """DRS keeps listing a recovery instance while its job runs; its EC2 state says it is going."""
    batch = records(2)
    drs = InMemoryDrs(
        live=ids(batch), script=["apply-then-fail"], publish_jobs=False, listed_while_terminating="SHUTTING-DOWN"
    )

    collected = await run_group(drs, batch)

    assert len(drs.terminate_calls()) == 1
    assert collected.terminated == dict.fromkeys(ids(batch))


async def test_scope_terminator_job_naming_only_the_server_gives_the_job_id_of_a_proven_instance() -> None:
    """DRS lists the instances as shutting down (proof); a job naming only their servers supplies the id."""
    batch = records(2)
    drs = InMemoryDrs(
        live=ids(batch),
        script=["apply-then-fail"],
        jobs_name_servers_only=True,
        listed_while_terminating="SHUTTING-DOWN",
    )

    collected = await run_group(drs, batch)

    assert len(drs.terminate_calls()) == 1
    assert set(collected.terminated.values()) == {drs.jobs[0]["jobID"]}


async def test_scope_terminator_job_naming_only_the_server_is_no_proof_for_a_running_instance() -> None:
    """A TERMINATE job that names only the source server may be about an older instance of it:
    an instance DRS still lists as running is not reported terminated on that job's word."""
    batch = records(1)
    (rid,) = ids(batch)
    older_job = {
        "jobID": "drsjob-older0000000000",
        "type": "TERMINATE",
        "status": "COMPLETED",
        "participatingServers": [{"sourceServerID": "s-" + rid[2:]}],
    }
    drs = InMemoryDrs(live=ids(batch), script=["fail"], jobs=[older_job])

    collected = await run_group(drs, batch)

    assert drs.terminate_calls() == [[rid], [rid]]  # looked first, then sent again: it was untouched
    assert not drs.live
    assert collected.terminated[rid] != older_job["jobID"]


async def test_scope_terminator_not_applied_500_looks_then_calls_again() -> None:
    batch = records(2)
    drs = InMemoryDrs(live=ids(batch), script=["fail"])

    collected = await run_group(drs, batch)

    assert len(drs.terminate_calls()) == 2
    assert drs.describe_calls() == 2
    assert set(collected.terminated) == ids(batch) and not drs.live


async def test_scope_terminator_ambiguous_answer_then_conflict_is_terminated_not_failed() -> None:
    """The first call was applied but the job is not visible yet and DRS still lists the
    instance: the second call meets a conflict, which proves the first one acted."""
    batch = records(1)
    drs = InMemoryDrs(live=ids(batch), script=["fail"])
    drs.rejected = {batch[0]["recoveryInstanceId"]: CONFLICT}

    collected = await run_group(drs, batch)

    assert collected.terminated == {batch[0]["recoveryInstanceId"]: None}
    assert not collected.failed


async def test_scope_terminator_cannot_look_so_reports_failed_and_never_calls_again() -> None:
    batch = records(2)
    drs = InMemoryDrs(
        live=ids(batch),
        script=["apply-then-fail"],
        describe_error=PermanentAwsError("denied", code="AccessDeniedException", status_code=403),
    )

    collected = await run_group(drs, batch)

    assert len(drs.terminate_calls()) == 1
    assert collected.failed == dict.fromkeys(ids(batch), "InternalServerException")


async def test_scope_terminator_gives_up_after_the_ambiguous_rounds() -> None:
    batch = records(1)
    drs = InMemoryDrs(live=ids(batch), script=["fail"] * 10)

    collected = await run_group(drs, batch)

    assert len(drs.terminate_calls()) == 3
    assert collected.failed == dict.fromkeys(ids(batch), "InternalServerException")


async def test_scope_terminator_starts_no_call_past_its_budget() -> None:
    batch = records(3)
    drs = InMemoryDrs(live=ids(batch))

    collected = await run_group(drs, batch, Budget(ends_at=0.0))

    assert drs.calls == []
    assert set(collected.not_attempted) == ids(batch)


def failed(error_type: str) -> Failed:
    return Failed("i-1", "s-1", SCOPE, "message", error_type)


def terminated() -> Terminated:
    return Terminated("i-2", "s-2", SCOPE, "drsjob-1")


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        pytest.param(TerminationOutcome(1, failed=[failed(CONFLICT)]), True, id="all-conflict"),
        # The orchestration's Execution Details page stops tracking on the flag
        # (frontend/src/pages/ExecutionDetailsPage.tsx): never when something was terminated.
        pytest.param(TerminationOutcome(2, [terminated()], [failed(CONFLICT)]), False, id="some-done-rest-conflict"),
        pytest.param(TerminationOutcome(2, failed=[failed(CONFLICT), failed("AccessDenied")]), False, id="mixed"),
        pytest.param(TerminationOutcome(1, [terminated()]), False, id="no-failure"),
    ],
)
def test_termination_body_already_terminated_only_when_nothing_was_and_every_failure_conflicts(
    outcome: TerminationOutcome, expected: bool
) -> None:
    assert termination_body("exec-1", outcome).get("alreadyTerminated", False) is expected


def test_termination_body_has_contract_fields() -> None:
    outcome = TerminationOutcome(2, [terminated()], [failed("AccessDenied")])

    body = termination_body("exec-1", outcome)

    assert (
        body["terminated"][0].items()
        >= {"recoveryInstanceId": "i-2", "region": "us-east-1", "jobId": "drsjob-1"}.items()
    )
    assert (
        body["failed"][0].items()
        >= {
            "recoveryInstanceId": "i-1",
            "region": "us-east-1",
            "error": "message",
            "errorType": "AccessDenied",
        }.items()
    )
    assert (body["totalFound"], body["totalTerminated"], body["totalFailed"]) == (2, 1, 1)
    assert body["message"] and body["executionId"] == "exec-1"


def test_no_instances_body_shape() -> None:
    body = no_instances_body("exec-1")

    assert body["noInstancesFound"] is True and body["reason"]
    assert (body["terminated"], body["failed"], body["jobs"]) == ([], [], [])
    assert (body["totalFound"], body["totalTerminated"], body["totalFailed"]) == (0, 0, 0)


def test_termination_body_lists_skipped_and_marks_an_incomplete_run() -> None:
    outcome = TerminationOutcome(3, [terminated()], skipped=[Skipped("i-3", SCOPE, "inferred")], not_attempted=1)

    body = termination_body("exec-1", outcome)

    assert body["skipped"] == [
        {"recoveryInstanceId": "i-3", "region": "us-east-1", "reason": "inferred", "accountId": SCOPE.account_id}
    ]
    assert body["incomplete"] is True and body["totalNotAttempted"] == 1
