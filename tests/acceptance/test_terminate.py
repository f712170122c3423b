"""Issue 11 acceptance: terminate and its preview through the API routes and direct events,
against the independent fake AWS (tests/acceptance/fake_aws.py), on both DynamoDB backends.

The estate: execution ``exec-drill`` has two waves in the target account. Wave 1 is a drill
(job J1) that launched S1 and S2 and planned S3, whose launch failed; an operator later recovered
S3 by hand from the console (job J2, not the execution's). Wave 2 is a real recovery of S4
(job J3, ``isDrill: false``).
"""

from __future__ import annotations

from typing import Any

import pytest

from handlers.data_management import lambda_handler as data_management
from handlers.query import lambda_handler as query
from tests.acceptance.conftest import (
    DYNALITE_ONLY,
    HUB,
    REGION,
    TARGET,
    Context,
    Estate,
    api_event,
    body_of,
    target_account_items,
)
from tests.acceptance.fake_aws import AwsError

EXECUTION = "exec-drill"


def wave(number: int, job: dict[str, Any], statuses: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "waveNumber": number,
        "waveName": f"Wave {number}",
        "protectionGroupId": f"pg-{number}",
        "region": REGION,
        "accountId": TARGET,
        "jobId": job["jobID"],
        "status": "COMPLETED",
        "serverStatuses": statuses,
    }


def seed(estate: Estate, status: str = "COMPLETED") -> dict[str, str]:
    """The estate above, synced; returns name -> recovery instance id (and server ids)."""
    aws = estate.aws
    s1, s2, s3, s4 = (aws.add_server(TARGET, REGION, f"app-{n}") for n in range(1, 5))
    drill = aws.launch(TARGET, REGION, [s1, s2])
    by_hand = aws.launch(TARGET, REGION, [s3])
    recovery = aws.launch(TARGET, REGION, [s4], drill=False)
    launched = {p["sourceServerID"]: p["recoveryInstanceID"] for p in drill["participatingServers"]}
    statuses = [{"sourceServerId": s, "recoveryInstanceId": launched[s], "launchStatus": "LAUNCHED"} for s in (s1, s2)]
    statuses.append({"sourceServerId": s3, "launchStatus": "FAILED"})
    estate.put("target_accounts", *target_account_items({"111122223333": [REGION], TARGET: [REGION]}))
    estate.put(
        "execution_history",
        {
            "executionId": EXECUTION,
            "planId": "plan-1",
            "planName": "Plan 1",
            "executionType": "DRILL",
            "status": status,
            "startTime": 1_796_000_000,
            "accountId": TARGET,
            "waves": [
                wave(1, drill, statuses),
                wave(2, recovery, [{"sourceServerId": s4, "launchStatus": "LAUNCHED"}]),
            ],
        },
    )
    report = data_management({"operation": "sync_recovery_instances"}, Context())
    assert report["status"] == "SUCCESS", report
    return {
        "s1": launched[s1],
        "s2": launched[s2],
        "by_hand": by_hand["participatingServers"][0]["recoveryInstanceID"],
        "non_drill": recovery["participatingServers"][0]["recoveryInstanceID"],
        "s3": s3,
        "s4": s4,
    }


def terminate(
    body: dict[str, Any] | None = None, event: str = "apigw_rest_terminate", base64: bool = False
) -> dict[str, Any]:
    return data_management(api_event(event, body, base64, executionId=EXECUTION), Context())


def terminated_ids(estate: Estate) -> list[str]:
    calls = estate.aws.of("drs", "TerminateRecoveryInstances")
    return [rid for call in calls for rid in call.params["recoveryInstanceIDs"]]


def test_terminate_never_touches_an_instance_launched_outside_the_execution(estate: Estate) -> None:
    ids = seed(estate)

    response = terminate()

    assert response["statusCode"] == 200, response
    body = body_of(response)
    assert sorted(t["recoveryInstanceId"] for t in body["terminated"]) == sorted([ids["s1"], ids["s2"]])
    assert ids["by_hand"] in {s["recoveryInstanceId"] for s in body["skipped"]}
    assert ids["by_hand"] not in terminated_ids(estate)
    assert estate.cache()[ids["s3"]]["recoveryInstanceId"] == ids["by_hand"]


