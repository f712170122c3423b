"""The simulator over real HTTP, driven by unmodified aiobotocore and boto3 clients with
botocore's retries off: wire shapes, limits, pagination, identity and isolation, faults,
terminate semantics, estate mutations and introspection."""

from __future__ import annotations

import time
from typing import Any

import aioboto3
import boto3
import pytest
from botocore.exceptions import ClientError

from devtools.simulator import EstateConfig, run_simulator
from tests.fixtures.simulator import (
    NO_RETRY,
    NO_RETRY_AIO,
    assume_role,
    client_kwargs,
    get_json,
    post_json,
)

SESSION = aioboto3.Session()


def drs_client(sim: Any, region: str = "us-east-1", credentials: Any = None) -> Any:
    return boto3.client("drs", config=NO_RETRY, **client_kwargs(sim, region, credentials))


def ec2_client(sim: Any, region: str = "us-east-1", credentials: Any = None) -> Any:
    return boto3.client("ec2", config=NO_RETRY, **client_kwargs(sim, region, credentials))


def all_recovery_instances(client: Any) -> list[dict[str, Any]]:
    paginator = client.get_paginator("describe_recovery_instances")
    return [item for page in paginator.paginate() for item in page["items"]]


def error_of(exc_info: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc_info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# ------------------------------------------------------------------------------ DRS


async def test_drs_paginating_every_scope_totals_the_estate_count(simulator) -> None:
    """aiobotocore paginators over every account (AssumeRole for targets) and region sum to
    ``/_simulator/estate``'s recoveryInstances."""
    estate = get_json(simulator, "/_simulator/estate")
    total = 0
    for account in estate["accounts"]:
        creds = None if account["isHub"] else assume_role(simulator, account["accountId"])
        for region in account["regions"]:
            kwargs = client_kwargs(simulator, region, creds)
            async with SESSION.client("drs", config=NO_RETRY_AIO, **kwargs) as drs:
                async for page in drs.get_paginator("describe_recovery_instances").paginate(
                    PaginationConfig={"PageSize": 7}
                ):
                    total += len(page["items"])
    assert total == estate["recoveryInstances"] == 3 * 2 * 30


def test_drs_page_size_is_capped_at_200_and_honours_smaller_max_results(make_simulator) -> None:
    """maxResults above 200 still yields 200 items and a nextToken; below the cap it is honoured."""
    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=450)
    drs = drs_client(sim)
    big = drs.describe_recovery_instances(maxResults=1000)
    assert len(big["items"]) == 200 and big["nextToken"]
    small = drs.describe_recovery_instances(maxResults=25)
    assert len(small["items"]) == 25
    assert len(all_recovery_instances(drs)) == 450


def test_drs_bad_next_token_is_a_validation_exception(simulator) -> None:
    """A token the service did not issue is rejected with ValidationException (HTTP 400)."""
    with pytest.raises(ClientError) as exc_info:
        drs_client(simulator).describe_recovery_instances(nextToken="not-a-token")
    assert error_of(exc_info) == ("ValidationException", 400)


def test_drs_filter_of_201_source_server_ids_is_a_validation_exception(simulator) -> None:
    """More than 200 IDs in a DescribeSourceServers filter: ValidationException, HTTP 400."""
    ids = [f"s-{n:017x}" for n in range(201)]
    with pytest.raises(ClientError) as exc_info:
        drs_client(simulator).describe_source_servers(filters={"sourceServerIDs": ids})
    assert error_of(exc_info) == ("ValidationException", 400)
    assert "200" in exc_info.value.response["Error"]["Message"]


