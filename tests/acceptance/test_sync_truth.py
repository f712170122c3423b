"""Issue 12 acceptance: what the status and check-existing say after syncs against the independent
fake AWS: an opt-in region the target account has not enabled, an account set inactive between
syncs, scoped syncs after a full one. On both DynamoDB backends.

The target account is configured for us-east-1 and af-south-1 (an opt-in region it has not
enabled: EC2 DescribeRegions does not list it, and DRS there answers 403
UnrecognizedClientException; https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import boto3
import pytest

from handlers import dependencies
from handlers.data_management import lambda_handler as data_management
from handlers.query import lambda_handler as query
from tests.acceptance.conftest import (
    DYNALITE_ONLY,
    HUB,
    OPT_IN_REGION,
    REGION,
    TARGET,
    Context,
    DynamoDBWriteCounter,
    Estate,
    api_event,
    body_of,
    load_event,
    target_account_items,
)
from tests.acceptance.fake_aws import AwsError

FULL_SYNC = {"operation": "sync_recovery_instances"}


def seed(estate: Estate) -> dict[str, list[str]]:
    """Three recovering servers per account in us-east-1; account -> server ids."""
    servers = {}
    for account in (HUB, TARGET):
        servers[account] = [estate.aws.add_server(account, REGION, f"{account[-4:]}-{n}") for n in range(3)]
        estate.aws.launch(account, REGION, servers[account])
    estate.put("target_accounts", *target_account_items({HUB: [REGION], TARGET: [REGION, OPT_IN_REGION]}))
    return servers


def status() -> dict[str, Any]:
    response = query(api_event("apigw_rest_status"), Context())
    assert response["statusCode"] == 200, response
    return body_of(response)


def scopes(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["accountId"], s["region"]): s for s in body["scopes"]}


def when(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def test_status_healthy_with_the_disabled_opt_in_region_not_enabled(estate: Estate) -> None:
    seed(estate)

    report = data_management(FULL_SYNC, Context())

    body = status()
    assert report["status"] == "SUCCESS", report
    assert body["status"] == "healthy"
    assert scopes(body)[(TARGET, OPT_IN_REGION)]["status"] == "NOT_ENABLED"


@DYNALITE_ONLY
def test_status_healthy_when_describe_regions_is_denied_and_drs_answers_unrecognized_client(estate: Estate) -> None:
    """Without DescribeRegions, the disabled region's own 403 UnrecognizedClientException tells it."""
    seed(estate)
    for account in (HUB, TARGET):
        estate.aws.errors[("ec2", "DescribeRegions", account, REGION)] = AwsError(
            403, "UnauthorizedOperation", "You are not authorized to perform this operation."
        )

    data_management(FULL_SYNC, Context())

    body = status()
    assert body["status"] == "healthy"
    assert scopes(body)[(TARGET, OPT_IN_REGION)]["status"] == "NOT_ENABLED"
    assert {(c.account_id, c.region) for c in estate.aws.of("drs")} >= {(TARGET, OPT_IN_REGION)}


@DYNALITE_ONLY
def test_enabled_opt_in_region_is_synced(estate: Estate) -> None:
    seed(estate)
    estate.aws.accounts[TARGET].enabled_regions.add(OPT_IN_REGION)
    server = estate.aws.add_server(TARGET, OPT_IN_REGION, "cape-town-1")
    estate.aws.launch(TARGET, OPT_IN_REGION, [server])

    data_management(FULL_SYNC, Context())

    body = status()
    assert body["status"] == "healthy"
    assert scopes(body)[(TARGET, OPT_IN_REGION)]["instanceCount"] == 1
    assert estate.cache()[server]["region"] == OPT_IN_REGION


@DYNALITE_ONLY
def test_uninitialized_drs_region_is_synced_empty_and_healthy(estate: Estate) -> None:
    """DRS never initialised there: UninitializedAccountException means no instances, not a failure."""
    seed(estate)
    estate.aws.accounts[TARGET].enabled_regions.add(OPT_IN_REGION)
    estate.aws.accounts[TARGET].uninitialized.add(OPT_IN_REGION)

    report = data_management(FULL_SYNC, Context())

    body = status()
    assert report["status"] == "SUCCESS", report
    assert body["status"] == "healthy"
    assert scopes(body)[(TARGET, OPT_IN_REGION)]["instanceCount"] == 0


def test_inactive_account_records_and_scopes_are_gone_after_the_next_full_sync(estate: Estate) -> None:
    servers = seed(estate)
    data_management(FULL_SYNC, Context())
    assert set(servers[TARGET]) <= set(estate.cache())
    estate.put("target_accounts", {**target_account_items({HUB: [REGION], TARGET: [REGION]})[1], "status": "inactive"})

    report = data_management(FULL_SYNC, Context())

    assert report["status"] == "SUCCESS", report
    assert set(estate.cache()) == set(servers[HUB])
    assert {account for account, _ in scopes(status())} == {HUB}


@DYNALITE_ONLY
def test_removed_region_records_and_scope_are_gone_after_the_next_full_sync(estate: Estate) -> None:
    seed(estate)
    estate.aws.accounts[TARGET].enabled_regions.add(OPT_IN_REGION)
    server = estate.aws.add_server(TARGET, OPT_IN_REGION, "cape-town-1")
    estate.aws.launch(TARGET, OPT_IN_REGION, [server])
    data_management(FULL_SYNC, Context())
    assert server in estate.cache()
    estate.put("target_accounts", target_account_items({HUB: [REGION], TARGET: [REGION]})[1])

    data_management(FULL_SYNC, Context())

    assert server not in estate.cache()
    assert (TARGET, OPT_IN_REGION) not in scopes(status())


