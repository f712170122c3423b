"""Issue 14 acceptance: real-shaped EventBridge events and SQS batches to the refresh function,
against the independent fake AWS, on both DynamoDB backends.

Event shapes: DRS "DRS Source Server Launch Result" with the source server ARN in
``resources`` and ``detail.job-id``
(https://docs.aws.amazon.com/drs/latest/userguide/monitoring-event-bridge.html); EC2 "EC2
Instance State-change Notification" with ``detail.instance-id`` and ``detail.state``
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitoring-instance-state-changes.html).
"""

from __future__ import annotations

import json
from typing import Any

from handlers.data_management import lambda_handler as data_management
from handlers.query import lambda_handler as query
from handlers.refresh import lambda_handler as refresh
from tests.acceptance.conftest import (
    DYNALITE_ONLY,
    HUB,
    REGION,
    TARGET,
    Context,
    Estate,
    api_event,
    body_of,
    drs_event,
    sqs_batch,
    target_account_items,
)
from tests.acceptance.fake_aws import AwsError


def seed(estate: Estate) -> dict[str, list[str]]:
    """Three recovering servers per account, synced; account -> server ids."""
    servers = {}
    for account in (HUB, TARGET):
        servers[account] = [estate.aws.add_server(account, REGION, f"{account[-4:]}-{n}") for n in range(3)]
        estate.aws.launch(account, REGION, servers[account])
    estate.put("target_accounts", *target_account_items({HUB: [REGION], TARGET: [REGION]}))
    report = data_management({"operation": "sync_recovery_instances"}, Context())
    assert report["status"] == "SUCCESS", report
    return servers


def launch_result(account: str, server_id: str, job_id: str) -> dict[str, Any]:
    return drs_event(
        "DRS Source Server Launch Result",
        REGION,
        account,
        f"arn:aws:drs:{REGION}:{account}:source-server/{server_id}",
        {"state": "RECOVERY_LAUNCH_SUCCEEDED", "job-id": job_id},
    )


def ec2_state_change(account: str, instance_id: str, state: str) -> dict[str, Any]:
    return drs_event(
        "EC2 Instance State-change Notification",
        REGION,
        account,
        f"arn:aws:ec2:{REGION}:{account}:instance/{instance_id}",
        {"instance-id": instance_id, "state": state},
    )


def test_launch_result_replaces_the_relaunched_servers_record_with_drs_calls_for_that_server(estate: Estate) -> None:
    server = seed(estate)[TARGET][0]
    old = estate.cache()[server]["recoveryInstanceId"]
    job = estate.aws.launch(TARGET, REGION, [server])
    new = job["participatingServers"][0]["recoveryInstanceID"]
    estate.put(
        "execution_history",
        {
            "executionId": "exec-relaunch",
            "planId": "plan-r",
            "planName": "Relaunch",
            "status": "COMPLETED",
            "startTime": 1_796_000_000,
            "executionType": "DRILL",
            "waves": [
                {
                    "waveNumber": 1,
                    "region": REGION,
                    "accountId": TARGET,
                    "jobId": job["jobID"],
                    "serverStatuses": [{"sourceServerId": server}],
                }
            ],
        },
    )
    estate.aws.calls.clear()

    refresh(launch_result(TARGET, server, job["jobID"]), Context())

    record = estate.cache()[server]
    assert (record["recoveryInstanceId"], old != new) == (new, True)
    assert (record["sourceExecutionId"], record["attribution"]) == ("exec-relaunch", "job")
    drs_calls = estate.aws.of("drs")
    assert {c.operation for c in drs_calls} >= {"DescribeRecoveryInstances", "DescribeSourceServers"}
    for call in drs_calls:
        assert list(call.params["filters"].values()) == [[server]], call
    ec2_filters = [
        sorted(v for k, v in call.params.items() if k.startswith("Filter.1.Value."))
        for call in estate.aws.of("ec2", "DescribeInstances")
    ]
    assert ec2_filters == [[new]]