def test_drs_source_servers_by_id_link_back_to_their_recovery_instances(simulator) -> None:
    """DescribeSourceServers filtered by the RIs' server ids returns each server with its RI id."""
    drs = drs_client(simulator)
    ris = all_recovery_instances(drs)
    servers = drs.describe_source_servers(filters={"sourceServerIDs": [ri["sourceServerID"] for ri in ris]})
    by_server = {s["sourceServerID"]: s for s in servers["items"]}
    assert len(by_server) == len(ris)
    for ri in ris:
        assert by_server[ri["sourceServerID"]]["recoveryInstanceId"] == ri["recoveryInstanceID"]


def test_drs_recovery_instances_filtered_by_source_server_ids(simulator) -> None:
    """The sourceServerIDs filter of DescribeRecoveryInstances returns exactly those servers' RIs."""
    drs = drs_client(simulator)
    wanted = [ri["sourceServerID"] for ri in all_recovery_instances(drs)[:5]]
    items = drs.describe_recovery_instances(filters={"sourceServerIDs": wanted})["items"]
    assert sorted(ri["sourceServerID"] for ri in items) == sorted(wanted)


def test_drs_uninitialized_region_raises_uninitialized_account_exception(make_simulator) -> None:
    """Every DRS call in an uninitialised scope fails with UninitializedAccountException, HTTP 400."""
    sim = make_simulator(uninitialized_scopes=("0#eu-west-1",))
    with pytest.raises(ClientError) as exc_info:
        drs_client(sim, "eu-west-1").describe_recovery_instances()
    assert error_of(exc_info) == ("UninitializedAccountException", 400)
    assert drs_client(sim, "us-east-1").describe_recovery_instances()["items"]


def test_drs_describe_jobs_returns_the_launch_jobs_of_the_instances(simulator) -> None:
    """Every RI's jobID is a LAUNCH job listing the RI among its participating servers."""
    drs = drs_client(simulator)
    ris = all_recovery_instances(drs)
    job_ids = sorted({ri["jobID"] for ri in ris})
    jobs = {j["jobID"]: j for j in drs.describe_jobs(filters={"jobIDs": job_ids})["items"]}
    assert set(jobs) == set(job_ids)
    for ri in ris:
        job = jobs[ri["jobID"]]
        assert job["type"] == "LAUNCH"
        assert ri["recoveryInstanceID"] in {p["recoveryInstanceID"] for p in job["participatingServers"]}


# ------------------------------------------------------------------------ terminate


def test_terminate_returns_a_job_and_the_instances_leave_drs(simulator) -> None:
    """TerminateRecoveryInstances returns a TERMINATE job; the RIs vanish, their EC2 terminates."""
    drs = drs_client(simulator)
    victims = all_recovery_instances(drs)[:3]
    victim_ids = [v["recoveryInstanceID"] for v in victims]
    job = drs.terminate_recovery_instances(recoveryInstanceIDs=victim_ids)["job"]
    assert job["type"] == "TERMINATE" and job["jobID"].startswith("drsjob-")
    assert {p["recoveryInstanceID"] for p in job["participatingServers"]} == set(victim_ids)
    remaining = {ri["recoveryInstanceID"] for ri in all_recovery_instances(drs)}
    assert remaining.isdisjoint(victim_ids)
    reservations = ec2_client(simulator).describe_instances(InstanceIds=[v["ec2InstanceID"] for v in victims])
    states = {i["State"]["Name"] for r in reservations["Reservations"] for i in r["Instances"]}
    assert states == {"terminated"}
    servers = drs.describe_source_servers(filters={"sourceServerIDs": [v["sourceServerID"] for v in victims]})
    assert all("recoveryInstanceId" not in s for s in servers["items"])
    assert job["jobID"] in {j["jobID"] for j in drs.describe_jobs()["items"]}


