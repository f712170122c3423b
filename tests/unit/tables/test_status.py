"""syncengine.tables.status: the status item a scope's result becomes, and the lease release it carries.

A small in-memory double of the DynamoDB seam records each call's parameters (the conditions are
the point here; tests/integration/test_truthful_status.py runs them against DynamoDB backends)."""

from __future__ import annotations

from typing import Any

from syncengine.core.errors import AwsError, PermanentAwsError
from syncengine.core.models import Scope, ScopeError, ScopeOutcome, ScopeResult
from syncengine.dynamodb.seam import CONDITION_FAILED, Dynamo
from syncengine.tables.status import StatusStore

SCOPE = Scope("123456789012", "us-east-1")


class RecordingDynamo:
    def __init__(self, error: AwsError | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.error = error

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.calls.append((method, params))
        if self.error is not None:
            raise self.error
        return {}

    write_if = Dynamo.write_if  # the seam's own conditional-write rule over this double's call


def _store(dynamo: RecordingDynamo) -> StatusStore:
    return StatusStore(dynamo, "status", lease_seconds=900.0, stale_after_seconds=900.0)  # type: ignore[arg-type]


async def test_status_finish_with_owner_releases_only_our_lease() -> None:
    dynamo = RecordingDynamo()
    assert await _store(dynamo).finish_scope(ScopeResult(SCOPE, ScopeOutcome.SUCCESS), owner="run-1")
    ((_, params),) = dynamo.calls
    assert params["ConditionExpression"] == "#owner = :owner"
    assert params["ExpressionAttributeValues"][":owner"] == {"S": "run-1"}
    assert "REMOVE" in params["UpdateExpression"] and "#owner" in params["UpdateExpression"]


async def test_status_finish_without_owner_leaves_the_lease_alone() -> None:
    dynamo = RecordingDynamo()
    assert await _store(dynamo).finish_scope(ScopeResult(SCOPE, ScopeOutcome.SUCCESS), owner=None)
    ((_, params),) = dynamo.calls
    assert "ConditionExpression" not in params
    assert "#owner" not in params["ExpressionAttributeNames"]


async def test_status_finish_of_a_lease_held_by_another_run_writes_nothing() -> None:
    dynamo = RecordingDynamo(PermanentAwsError("no", code=CONDITION_FAILED))
    assert not await _store(dynamo).finish_scope(ScopeResult(SCOPE, ScopeOutcome.SUCCESS), owner="run-1")


async def test_status_targeted_result_never_stands_for_the_scope() -> None:
    """A wave's or an event's sync sets only the targeted fields, never status or success time."""
    dynamo = RecordingDynamo()
    await _store(dynamo).finish_scope(ScopeResult(SCOPE, ScopeOutcome.SUCCESS, targeted=True), owner=None)
    ((_, params),) = dynamo.calls
    names = set(params["ExpressionAttributeNames"].values())
    assert {"lastTargetedStatus", "lastTargetedTime"} <= names
    assert not names & {"status", "lastSuccessTime", "instanceCount"}


async def test_status_failed_result_records_its_error() -> None:
    dynamo = RecordingDynamo()
    error = ScopeError(SCOPE.account_id, SCOPE.region, "AccessDenied", "denied")
    await _store(dynamo).finish_scope(ScopeResult(SCOPE, ScopeOutcome.FAILED, error=error), owner=None)
    ((_, params),) = dynamo.calls
    assert params["ExpressionAttributeValues"][":errtype"] == {"S": "AccessDenied"}