def test_ec2_terminate_event_updates_that_one_record(estate: Estate) -> None:
    server = seed(estate)[TARGET][1]
    before = estate.cache()
    instance = before[server]["ec2InstanceId"]
    estate.aws.set_ec2_state(TARGET, REGION, instance, "terminated")

    refresh(ec2_state_change(TARGET, instance, "terminated"), Context())

    after = estate.cache()
    # EC2's lower-case state (API-CONTRACT.md); DRS's own value beside it.
    assert (after[server]["ec2InstanceState"], after[server]["drsInstanceState"]) == ("terminated", "TERMINATED")
    assert {k: v for k, v in after.items() if k != server} == {k: v for k, v in before.items() if k != server}


def test_event_for_an_instance_the_cache_does_not_hold_makes_no_aws_call(estate: Estate) -> None:
    seed(estate)
    estate.aws.calls.clear()

    refresh(ec2_state_change(TARGET, "i-0123456789abcdef0", "stopped"), Context())

    assert estate.aws.calls == []


def test_sqs_batch_reports_only_the_failing_scopes_message(estate: Estate) -> None:
    servers = seed(estate)
    failing = ("DescribeRecoveryInstances", "DescribeSourceServers")
    for operation in failing:
        estate.aws.errors[("drs", operation, TARGET, REGION)] = AwsError(
            500, "InternalServerException", "An internal error occurred."
        )
    batch = sqs_batch(
        ("good", json.dumps({"accountId": HUB, "region": REGION, "sourceServerIds": servers[HUB][:1]})),
        ("failing", json.dumps({"accountId": TARGET, "region": REGION, "sourceServerIds": servers[TARGET][:1]})),
        ("malformed", "not json {"),
    )

    result = refresh(batch, Context())

    assert result == {"batchItemFailures": [{"itemIdentifier": "failing"}]}
    assert {(c.account_id, c.operation) for c in estate.aws.of("drs")} >= {(HUB, "DescribeRecoveryInstances")}


@DYNALITE_ONLY
def test_sqs_batch_coalesces_launch_results_of_one_scope_into_one_filtered_sync(estate: Estate) -> None:
    servers = seed(estate)[TARGET][:2]
    job = estate.aws.launch(TARGET, REGION, servers)
    estate.aws.calls.clear()
    events = [json.dumps(launch_result(TARGET, sid, job["jobID"])) for sid in servers]
    batch = sqs_batch(*((f"m{n}", body) for n, body in enumerate(events)))

    result = refresh(batch, Context())

    assert result == {"batchItemFailures": []}
    described = estate.aws.of("drs", "DescribeRecoveryInstances")
    assert [sorted(c.params["filters"]["sourceServerIDs"]) for c in described] == [sorted(servers)]
    new = {p["sourceServerID"]: p["recoveryInstanceID"] for p in job["participatingServers"]}
    assert {sid: estate.cache()[sid]["recoveryInstanceId"] for sid in servers} == new


@DYNALITE_ONLY
def test_failback_state_change_refreshes_the_recovery_instances_server_only(estate: Estate) -> None:
    server = seed(estate)[TARGET][2]
    rid = estate.cache()[server]["recoveryInstanceId"]
    estate.aws.calls.clear()
    event = drs_event(
        "DRS Recovery Instance Failback State Change",
        REGION,
        TARGET,
        f"arn:aws:drs:{REGION}:{TARGET}:recovery-instance/{rid}",
        {"state": "FAILBACK_IN_PROGRESS"},
    )

    refresh(event, Context())

    described = estate.aws.of("drs", "DescribeRecoveryInstances")
    assert described and all(c.account_id == TARGET for c in described)
    assert all(server in str(c.params["filters"]) or rid in str(c.params["filters"]) for c in described)


@DYNALITE_ONLY
def test_event_refresh_leaves_the_full_syncs_run_summary(estate: Estate) -> None:
    server = seed(estate)[TARGET][1]
    before = body_of(query(api_event("apigw_rest_status"), Context()))
    instance = estate.cache()[server]["ec2InstanceId"]
    estate.aws.set_ec2_state(TARGET, REGION, instance, "stopped")

    refresh(ec2_state_change(TARGET, instance, "stopped"), Context())

    after = body_of(query(api_event("apigw_rest_status"), Context()))
    assert estate.cache()[server]["ec2InstanceState"] == "stopped"
    assert (after["lastSyncTime"], after["instancesUpdated"]) == (before["lastSyncTime"], before["instancesUpdated"])