def test_terminate_twice_is_a_conflict_naming_the_instance(simulator) -> None:
    """Terminating an already terminated RI fails the whole call with ConflictException (409)."""
    drs = drs_client(simulator)
    first, second = all_recovery_instances(drs)[:2]
    drs.terminate_recovery_instances(recoveryInstanceIDs=[first["recoveryInstanceID"]])
    with pytest.raises(ClientError) as exc_info:
        drs.terminate_recovery_instances(
            recoveryInstanceIDs=[second["recoveryInstanceID"], first["recoveryInstanceID"]]
        )
    assert error_of(exc_info) == ("ConflictException", 409)
    assert first["recoveryInstanceID"] in exc_info.value.response["Error"]["Message"]
    assert second["recoveryInstanceID"] in {ri["recoveryInstanceID"] for ri in all_recovery_instances(drs)}


def test_terminate_of_201_ids_is_a_validation_exception(simulator) -> None:
    """TerminateRecoveryInstances takes at most 200 IDs."""
    ids = [f"i-{n:017x}" for n in range(201)]
    with pytest.raises(ClientError) as exc_info:
        drs_client(simulator).terminate_recovery_instances(recoveryInstanceIDs=ids)
    assert error_of(exc_info) == ("ValidationException", 400)


def test_terminate_cannot_reach_another_accounts_instance(simulator) -> None:
    """A target account's RI id is unknown to the hub: ConflictException, and the RI survives."""
    target = simulator.estate.accounts[1].account_id
    creds = assume_role(simulator, target)
    victim = all_recovery_instances(drs_client(simulator, credentials=creds))[0]
    with pytest.raises(ClientError) as exc_info:
        drs_client(simulator).terminate_recovery_instances(recoveryInstanceIDs=[victim["recoveryInstanceID"]])
    assert error_of(exc_info) == ("ConflictException", 409)
    assert simulator.estate.recovery_instance(victim["recoveryInstanceID"]) is not None


def test_terminate_apply_then_fail_applies_the_termination_and_answers_500(simulator) -> None:
    """The ambiguous-outcome fault: the instances are gone and a TERMINATE job names them, yet
    the caller got a 500; the fault counts down, so the next call is answered normally."""
    drs = drs_client(simulator)
    first, second = (ri["recoveryInstanceID"] for ri in all_recovery_instances(drs)[:2])
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    simulator.set_faults(terminate_apply_then_fail=1)

    with pytest.raises(ClientError) as exc_info:
        drs.terminate_recovery_instances(recoveryInstanceIDs=[first])

    assert error_of(exc_info) == ("InternalServerException", 500)
    assert drs.describe_recovery_instances(filters={"recoveryInstanceIDs": [first]})["items"] == []
    jobs = drs.describe_jobs(filters={"fromDate": since})["items"]
    assert [j["type"] for j in jobs if first in {p.get("recoveryInstanceID") for p in j["participatingServers"]}] == [
        "TERMINATE"
    ]
    assert drs.terminate_recovery_instances(recoveryInstanceIDs=[second])["job"]["type"] == "TERMINATE"


def test_terminate_rejected_id_fails_the_whole_call_with_the_configured_code(simulator) -> None:
    drs = drs_client(simulator)
    bad, good = (ri["recoveryInstanceID"] for ri in all_recovery_instances(drs)[:2])
    simulator.set_faults(terminate_rejected_ids=[bad], terminate_rejection_code="ValidationException")

    with pytest.raises(ClientError) as exc_info:
        drs.terminate_recovery_instances(recoveryInstanceIDs=[good, bad])

    assert error_of(exc_info) == ("ValidationException", 400)
    assert {good, bad} <= {ri["recoveryInstanceID"] for ri in all_recovery_instances(drs)}
    assert drs.terminate_recovery_instances(recoveryInstanceIDs=[good])["job"]["type"] == "TERMINATE"


def test_describe_jobs_from_date_leaves_out_older_jobs(simulator) -> None:
    """DescribeJobs filters by fromDate/toDate/jobIDs only (DescribeJobsRequestFilters)."""
    drs = drs_client(simulator)
    victim = all_recovery_instances(drs)[0]["recoveryInstanceID"]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    job_id = drs.terminate_recovery_instances(recoveryInstanceIDs=[victim])["job"]["jobID"]

    recent = drs.describe_jobs(filters={"fromDate": since})["items"]

    assert [j["jobID"] for j in recent] == [job_id]
    assert len(drs.describe_jobs()["items"]) > 1


