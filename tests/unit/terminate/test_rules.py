"""syncengine.terminate.rules: the request body, the active-execution refusal, and which
cached instances an execution may terminate."""

from __future__ import annotations

from typing import Any

import pytest

from syncengine.core.errors import ExecutionInProgressError, InvalidRequestError
from syncengine.core.models import Attribution
from syncengine.tables.execution_index.lookup import ACTIVE_STATUSES
from syncengine.terminate.rules import (
    REASON_INFERRED,
    REASON_NOT_DRILL,
    candidates,
    parse_terminate_body,
    preview_body,
    refuse_if_active,
)

EXECUTION = {
    "executionId": "exec-1",
    "planId": "plan-1",
    "status": "COMPLETED",
    "startTime": 1_750_000_000,
    "waves": [
        {
            "waveNumber": 1,
            "region": "us-east-1",
            "jobId": "drsjob-aaaaaaaaaaaaaaaaa",
            "serverStatuses": [
                {"sourceServerId": "s-00000000000000001", "recoveryInstanceId": "i-00000000000000001"},
                {"sourceServerId": "s-00000000000000002", "recoveryInstanceId": "i-00000000000000002"},
                {"sourceServerId": "s-00000000000000003"},
            ],
        }
    ],
}


def record(n: int, *, job_id: str | None = None, is_drill: Any = True) -> dict[str, Any]:
    item: dict[str, Any] = {
        "sourceServerId": f"s-{n:017d}",
        "recoveryInstanceId": f"i-{n:017d}",
        "accountId": "123456789012",
        "region": "us-east-1",
        "sourceExecutionId": "exec-1",
    }
    if job_id:
        item["jobId"] = job_id
    if is_drill is not None:
        item["isDrill"] = is_drill
    return item


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(None, False, id="no-body"),
        pytest.param({}, False, id="empty-object"),
        pytest.param({"includeNonDrill": True}, True, id="true"),
        pytest.param({"includeNonDrill": False}, False, id="false"),
    ],
)
def test_parse_terminate_body_accepts_the_flag(data: Any, expected: bool) -> None:
    assert parse_terminate_body(data) is expected


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param([], "JSON object", id="list"),
        pytest.param("yes", "JSON object", id="string"),
        pytest.param({"includeNonDrill": "true"}, "true or false", id="string-flag"),
        pytest.param({"includeNonDrill": 1}, "true or false", id="number-flag"),
        pytest.param({"force": True}, "Unknown field", id="unknown-key"),
    ],
)
def test_parse_terminate_body_refuses_with_a_sentence(data: Any, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        parse_terminate_body(data)


def test_parse_terminate_body_ignores_the_envelope_keys_of_a_direct_event() -> None:
    event = {"operation": "terminate_recovery_instances", "executionId": "exec-1", "includeNonDrill": True}

    assert parse_terminate_body(event, ignored=frozenset({"operation", "executionId"})) is True


@pytest.mark.parametrize("status", sorted(ACTIVE_STATUSES))
def test_refuse_if_active_raises_for_every_active_status(status: str) -> None:
    with pytest.raises(ExecutionInProgressError) as caught:
        refuse_if_active("exec-1", [{**EXECUTION, "status": status}])

    assert caught.value.execution_status == status


@pytest.mark.parametrize("status", ["COMPLETED", "FAILED", "CANCELLED", "PARTIAL", None])
def test_refuse_if_active_lets_a_finished_execution_through(status: str | None) -> None:
    refuse_if_active("exec-1", [{**EXECUTION, "status": status}])


def test_candidates_terminable_by_job_and_by_recovery_instance_only() -> None:
    chosen = candidates(
        "exec-1",
        [EXECUTION],
        [record(1), record(7, job_id="drsjob-aaaaaaaaaaaaaaaaa"), record(3)],
        include_non_drill=False,
    )

    by_id = {c.record["recoveryInstanceId"]: c for c in chosen}
    assert by_id["i-00000000000000001"].attribution is Attribution.RECOVERY_INSTANCE
    assert by_id["i-00000000000000007"].attribution is Attribution.JOB
    assert by_id["i-00000000000000003"].attribution is Attribution.INFERRED
    assert [c.terminable for c in chosen] == [True, True, False]
    assert by_id["i-00000000000000003"].reason == REASON_INFERRED


def test_candidates_an_instance_the_execution_never_named_is_inferred_even_if_the_cache_says_otherwise() -> None:
    """A server launched by hand after the drill: the cache points at the execution, its items do not."""
    stray = {**record(9), "attribution": "job"}

    (chosen,) = candidates("exec-1", [EXECUTION], [stray], include_non_drill=False)

    assert chosen.attribution is Attribution.INFERRED and not chosen.terminable


@pytest.mark.parametrize(
    ("is_drill", "include_non_drill", "terminable"),
    [
        pytest.param(False, False, False, id="recovery-skipped"),
        pytest.param(None, False, False, id="unknown-skipped"),
        pytest.param(False, True, True, id="recovery-included"),
        pytest.param(True, False, True, id="drill"),
    ],
)
def test_candidates_non_drill_needs_include_non_drill(is_drill: Any, include_non_drill: bool, terminable: bool) -> None:
    (chosen,) = candidates("exec-1", [EXECUTION], [record(2, is_drill=is_drill)], include_non_drill=include_non_drill)

    assert chosen.terminable is terminable
    assert chosen.reason == (None if terminable else REASON_NOT_DRILL)


def test_preview_body_lists_only_what_terminate_would_end() -> None:
    """``instances`` is what a terminate would end (the orchestration's terminate dialog offers
    "Terminate {instances.length}", frontend/src/components/TerminateInstancesDialog.tsx); the
    rest is in ``skipped`` with its reason."""
    chosen = candidates("exec-1", [EXECUTION], [record(1), record(3)], include_non_drill=False)

    body = preview_body("exec-1", [EXECUTION], chosen)

    assert (body["executionId"], body["executionStatus"]) == ("exec-1", "COMPLETED")
    assert body["totalInstances"] == len(body["instances"]) == 1
    (instance,) = body["instances"]
    (skipped,) = body["skipped"]
    assert instance["recoveryInstanceId"] == "i-00000000000000001" and instance["attribution"] == "recoveryInstance"
    assert (instance["waveNumber"], instance["status"]) == (1, "LAUNCHED")
    assert skipped["recoveryInstanceId"] == "i-00000000000000003"
    assert skipped["attribution"] == "inferred" and skipped["reason"] == REASON_INFERRED
    assert body["message"]


def test_preview_body_entries_carry_what_the_orchestrations_dialog_reads() -> None:
    """``instanceId`` is the EC2 id and ``serverName`` the source server's name (the dialog shows
    ``serverName || hostname``); every contract field is present."""
    cached = {**record(1), "ec2InstanceId": "i-0ec2000000000001", "sourceServerName": "web-01"}
    cached["ec2InstanceState"] = "running"
    chosen = candidates("exec-1", [EXECUTION], [cached, record(3)], include_non_drill=False)

    body = preview_body("exec-1", [EXECUTION], chosen)

    instance, skipped = body["instances"][0], body["skipped"][0]
    assert (instance["instanceId"], instance["serverName"]) == ("i-0ec2000000000001", "web-01")
    assert set(instance) >= {
        "instanceId",
        "recoveryInstanceId",
        "sourceServerId",
        "region",
        "accountId",
        "serverName",
        "jobId",
        "status",
        "ec2InstanceState",
        "isDrill",
        "attribution",
    }
    assert set(skipped) >= {
        "recoveryInstanceId",
        "instanceId",
        "sourceServerId",
        "region",
        "serverName",
        "attribution",
        "isDrill",
        "reason",
    }
    # A record without a name still gives the dialog something to show.
    assert skipped["serverName"] == "s-00000000000000003"
