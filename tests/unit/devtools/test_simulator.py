"""The simulator's parts without HTTP: estate generation and mutation, SigV4 scope parsing,
pagination tokens, fault settings and call counting."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from devtools.simulator import CallCounter, Estate, EstateConfig, FaultConfig
from devtools.simulator.factory import APPLICATIONS, ENVIRONMENTS, TIERS
from devtools.simulator.faults import FaultInjector
from devtools.simulator.pagination import decode_token, encode_token, page
from devtools.simulator.sigv4 import parse_authorization

SMALL = EstateConfig(accounts=2, regions=("us-east-1", "eu-west-1"), instances_per_scope=12, seed=7)


def test_estate_same_seed_gives_identical_estate() -> None:
    """Two estates from one seed have the same accounts, instances and EC2 details."""
    first, second = Estate(SMALL), Estate(SMALL)
    assert [a.to_json() for a in first.accounts] == [a.to_json() for a in second.accounts]
    assert first.recovery_instances() == second.recovery_instances()
    ec2_id = first.recovery_instances()[0]["ec2InstanceID"]
    assert first.ec2_instance(ec2_id) == second.ec2_instance(ec2_id)


def test_estate_other_seed_gives_other_ids() -> None:
    """A different seed draws different account and instance ids."""
    other = EstateConfig(accounts=2, regions=("us-east-1", "eu-west-1"), instances_per_scope=12, seed=8)
    assert Estate(SMALL).hub_account_id != Estate(other).hub_account_id
    ids = {ri["recoveryInstanceID"] for ri in Estate(SMALL).recovery_instances()}
    assert ids.isdisjoint(ri["recoveryInstanceID"] for ri in Estate(other).recovery_instances())


def test_estate_ids_follow_the_real_formats() -> None:
    """s-/i-/drsjob- plus 17 hex, 12-digit accounts, and an EC2 id distinct from the RI id."""
    estate = Estate(SMALL)
    assert all(re.fullmatch(r"[1-9]\d{11}", a.account_id) for a in estate.accounts)
    for ri in estate.recovery_instances():
        assert re.fullmatch(r"i-[0-9a-f]{17}", ri["recoveryInstanceID"])
        assert re.fullmatch(r"i-[0-9a-f]{17}", ri["ec2InstanceID"])
        assert ri["ec2InstanceID"] != ri["recoveryInstanceID"]
        assert re.fullmatch(r"s-[0-9a-f]{17}", ri["sourceServerID"])
        assert re.fullmatch(r"drsjob-[0-9a-f]{17}", ri["jobID"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ri["pointInTimeSnapshotDateTime"])


def test_estate_counts_hub_plus_targets_with_roles_and_external_ids() -> None:
    """``accounts`` counts the hub; every account has the role name and its own external id."""
    estate = Estate(EstateConfig(accounts=4, regions=("us-east-1",), instances_per_scope=1, seed=1))
    assert [a.is_hub for a in estate.accounts] == [True, False, False, False]
    assert {a.role_name for a in estate.accounts} == {"DRSOrchestrationRole"}
    assert len({a.external_id for a in estate.accounts}) == 4
    assert estate.total_recovery_instances() == 4


def test_estate_uninitialized_scope_by_index_has_no_instances() -> None:
    """'1#eu-west-1' names the first target account's eu-west-1, which has no DRS data."""
    estate = Estate(replace(SMALL, uninitialized_scopes=("1#eu-west-1",)))
    target = estate.accounts[1].account_id
    assert not estate.is_initialized(target, "eu-west-1")
    assert estate.recovery_instances(target, "eu-west-1") == []
    assert estate.total_recovery_instances() == 3 * 12


def test_estate_source_servers_carry_vocabulary_tags_and_hints() -> None:
    """Name/Application/Environment/Tier tags from fixed vocabularies, hostname and staging account."""
    for server in Estate(SMALL).source_servers():
        tags = server["tags"]
        assert tags["Application"] in APPLICATIONS
        assert tags["Environment"] in ENVIRONMENTS
        assert tags["Tier"] in TIERS
        assert tags["Name"] == server["sourceProperties"]["identificationHints"]["hostname"]
        assert re.fullmatch(r"\d{12}", server["stagingArea"]["stagingAccountID"])
        assert server["lifeCycle"]["lastLaunch"]["initiated"]["jobID"].startswith("drsjob-")