# ------------------------------------------------------------------------------ EC2


async def test_ec2_finds_the_recovery_instances_by_filter_and_by_instance_id(simulator) -> None:
    """The RIs' ec2InstanceIDs resolve through the instance-id filter and through InstanceId.N."""
    async with SESSION.client("drs", config=NO_RETRY_AIO, **client_kwargs(simulator)) as drs:
        ids = [ri["ec2InstanceID"] for ri in (await drs.describe_recovery_instances())["items"]]
    async with SESSION.client("ec2", config=NO_RETRY_AIO, **client_kwargs(simulator)) as ec2:
        by_filter = await ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": ids}])
        by_id = await ec2.describe_instances(InstanceIds=ids)
    for response in (by_filter, by_id):
        instances = [i for r in response["Reservations"] for i in r["Instances"]]
        assert sorted(i["InstanceId"] for i in instances) == sorted(ids)
    sample = next(i for r in by_id["Reservations"] for i in r["Instances"])
    assert sample["State"]["Name"] in ("running", "stopped")
    assert sample["PrivateIpAddress"].startswith("10.") and sample["VpcId"].startswith("vpc-")
    assert {"Key", "Value"} <= set(sample["Tags"][0]) and sample["LaunchTime"].tzinfo is not None


def test_ec2_unknown_instance_id_fails_the_call(simulator) -> None:
    """One unknown id in InstanceId.N fails everything with InvalidInstanceID.NotFound (400)."""
    known = simulator.estate.recovery_instances(simulator.estate.hub_account_id, "us-east-1")[0]
    with pytest.raises(ClientError) as exc_info:
        ec2_client(simulator).describe_instances(InstanceIds=[known["ec2InstanceID"], "i-0123456789abcdef0"])
    assert error_of(exc_info) == ("InvalidInstanceID.NotFound", 400)
    assert "i-0123456789abcdef0" in exc_info.value.response["Error"]["Message"]


def test_ec2_unknown_instance_id_in_filter_is_ignored(simulator) -> None:
    """Unknown ids in an instance-id filter are left out; the known one is returned."""
    known = simulator.estate.recovery_instances(simulator.estate.hub_account_id, "us-east-1")[0]
    response = ec2_client(simulator).describe_instances(
        Filters=[{"Name": "instance-id", "Values": [known["ec2InstanceID"], "i-0123456789abcdef0"]}]
    )
    found = [i["InstanceId"] for r in response["Reservations"] for i in r["Instances"]]
    assert found == [known["ec2InstanceID"]]


def test_ec2_more_than_200_filter_values_is_rejected(simulator) -> None:
    """201 filter values: FilterLimitExceeded, HTTP 400."""
    values = [f"i-{n:017x}" for n in range(201)]
    with pytest.raises(ClientError) as exc_info:
        ec2_client(simulator).describe_instances(Filters=[{"Name": "instance-id", "Values": values}])
    assert error_of(exc_info) == ("FilterLimitExceeded", 400)


def test_ec2_max_results_paginates_the_scope(simulator) -> None:
    """boto3's DescribeInstances paginator with MaxResults walks every instance of the scope once."""
    paginator = ec2_client(simulator).get_paginator("describe_instances")
    pages = paginator.paginate(PaginationConfig={"PageSize": 7})
    ids = [i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]]
    assert len(ids) == len(set(ids)) == 30


# ---------------------------------------------------------------- STS and isolation