@pytest.mark.parametrize("event", ["apigw_rest_terminate", "apigw_http_terminate"], ids=["rest", "http"])
def test_terminate_active_execution_is_409_without_a_terminate_call(estate: Estate, event: str) -> None:
    seed(estate, status="IN_PROGRESS")

    response = terminate(event=event)

    assert response["statusCode"] == 409
    assert body_of(response)["error"] == "EXECUTION_IN_PROGRESS"
    assert estate.aws.count("drs", "TerminateRecoveryInstances") == 0


def test_terminate_skips_a_non_drill_instance_by_default(estate: Estate) -> None:
    ids = seed(estate)

    body = body_of(terminate())

    assert ids["non_drill"] in {s["recoveryInstanceId"] for s in body["skipped"]}
    assert ids["non_drill"] not in terminated_ids(estate)
    assert ids["s4"] in estate.cache()


@pytest.mark.parametrize(
    ("event", "base64"), [("apigw_rest_terminate", False), ("apigw_http_terminate", True)], ids=["rest", "http-base64"]
)
def test_terminate_include_non_drill_terminates_the_real_recovery_instance(
    estate: Estate, event: str, base64: bool
) -> None:
    ids = seed(estate)

    body = body_of(terminate({"includeNonDrill": True}, event, base64))

    assert ids["non_drill"] in {t["recoveryInstanceId"] for t in body["terminated"]}
    assert ids["non_drill"] in terminated_ids(estate)
    assert ids["by_hand"] not in terminated_ids(estate)


@pytest.mark.parametrize("shows_in_state", [True, False], ids=["shutting-down", "job-only"])
def test_terminate_applied_then_500_reports_terminated_and_never_calls_twice(
    estate: Estate, shows_in_state: bool
) -> None:
    """DRS accepted the call (a TERMINATE job names the instances) and answered 500. Whether the
    instance already reads SHUTTING-DOWN or still RUNNING, the job is the proof."""
    ids = seed(estate)
    estate.aws.terminate_then_500 = True
    estate.aws.terminate_shows_in_state = shows_in_state

    body = data_management({"operation": "terminate_recovery_instances", "executionId": EXECUTION}, Context())

    assert sorted(t["recoveryInstanceId"] for t in body["terminated"]) == sorted([ids["s1"], ids["s2"]])
    assert body["failed"] == []
    assert sorted(terminated_ids(estate)) == sorted([ids["s1"], ids["s2"]])  # each named exactly once
    job = estate.aws.scope(TARGET, REGION).jobs[-1]
    assert {t["jobId"] for t in body["terminated"]} == {job["jobID"]}
    cached = {r["recoveryInstanceId"] for r in estate.cache().values()}
    assert ids["s1"] not in cached and ids["s2"] not in cached


@pytest.mark.parametrize("handler", [query, data_management], ids=["query", "data_management"])
def test_preview_makes_no_aws_call(estate: Estate, handler: Any) -> None:
    ids = seed(estate)
    calls_before = len(estate.aws.calls)

    response = handler(api_event("apigw_rest_execution_recovery_instances", executionId=EXECUTION), Context())

    assert response["statusCode"] == 200, response
    body = body_of(response)
    instances = {i["recoveryInstanceId"]: i for i in body["instances"]}
    skipped = {s["recoveryInstanceId"]: s for s in body["skipped"]}
    # Only what terminate would end is in ``instances`` (the orchestration's dialog counts them).
    assert ids["by_hand"] not in instances and skipped[ids["by_hand"]]["attribution"] == "inferred"
    assert ids["s1"] in instances and body["totalInstances"] == len(instances)
    assert len(estate.aws.calls) == calls_before