def test_estate_launch_adds_instances_under_one_new_job() -> None:
    """launch() creates servers, running EC2 instances and recovery instances of one LAUNCH job."""
    estate = Estate(SMALL)
    hub = estate.hub_account_id
    new_ids = estate.launch(hub, "us-east-1", count=3)
    ris = {ri["recoveryInstanceID"]: ri for ri in estate.recovery_instances(hub, "us-east-1")}
    assert len(ris) == 15 and set(new_ids) <= set(ris)
    job_ids = {ris[i]["jobID"] for i in new_ids}
    assert len(job_ids) == 1
    job = next(j for j in estate.jobs(hub, "us-east-1") if j["jobID"] in job_ids)
    assert job["type"] == "LAUNCH" and len(job["participatingServers"]) == 3
    assert all(ris[i]["ec2InstanceState"] == "RUNNING" for i in new_ids)


def test_estate_relaunch_replaces_the_servers_instance() -> None:
    """relaunch() gives the server a newer RI; the old one leaves DRS and its EC2 terminates."""
    estate = Estate(SMALL)
    old = estate.recovery_instances()[0]
    new_id = estate.relaunch(old["sourceServerID"])
    assert estate.recovery_instance(old["recoveryInstanceID"]) is None
    assert estate.ec2_instance(old["ec2InstanceID"])["State"]["Name"] == "terminated"
    server = estate.source_server(old["sourceServerID"])
    assert server["recoveryInstanceId"] == new_id
    new = estate.recovery_instance(new_id)
    assert new["jobID"] == server["lifeCycle"]["lastLaunch"]["initiated"]["jobID"] != old["jobID"]


def test_estate_terminate_unlinks_server_and_terminates_ec2() -> None:
    """terminate() removes the RI, clears the server's recoveryInstanceId and records a TERMINATE job."""
    estate = Estate(SMALL)
    ri = estate.recovery_instances()[0]
    job_id = estate.terminate(ri["recoveryInstanceID"])
    assert estate.recovery_instance(ri["recoveryInstanceID"]) is None
    assert "recoveryInstanceId" not in estate.source_server(ri["sourceServerID"])
    assert estate.ec2_instance(ri["ec2InstanceID"])["State"] == {"Code": 48, "Name": "terminated"}
    job = next(j for j in estate.jobs() if j["jobID"] == job_id)
    assert job["type"] == "TERMINATE" and job["initiatedBy"] == "TERMINATE_RECOVERY_INSTANCES"


def test_estate_update_ec2_shows_in_drs_and_ec2_views() -> None:
    """update_ec2() changes the EC2 record and the RI's ec2InstanceState and IPs."""
    estate = Estate(SMALL)
    ri = estate.recovery_instances()[0]
    estate.recovery_instances()  # warm the serialisation cache; the update must invalidate it
    estate.update_ec2(ri["ec2InstanceID"], state="stopped", private_ip="10.99.0.1", public_ip=None, name="renamed")
    ec2 = estate.ec2_instance(ri["ec2InstanceID"])
    assert ec2["State"]["Name"] == "stopped" and ec2["PrivateIpAddress"] == "10.99.0.1"
    assert {"Key": "Name", "Value": "renamed"} in ec2["Tags"]
    updated = estate.recovery_instance(ri["recoveryInstanceID"])
    assert updated["ec2InstanceState"] == "STOPPED"
    assert updated["recoveryInstanceProperties"]["networkInterfaces"][0]["ips"] == ["10.99.0.1"]


def test_estate_update_ec2_rejects_unknown_fields() -> None:
    """A typo in a field name is an error, not a silent no-op."""
    estate = Estate(SMALL)
    with pytest.raises(TypeError):
        estate.update_ec2(estate.recovery_instances()[0]["ec2InstanceID"], private_ipp="10.0.0.1")