def test_sts_assume_role_isolates_accounts(simulator) -> None:
    """A target account's session sees only that account's instances, never the hub's."""
    hub_ids = {ri["recoveryInstanceID"] for ri in all_recovery_instances(drs_client(simulator))}
    target = simulator.estate.accounts[2].account_id
    creds = assume_role(simulator, target)
    target_ris = all_recovery_instances(drs_client(simulator, credentials=creds))
    assert len(target_ris) == 30 and hub_ids.isdisjoint(ri["recoveryInstanceID"] for ri in target_ris)
    assert all(ri["arn"].split(":")[4] == target for ri in target_ris)
    hub_ec2 = next(iter(simulator.estate.recovery_instances(simulator.estate.hub_account_id, "us-east-1")))
    with pytest.raises(ClientError) as exc_info:
        ec2_client(simulator, credentials=creds).describe_instances(InstanceIds=[hub_ec2["ec2InstanceID"]])
    assert error_of(exc_info)[0] == "InvalidInstanceID.NotFound"


def test_sts_get_caller_identity_reports_the_assumed_account(simulator) -> None:
    """GetCallerIdentity: the hub for unknown keys, the target for AssumeRole sessions."""
    target = simulator.estate.accounts[1]
    creds = assume_role(simulator, target.account_id)
    assert creds["Expiration"].timestamp() > time.time() + 3000
    hub = boto3.client("sts", config=NO_RETRY, **client_kwargs(simulator))
    assumed = boto3.client("sts", config=NO_RETRY, **client_kwargs(simulator, credentials=creds))
    assert hub.get_caller_identity()["Account"] == simulator.estate.hub_account_id
    identity = assumed.get_caller_identity()
    assert identity["Account"] == target.account_id
    assert identity["Arn"].endswith(f":assumed-role/{target.role_name}/tests")


def test_sts_wrong_external_id_is_access_denied(simulator) -> None:
    """AssumeRole with another ExternalId fails with AccessDenied, HTTP 403."""
    with pytest.raises(ClientError) as exc_info:
        assume_role(simulator, simulator.estate.accounts[1].account_id, external_id="wrong-external-id")
    assert error_of(exc_info) == ("AccessDenied", 403)


def test_sts_access_denied_accounts_fault_refuses_assume_role(simulator) -> None:
    """accessDeniedAccounts makes AssumeRole into that account fail; others still work."""
    denied, allowed = (a.account_id for a in simulator.estate.accounts[1:3])
    simulator.set_faults(accessDeniedAccounts=[denied])
    with pytest.raises(ClientError) as exc_info:
        assume_role(simulator, denied)
    assert error_of(exc_info) == ("AccessDenied", 403)
    assert assume_role(simulator, allowed)["AccessKeyId"].startswith("ASIA")


def test_sts_expired_session_is_rejected(simulator) -> None:
    """After expire_credentials() a session's DRS calls fail with ExpiredTokenException (403)."""
    creds = assume_role(simulator, simulator.estate.accounts[1].account_id)
    drs = drs_client(simulator, credentials=creds)
    drs.describe_jobs(maxResults=1)
    simulator.expire_credentials()
    with pytest.raises(ClientError) as exc_info:
        drs.describe_jobs(maxResults=1)
    assert error_of(exc_info) == ("ExpiredTokenException", 403)


# --------------------------------------------------------------------------- faults


async def test_faults_throttle_rate_gives_drs_429_with_retry_after(simulator) -> None:
    """POST /_simulator/faults {"throttleRate": 1.0}: DRS ThrottlingException, 429, Retry-After."""
    post_json(simulator, "/_simulator/faults", {"throttleRate": 1.0, "retryAfterSeconds": 3})
    async with SESSION.client("drs", config=NO_RETRY_AIO, **client_kwargs(simulator)) as drs:
        with pytest.raises(ClientError) as exc_info:
            await drs.describe_recovery_instances()
    assert error_of(exc_info) == ("ThrottlingException", 429)
    assert exc_info.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "3"


