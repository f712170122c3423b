"""syncengine.terminate: response shapes and the batch/conflict logic against an in-memory DRS."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from syncengine.config import SyncSettings
from syncengine.errors import AccessDeniedError, PermanentAwsError
from syncengine.models import AccountTarget, Scope
from syncengine.terminate import (
    CONFLICT,
    Failed,
    Terminated,
    TerminationOutcome,
    no_instances_body,
    terminate_group,
    termination_body,
)

SCOPE = Scope("123456789012", "us-east-1")
TARGET = AccountTarget("123456789012", is_current_account=True)


def records(count: int) -> list[dict[str, Any]]:
    return [
        {
            "sourceServerId": f"s-{n:017d}",
            "recoveryInstanceId": f"i-{n:017d}",
            "accountId": SCOPE.account_id,
            "region": SCOPE.region,
        }
        for n in range(count)
    ]


@dataclass
class InMemoryDrs:
    """TerminateRecoveryInstances with DRS's all-or-nothing conflict rule."""

    live: set[str]
    calls: list[list[str]] = field(default_factory=list)
    client_error: Exception | None = None

    async def client(self, service: str, region: str, account: AccountTarget | None = None) -> str:
        if self.client_error is not None:
            raise self.client_error
        return "drs"

    async def call(
        self, client: Any, method: str, context: Any, *, scope_limiter: Any = None, **params: Any
    ) -> Any:
        ids = params["recoveryInstanceIDs"]
        self.calls.append(list(ids))
        assert len(ids) <= 100
        if any(i not in self.live for i in ids):
            raise PermanentAwsError("already terminated", code=CONFLICT, status_code=409)
        self.live -= set(ids)
        return {"job": {"jobID": f"drsjob-{len(self.calls):05d}", "type": "TERMINATE", "status": "PENDING"}}


@dataclass
class FakeRuntime:
    aws: InMemoryDrs
    settings: SyncSettings = field(default_factory=SyncSettings)


async def run_group(drs: InMemoryDrs, batch: list[dict[str, Any]]) -> TerminationOutcome:
    outcome = TerminationOutcome(found=len(batch))
    await terminate_group(FakeRuntime(drs), SCOPE, TARGET, batch, outcome)  # type: ignore[arg-type]
    return outcome


async def test_terminate_group_sends_at_most_100_ids_a_call() -> None:
    batch = records(250)
    drs = InMemoryDrs(live={r["recoveryInstanceId"] for r in batch})

    outcome = await run_group(drs, batch)

    assert [len(c) for c in drs.calls] == [100, 100, 50]
    assert len(outcome.terminated) == 250 and not outcome.failed
    assert len(outcome.jobs) == 3


async def test_terminate_group_isolates_conflicting_ids_one_by_one() -> None:
    """One already-terminated id fails DRS's whole call; the others still terminate."""
    batch = records(5)
    gone = batch[2]["recoveryInstanceId"]
    drs = InMemoryDrs(live={r["recoveryInstanceId"] for r in batch} - {gone})

    outcome = await run_group(drs, batch)

    assert len(drs.calls) == 1 + 5
    assert [f.recovery_instance_id for f in outcome.failed] == [gone]
    assert outcome.failed[0].error_type == CONFLICT
    assert len(outcome.terminated) == 4
    assert not drs.live


async def test_terminate_group_reports_unreachable_account_as_failed() -> None:
    batch = records(3)
    drs = InMemoryDrs(live=set(), client_error=AccessDeniedError("cannot assume role", code="AccessDenied"))

    outcome = await run_group(drs, batch)

    assert {f.error_type for f in outcome.failed} == {"AccessDenied"}
    assert len(outcome.failed) == 3 and not outcome.terminated and not drs.calls


def failed(error_type: str) -> Failed:
    return Failed("i-1", "s-1", SCOPE, "message", error_type)


def terminated() -> Terminated:
    return Terminated("i-2", "s-2", SCOPE, "drsjob-1")


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        pytest.param(TerminationOutcome(1, failed=[failed(CONFLICT)]), True, id="all-conflict"),
        pytest.param(
            TerminationOutcome(2, [terminated()], [failed(CONFLICT)]), True, id="some-done-rest-conflict"
        ),
        pytest.param(
            TerminationOutcome(2, failed=[failed(CONFLICT), failed("AccessDenied")]), False, id="mixed"
        ),
        pytest.param(TerminationOutcome(1, [terminated()]), False, id="no-failure"),
    ],
)
def test_termination_body_already_terminated_only_when_every_failure_conflicts(
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