@DYNALITE_ONLY
def test_terminate_reports_an_instance_someone_else_is_terminating_as_failed_and_terminates_the_rest(
    estate: Estate,
) -> None:
    """DRS answers 409 ConflictException for a recovery instance already being terminated (e.g.
    from the console); the other instance of the batch is still terminated."""
    ids = seed(estate)
    estate.aws.scope(TARGET, REGION).terminating.add(ids["s2"])

    body = data_management({"operation": "terminate_recovery_instances", "executionId": EXECUTION}, Context())

    assert [t["recoveryInstanceId"] for t in body["terminated"]] == [ids["s1"]]
    assert [(f["recoveryInstanceId"], f["errorType"]) for f in body["failed"]] == [(ids["s2"], "ConflictException")]
    # Something was terminated: never "already terminated" (API-CONTRACT.md; the orchestration's
    # Execution Details page stops tracking the termination on that flag).
    assert "alreadyTerminated" not in body


@DYNALITE_ONLY
def test_terminate_retries_a_throttled_call_and_terminates_once(estate: Estate) -> None:
    """429 ThrottlingException proves DRS did not act: the same call is sent again."""
    ids = seed(estate)
    estate.aws.fail_next[("drs", "TerminateRecoveryInstances")] = [
        AwsError(429, "ThrottlingException", "Rate exceeded")
    ]

    body = data_management({"operation": "terminate_recovery_instances", "executionId": EXECUTION}, Context())

    assert sorted(t["recoveryInstanceId"] for t in body["terminated"]) == sorted([ids["s1"], ids["s2"]])
    assert len(estate.aws.scope(TARGET, REGION).terminating) == 2
    assert [j["type"] for j in estate.aws.scope(TARGET, REGION).jobs].count("TERMINATE") == 1


@DYNALITE_ONLY
def test_terminate_after_a_500_that_did_nothing_looks_then_terminates(estate: Estate) -> None:
    """A 500 before DRS acted: the look finds no TERMINATE job and untouched instances, so the
    second call is safe and is the only one that starts a job."""
    ids = seed(estate)
    estate.aws.fail_next[("drs", "TerminateRecoveryInstances")] = [
        AwsError(500, "InternalServerException", "An internal error occurred.")
    ]

    body = data_management({"operation": "terminate_recovery_instances", "executionId": EXECUTION}, Context())

    assert sorted(t["recoveryInstanceId"] for t in body["terminated"]) == sorted([ids["s1"], ids["s2"]])
    job = estate.aws.scope(TARGET, REGION).jobs[-1]
    assert (job["type"], {t["jobId"] for t in body["terminated"]}) == ("TERMINATE", {job["jobID"]})
    order = [
        c.operation
        for c in estate.aws.of("drs")
        if c.operation == "TerminateRecoveryInstances" or "recoveryInstanceIDs" in (c.params.get("filters") or {})
    ]
    assert order == ["TerminateRecoveryInstances", "DescribeRecoveryInstances", "TerminateRecoveryInstances"]


@DYNALITE_ONLY
def test_terminate_sends_each_accounts_instances_with_that_accounts_credentials(estate: Estate) -> None:
    """An execution with a wave in the hub and one in the target account: one call per account,
    each signed with that account's credentials (the fake knows instances per account)."""
    ids = seed(estate)
    hub_server = estate.aws.add_server(HUB, REGION, "hub-app")
    hub_job = estate.aws.launch(HUB, REGION, [hub_server])
    item = estate.table("execution_history").get_item(Key={"executionId": EXECUTION, "planId": "plan-1"})["Item"]
    hub_wave = {**wave(3, hub_job, [{"sourceServerId": hub_server}]), "accountId": HUB}
    estate.put("execution_history", {**item, "waves": [*item["waves"], hub_wave]})
    data_management({"operation": "sync_recovery_instances"}, Context())

    body = body_of(terminate())

    hub_rid = hub_job["participatingServers"][0]["recoveryInstanceID"]
    assert sorted(t["recoveryInstanceId"] for t in body["terminated"]) == sorted([ids["s1"], ids["s2"], hub_rid])
    sent = estate.aws.of("drs", "TerminateRecoveryInstances")
    calls = {c.account_id: sorted(c.params["recoveryInstanceIDs"]) for c in sent}
    assert calls == {HUB: [hub_rid], TARGET: sorted([ids["s1"], ids["s2"]])}