def test_sigv4_parse_authorization_reads_the_credential_scope() -> None:
    """Key, region and service come from Credential=...; anything else is not SigV4."""
    header = (
        "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20250101/eu-west-1/drs/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abc"
    )
    scope = parse_authorization(header)
    assert scope is not None
    assert (scope.access_key_id, scope.region, scope.service) == ("AKIAEXAMPLE", "eu-west-1", "drs")
    assert parse_authorization("Bearer xyz") is None
    assert parse_authorization(None) is None


def test_pagination_token_is_bound_to_operation_and_scope() -> None:
    """A token only continues the listing that issued it."""
    chunk, token = page(["a", "b", "c"], 2, None, "DescribeJobs", "1#us-east-1")
    assert list(chunk) == ["a", "b"] and token is not None
    assert list(page(["a", "b", "c"], 2, token, "DescribeJobs", "1#us-east-1")[0]) == ["c"]
    with pytest.raises(ValueError):
        decode_token(token, "DescribeSourceServers", "1#us-east-1")
    with pytest.raises(ValueError):
        decode_token(encode_token("DescribeJobs", "2#us-east-1", "a"), "DescribeJobs", "1#us-east-1")


def test_fault_config_merges_camel_and_snake_keys_and_rejects_unknown() -> None:
    """JSON camelCase and Python snake_case name the same settings; typos are refused."""
    config = FaultConfig().merged({"throttleRate": 0.5, "latency_ms": 20})
    assert (config.throttle_rate, config.latency_ms) == (0.5, 20)
    assert config.to_json()["throttleRate"] == 0.5
    with pytest.raises(ValueError):
        FaultConfig().merged({"throttle": 1})
    with pytest.raises(ValueError):
        FaultConfig(throttle_rate=1.5)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"terminateApplyThenFail": -1}, id="negative-count"),
        pytest.param({"terminateRejectionCode": "AccessDeniedException"}, id="not-a-per-id-code"),
        pytest.param({"terminateRejectedIds": "i-0123456789abcdef0"}, id="ids-not-a-list"),
    ],
)
def test_fault_config_refuses_bad_terminate_faults(changes: dict) -> None:
    with pytest.raises(ValueError):
        FaultConfig().merged(changes)


def test_fault_injector_apply_then_fail_counts_down() -> None:
    injector = FaultInjector(FaultConfig(terminate_apply_then_fail=2))

    assert [injector.take_apply_then_fail() for _ in range(3)] == [True, True, False]


def test_fault_injector_token_bucket_refills_over_time() -> None:
    """tpsPerScope allows a burst of one second's worth, then one call per 1/tps seconds."""
    injector = FaultInjector(FaultConfig(tps_per_scope=2))
    injector.check("drs", "111111111111", "us-east-1", now=100.0)
    injector.check("drs", "111111111111", "us-east-1", now=100.0)
    with pytest.raises(Exception, match="ThrottlingException"):
        injector.check("drs", "111111111111", "us-east-1", now=100.0)
    injector.check("drs", "111111111111", "us-east-1", now=100.6)


def test_call_counter_counts_by_any_combination() -> None:
    """count() filters on any subset of service/operation/account/region/outcome."""
    counter = CallCounter()
    counter.record("drs", "DescribeJobs", "1", "us-east-1", "Success")
    counter.record("drs", "DescribeJobs", "1", "us-east-1", "ThrottlingException")
    counter.record("ec2", "DescribeInstances", "2", "eu-west-1", "Success")
    assert counter.count() == 3
    assert counter.count(service="drs") == 2
    assert counter.count(outcome="Success") == 2
    assert counter.count(account_id="2", region="eu-west-1") == 1
    snapshot = counter.snapshot()
    assert snapshot["byOperation"]["drs:DescribeJobs"] == 2
    assert {
        "service": "ec2",
        "operation": "DescribeInstances",
        "accountId": "2",
        "region": "eu-west-1",
        "outcome": "Success",
        "count": 1,
    } in snapshot["calls"]
    counter.reset()
    assert counter.count() == 0