@DYNALITE_ONLY
def test_native_scheduled_event_runs_the_full_sync_the_status_reports(estate: Estate) -> None:
    seed(estate)

    data_management(load_event("eventbridge_scheduled"), Context())

    body = status()
    assert body["status"] == "healthy"
    assert body["lastSyncTime"] is not None
    assert body["scopesSynced"] == 2


def test_failed_configuration_read_deletes_nothing(estate: Estate) -> None:
    seed(estate)
    data_management(FULL_SYNC, Context())
    cached, scope_keys = estate.cache(), set(scopes(status()))
    client = boto3.client("dynamodb", endpoint_url=estate.ddb.endpoint_url, region_name=estate.ddb.region)
    client.delete_table(TableName=estate.ddb.tables.target_accounts)

    report = data_management(FULL_SYNC, Context())

    assert report.get("status") != "SUCCESS", report
    assert estate.cache() == cached
    assert set(scopes(status())) == scope_keys


def test_scoped_sync_leaves_the_full_syncs_last_sync_time(estate: Estate) -> None:
    seed(estate)
    data_management(FULL_SYNC, Context())
    before = status()

    response = data_management(api_event("apigw_rest_sync_scoped", {"accountId": TARGET, "region": REGION}), Context())

    assert response["statusCode"] == 200, response
    after = status()
    assert after["lastSyncTime"] == before["lastSyncTime"]
    assert after["scopesSynced"] == before["scopesSynced"]
    assert "lastScopedSync" in after


def seed_plan(estate: Estate, servers: list[str]) -> None:
    estate.put(
        "protection_groups",
        {
            "groupId": "pg-target",
            "groupName": "Target",
            "region": REGION,
            "accountId": TARGET,
            "sourceServerIds": servers,
        },
    )
    estate.put(
        "recovery_plans",
        {
            "planId": "plan-t",
            "planName": "Target plan",
            "waves": [{"waveNumber": 1, "waveName": "One", "protectionGroupId": "pg-target"}],
        },
    )


def test_check_existing_returns_ec2_state_and_the_last_confirming_sync_time(estate: Estate) -> None:
    servers = seed(estate)
    seed_plan(estate, servers[TARGET])
    stopped = estate.aws.scope(TARGET, REGION).servers[servers[TARGET][0]]["recoveryInstanceId"]
    estate.aws.set_ec2_state(TARGET, REGION, stopped, "stopped")
    data_management(FULL_SYNC, Context())
    data_management(FULL_SYNC, Context())  # confirms every record, changes none
    scope_success = when(scopes(status())[(TARGET, REGION)]["lastSuccessTime"])

    response = query(api_event("apigw_rest_check_existing", planId="plan-t"), Context())

    assert response["statusCode"] == 200, response
    instances = {i["recoveryInstanceId"]: i for i in body_of(response)["existingInstances"]}
    assert len(instances) == 3
    # EC2's lower-case names, as the orchestration's Recovery Plans page compares them.
    assert instances[stopped]["ec2InstanceState"] == "stopped"
    assert {i["ec2InstanceState"] for i in instances.values()} == {"running", "stopped"}
    assert all(when(i["lastSyncTime"]) >= scope_success for i in instances.values())
    # EC2's details, read with the target account's credentials in the scope's region.
    assert (instances[stopped]["name"], instances[stopped]["instanceType"]) == (f"recovered-{stopped}", "t3.small")


@DYNALITE_ONLY
def test_check_existing_selects_servers_by_drs_tags(estate: Estate) -> None:
    """DescribeSourceServers returns tags as a JSON map (DRS), not EC2's list of Key/Value."""
    servers = seed(estate)
    tagged = estate.aws.add_server(TARGET, REGION, "db-1", tags={"Application": "billing"})
    estate.aws.launch(TARGET, REGION, [tagged])
    estate.put(
        "protection_groups",
        {
            "groupId": "pg-tags",
            "region": REGION,
            "accountId": TARGET,
            "serverSelectionTags": {"Application": "billing"},
        },
    )
    estate.put(
        "recovery_plans",
        {
            "planId": "plan-tags",
            "planName": "Tags",
            "waves": [{"waveNumber": 1, "waveName": "One", "protectionGroupId": "pg-tags"}],
        },
    )
    data_management(FULL_SYNC, Context())

    body = body_of(query(api_event("apigw_http_check_existing", planId="plan-tags"), Context()))

    assert [i["sourceServerId"] for i in body["existingInstances"]] == [tagged]
    assert tagged not in servers[TARGET]


@pytest.fixture
def write_counter(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> Any:
    counter = DynamoDBWriteCounter(estate.ddb.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", counter.endpoint_url)
    dependencies.reset()
    yield counter
    counter.close()


def test_steady_state_sync_writes_no_cache_record(estate: Estate, write_counter: DynamoDBWriteCounter) -> None:
    seed(estate)
    data_management(FULL_SYNC, Context())
    assert ("BatchWriteItem", estate.ddb.tables.cache) in write_counter.writes  # the proxy sees writes
    write_counter.writes.clear()

    report = data_management(FULL_SYNC, Context())

    assert report["status"] == "SUCCESS", report
    assert [w for w in write_counter.writes if w[1] == estate.ddb.tables.cache] == []