def test_faults_throttle_rate_gives_ec2_request_limit_exceeded(simulator) -> None:
    """With throttleRate 1.0 EC2 answers RequestLimitExceeded with HTTP 503."""
    simulator.set_faults(throttle_rate=1.0)
    with pytest.raises(ClientError) as exc_info:
        ec2_client(simulator).describe_instances()
    assert error_of(exc_info) == ("RequestLimitExceeded", 503)


def test_faults_tps_per_scope_throttles_a_burst_but_not_another_scope(simulator) -> None:
    """A token bucket per (account, region, service): one scope's burst is throttled, the next
    region's first call is not."""
    simulator.set_faults(tpsPerScope=2)
    drs = drs_client(simulator, "us-east-1")
    outcomes = []
    for _ in range(6):
        try:
            drs.describe_jobs(maxResults=1)
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    assert outcomes[0] == "ok" and "ThrottlingException" in outcomes
    drs_client(simulator, "eu-west-1").describe_jobs(maxResults=1)
    counts = simulator.calls
    assert counts.count(service="drs", region="us-east-1", outcome="ThrottlingException") >= 1
    assert counts.count(service="drs", region="eu-west-1", outcome="ThrottlingException") == 0


def test_faults_latency_is_added_to_every_call(simulator) -> None:
    """latencyMs delays each AWS call by at least that long (lower bound only)."""
    simulator.set_faults(latencyMs=150)
    drs = drs_client(simulator)
    started = time.perf_counter()
    drs.describe_jobs(maxResults=1)
    assert time.perf_counter() - started >= 0.9 * 0.150


def test_faults_error_rate_gives_internal_server_exception(simulator) -> None:
    """errorRate 1.0: DRS InternalServerException 500 and EC2 InternalError 500."""
    simulator.set_faults(errorRate=1.0)
    with pytest.raises(ClientError) as drs_error:
        drs_client(simulator).describe_jobs()
    with pytest.raises(ClientError) as ec2_error:
        ec2_client(simulator).describe_instances()
    assert error_of(drs_error) == ("InternalServerException", 500)
    assert error_of(ec2_error) == ("InternalError", 500)


def test_faults_failing_scope_fails_mid_pagination(make_simulator) -> None:
    """failingScopes with failAfterPages=2: two pages are served, the third call fails with 500."""
    sim = make_simulator(accounts=1, regions=("us-east-1", "eu-west-1"), instances_per_scope=50)
    hub = sim.estate.hub_account_id
    sim.set_faults(failingScopes=[f"{hub}#us-east-1"], failAfterPages=2)
    paginator = drs_client(sim).get_paginator("describe_recovery_instances")
    pages = paginator.paginate(PaginationConfig={"PageSize": 10})
    served = 0
    with pytest.raises(ClientError) as exc_info:
        for page in pages:
            served += len(page["items"])
    assert served == 20 and error_of(exc_info) == ("InternalServerException", 500)
    assert len(all_recovery_instances(drs_client(sim, "eu-west-1"))) == 50


def test_faults_uninitialized_scopes_hide_a_region_at_run_time(simulator) -> None:
    """uninitializedScopes makes DRS answer UninitializedAccountException and drops the scope
    from the estate total."""
    hub = simulator.estate.hub_account_id
    before = get_json(simulator, "/_simulator/estate")["recoveryInstances"]
    simulator.set_faults(uninitializedScopes=[f"{hub}#eu-west-1"])
    with pytest.raises(ClientError) as exc_info:
        drs_client(simulator, "eu-west-1").describe_jobs()
    assert error_of(exc_info) == ("UninitializedAccountException", 400)
    assert get_json(simulator, "/_simulator/estate")["recoveryInstances"] == before - 30


# ------------------------------------------------------------ mutations, introspection


def test_estate_mutations_are_visible_to_the_next_call(simulator) -> None:
    """launch, update_ec2 and relaunch from the test thread show up in DRS and EC2 responses."""
    hub = simulator.estate.hub_account_id
    drs, ec2 = drs_client(simulator), ec2_client(simulator)
    new_id = simulator.estate.launch(hub, "us-east-1")[0]
    fresh = drs.describe_recovery_instances(filters={"recoveryInstanceIDs": [new_id]})["items"][0]
    simulator.estate.update_ec2(fresh["ec2InstanceID"], private_ip="10.200.0.9", instance_type="m5.4xlarge")
    instance = ec2.describe_instances(InstanceIds=[fresh["ec2InstanceID"]])["Reservations"][0]["Instances"][0]
    assert (instance["PrivateIpAddress"], instance["InstanceType"]) == ("10.200.0.9", "m5.4xlarge")
    replacement = simulator.estate.relaunch(fresh["sourceServerID"])
    ids = {ri["recoveryInstanceID"] for ri in all_recovery_instances(drs)}
    assert replacement in ids and new_id not in ids


def test_calls_endpoint_counts_every_call_with_its_outcome(simulator) -> None:
    """/_simulator/calls counts per service/operation/account/region/outcome, throttles included."""
    post_json(simulator, "/_simulator/calls/reset")
    drs = drs_client(simulator)
    drs.describe_jobs(maxResults=1)
    simulator.set_faults(throttleRate=1.0)
    with pytest.raises(ClientError):
        drs.describe_jobs(maxResults=1)
    calls = get_json(simulator, "/_simulator/calls")
    hub = simulator.estate.hub_account_id
    assert calls["byOperation"] == {"drs:DescribeJobs": 2}
    assert calls["byAccount"] == {hub: 2} and calls["byRegion"] == {"us-east-1": 2}
    assert calls["byOutcome"] == {"Success": 1, "ThrottlingException": 1}
    post_json(simulator, "/_simulator/calls/reset")
    assert simulator.calls.count() == 0


def test_estate_endpoint_describes_accounts_and_faults_endpoint_round_trips(simulator) -> None:
    """/_simulator/estate lists hub and targets with roles; GET /_simulator/faults shows a POST."""
    estate = get_json(simulator, "/_simulator/estate")
    assert estate["hubAccountId"] == simulator.estate.hub_account_id
    assert [a["isHub"] for a in estate["accounts"]] == [True, False, False]
    for account in estate["accounts"]:
        assert account["roleName"] == "DRSOrchestrationRole" and account["externalId"]
        assert account["regions"] == ["us-east-1", "eu-west-1"]
    post_json(simulator, "/_simulator/faults", {"latencyMs": 5, "failingScopes": ["1#us-east-1"]})
    faults = get_json(simulator, "/_simulator/faults")
    assert faults["latencyMs"] == 5 and faults["failingScopes"] == ["1#us-east-1"]


async def test_run_simulator_serves_in_the_current_event_loop() -> None:
    """The async context manager serves from the test's own loop."""
    config = EstateConfig(accounts=1, regions=("us-east-1",), instances_per_scope=5, seed=3)
    async with run_simulator(config) as sim:
        async with SESSION.client("drs", config=NO_RETRY_AIO, **client_kwargs(sim)) as drs:
            items = (await drs.describe_recovery_instances())["items"]
        assert len(items) == 5
        assert sim.calls.count(service="drs", operation="DescribeRecoveryInstances", outcome="Success") == 1


def test_faults_timeout_rate_stalls_past_the_clients_read_timeout(simulator) -> None:
    """timeoutRate 1.0 holds the answer for timeoutSeconds, so a short read timeout fires."""
    from botocore.config import Config
    from botocore.exceptions import ReadTimeoutError

    simulator.set_faults(timeoutRate=1.0, timeoutSeconds=2)
    config = Config(retries={"total_max_attempts": 1}, read_timeout=0.3, connect_timeout=2)
    drs = boto3.client("drs", config=config, **client_kwargs(simulator))
    with pytest.raises(ReadTimeoutError):
        drs.describe_jobs(maxResults=1)
