"""The sync engine end to end: the simulator's DRS/EC2/STS over HTTP, real DynamoDB servers."""

from __future__ import annotations

import re

import anyio
import pytest

from syncengine.core.errors import SyncInProgressError
from syncengine.core.models import RunStatus, ScopeOutcome
from syncengine.sync.engine import get_sync_status, sync_all, sync_scope
from tests.integration.engine_support import cache_items, engine_settings, put_raw, seed

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def truth(estate) -> dict[str, dict]:
    """sourceServerId -> the live recovery instance DRS reports for it."""
    return {ri["sourceServerID"]: ri for ri in estate.recovery_instances()}


async def test_sync_all_caches_exactly_what_drs_reports(ddb, make_simulator) -> None:
    """A cold full sync leaves one record per live recovery instance with every field right."""
    sim = make_simulator(accounts=3, regions=("us-east-1", "eu-west-1"), instances_per_scope=25, seed=11)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)

    report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS
    expected = truth(sim.estate)
    cached = await cache_items(settings)
    assert set(cached) == set(expected)
    assert report.instances_updated == len(expected)
    for server_id, ri in expected.items():
        record = cached[server_id]
        ec2 = sim.estate.ec2_instance(ri["ec2InstanceID"])
        server = sim.estate.source_server(server_id)
        assert record["recoveryInstanceId"] == ri["recoveryInstanceID"]
        assert record["ec2InstanceId"] == ri["ec2InstanceID"]
        # EC2's lower-case name (API-CONTRACT.md); DRS's own upper-case value beside it.
        assert record["ec2InstanceState"] == ec2["State"]["Name"]
        assert record["drsInstanceState"] == ri["ec2InstanceState"]
        assert record["instanceType"] == ec2["InstanceType"]
        assert record.get("privateIp") == ec2.get("PrivateIpAddress")
        assert record.get("publicIp") == ec2.get("PublicIpAddress")
        ec2_name = next((t["Value"] for t in ec2.get("Tags", []) if t["Key"] == "Name"), None)
        assert record.get("name") == ec2_name
        assert record["sourceServerName"] == server["tags"]["Name"]
        assert record["region"] in ("us-east-1", "eu-west-1")
        assert re.fullmatch(r"\d{12}", record["accountId"])
        assert ISO_Z.match(record["lastSyncTime"]) and ISO_Z.match(record["launchTime"])
        staging = (server.get("stagingArea") or {}).get("stagingAccountID")
        assert record.get("replicationStagingAccountId") == staging
        assert all(value != "" for value in record.values())


async def test_sync_all_resolves_source_execution_by_all_three_rules(ddb_moto, make_simulator) -> None:
    """jobId, then serverStatuses' recoveryInstanceId, then the latest execution listing the server."""
    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=6, seed=3, max_servers_per_job=2)
    settings = engine_settings(ddb_moto, sim)
    ris = sorted(sim.estate.recovery_instances(), key=lambda ri: ri["sourceServerID"])
    by_job, by_ri, by_server = ris[0], ris[1], ris[2]
    executions = [
        {
            "executionId": "exec-job",
            "planId": "p1",
            "planName": "By Job",
            "startTime": 10,
            "waves": [{"waveNumber": 1, "region": "us-east-1", "jobId": by_job["jobID"], "serverStatuses": []}],
        },
        {
            "executionId": "exec-ri",
            "planId": "p2",
            "planName": "By RI",
            "startTime": 20,
            "waves": [
                {
                    "waveNumber": 1,
                    "region": "us-east-1",
                    "serverStatuses": [
                        {"sourceServerId": by_ri["sourceServerID"], "recoveryInstanceId": by_ri["recoveryInstanceID"]}
                    ],
                }
            ],
        },
        {
            "executionId": "exec-old",
            "planId": "p3",
            "planName": "Older",
            "startTime": 30,
            "waves": [
                {
                    "waveNumber": 1,
                    "region": "us-east-1",
                    "serverStatuses": [{"sourceServerId": by_server["sourceServerID"]}],
                }
            ],
        },
        {
            "executionId": "exec-new",
            "planId": "p3",
            "planName": "Newer",
            "startTime": 40,
            "waves": [
                {
                    "waveNumber": 1,
                    "region": "us-east-1",
                    "serverStatuses": [{"sourceServerId": by_server["sourceServerID"]}],
                }
            ],
        },
    ]
    await seed(settings, sim.estate, executions=executions)

    await sync_all(settings)

    cached = await cache_items(settings)
    same_job = [ri for ri in ris if ri["jobID"] == by_job["jobID"]]
    assert all(cached[ri["sourceServerID"]]["sourceExecutionId"] == "exec-job" for ri in same_job)
    if by_ri["jobID"] != by_job["jobID"]:
        assert cached[by_ri["sourceServerID"]]["sourceExecutionId"] == "exec-ri"
        assert cached[by_ri["sourceServerID"]]["sourcePlanName"] == "By RI"
    if by_server["jobID"] != by_job["jobID"]:
        assert cached[by_server["sourceServerID"]]["sourceExecutionId"] == "exec-new"


async def test_sync_all_makes_no_call_per_instance_and_one_assume_role_per_account(ddb_moto, make_simulator) -> None:
    """Calls grow with pages and batches, not instances; each target account is assumed once."""
    sim = make_simulator(accounts=4, regions=("us-east-1", "us-west-2"), instances_per_scope=150, seed=5)
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)
    sim.calls.reset()

    await sync_all(settings)

    scopes = 4 * 2
    assert sim.calls.count(service="sts", operation="AssumeRole") == 3  # the hub uses its own credentials
    assert sim.calls.count(service="drs", operation="DescribeRecoveryInstances") == scopes
    assert sim.calls.count(service="drs", operation="DescribeSourceServers") == scopes
    assert sim.calls.count(service="ec2", operation="DescribeInstances") == scopes


async def test_sync_all_second_run_writes_nothing(ddb, make_simulator) -> None:
    """Steady state: an unchanged estate is not written again."""
    sim = make_simulator(accounts=2, regions=("us-east-1",), instances_per_scope=30, seed=2)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)

    second = await sync_all(settings)

    assert second.instances_updated == 0
    assert second.instances_unchanged == 60
    assert second.instances_deleted == 0


async def test_sync_all_updates_changed_fields_and_deletes_vanished(ddb, make_simulator) -> None:
    """A changed IP is rewritten; a terminated instance's record is deleted when its scope syncs."""
    sim = make_simulator(accounts=2, regions=("us-east-1",), instances_per_scope=10, seed=4)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    ris = sorted(sim.estate.recovery_instances(), key=lambda ri: ri["sourceServerID"])
    changed, gone = ris[0], ris[1]
    sim.estate.update_ec2(changed["ec2InstanceID"], private_ip="10.99.99.99")
    sim.estate.terminate(gone["recoveryInstanceID"])

    report = await sync_all(settings)

    cached = await cache_items(settings)
    assert cached[changed["sourceServerID"]]["privateIp"] == "10.99.99.99"
    assert gone["sourceServerID"] not in cached
    assert (report.instances_updated, report.instances_deleted) == (1, 1)


async def test_sync_all_replaces_a_relaunched_servers_record(ddb_moto, make_simulator) -> None:
    """A newer recovery instance of a server replaces the older one in its record."""
    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=5, seed=8)
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    server_id = sorted(truth(sim.estate))[0]

    new_id = sim.estate.relaunch(server_id)
    await sync_all(settings)

    cached = await cache_items(settings)
    assert cached[server_id]["recoveryInstanceId"] == new_id


async def test_sync_all_treats_uninitialized_region_as_empty_success(ddb_moto, make_simulator) -> None:
    """UninitializedAccountException is an empty, successful scope, not an error."""
    sim = make_simulator(
        accounts=2,
        regions=("us-east-1", "eu-west-1"),
        instances_per_scope=5,
        seed=6,
        uninitialized_scopes=("1#eu-west-1",),
    )
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)

    report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS
    assert report.scopes_synced == 4
    assert len(await cache_items(settings)) == sim.estate.total_recovery_instances()


async def test_sync_all_access_denied_account_fails_alone_and_keeps_cache(ddb, make_simulator) -> None:
    """An account whose role cannot be assumed gets no DRS call, keeps its records, breaks nothing else."""
    sim = make_simulator(accounts=3, regions=("us-east-1", "eu-west-1"), instances_per_scope=8, seed=9)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    denied = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    before = {k: v for k, v in (await cache_items(settings)).items() if v["accountId"] == denied}
    sim.set_faults(accessDeniedAccounts=[denied])
    sim.calls.reset()
    # A change elsewhere must still be picked up.
    other = next(ri for ri in sim.estate.recovery_instances() if ri["arn"].split(":")[4] != denied)
    sim.estate.update_ec2(other["ec2InstanceID"], private_ip="10.11.12.13")

    report = await sync_all(settings)

    assert report.status is RunStatus.PARTIAL
    assert report.scopes_failed == 2
    assert {e.account_id for e in report.errors} == {denied}
    assert sim.calls.count(service="drs", account_id=denied) == 0
    cached = await cache_items(settings)
    assert {k: v for k, v in cached.items() if v["accountId"] == denied} == before
    assert cached[other["sourceServerID"]]["privateIp"] == "10.11.12.13"


async def test_sync_all_failing_scope_keeps_its_records(ddb, make_simulator) -> None:
    """A scope whose DRS calls fail keeps every cached record, even of instances since terminated."""
    sim = make_simulator(accounts=2, regions=("us-east-1",), instances_per_scope=12, seed=10)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    victim = sim.estate.accounts[1]
    scope_key = f"{victim.account_id}#us-east-1"
    before = {k: v for k, v in (await cache_items(settings)).items() if v["accountId"] == victim.account_id}
    doomed = sim.estate.recovery_instances(victim.account_id, "us-east-1")[0]
    sim.estate.terminate(doomed["recoveryInstanceID"])
    sim.set_faults(failingScopes=[scope_key])

    report = await sync_all(settings)

    assert report.scopes_failed == 1
    after = {k: v for k, v in (await cache_items(settings)).items() if v["accountId"] == victim.account_id}
    assert after == before
    status = await get_sync_status(settings)
    failed = [s for s in status.scopes if s.account_id == victim.account_id]
    assert failed[0].status == ScopeOutcome.FAILED.value and failed[0].last_error


async def test_sync_scope_with_server_ids_touches_only_those_servers(ddb_moto, make_simulator) -> None:
    """A wave's sync writes and reconciles only the wave's servers."""
    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=10, seed=12)
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    servers = sorted(truth(sim.estate))
    wave, outside = servers[:3], servers[3]
    for server_id in servers[:4]:
        ri = truth(sim.estate)[server_id]
        sim.estate.update_ec2(ri["ec2InstanceID"], private_ip="10.0.200.1")
    sim.calls.reset()

    report = await sync_scope(settings, sim.estate.hub_account_id, "us-east-1", wave)

    assert report.instances_updated == 3
    cached = await cache_items(settings)
    assert all(cached[s]["privateIp"] == "10.0.200.1" for s in wave)
    assert cached[outside]["privateIp"] != "10.0.200.1"


async def test_sync_all_refuses_a_second_full_sync_while_the_lease_is_held(ddb_moto, make_simulator) -> None:
    """Two full syncs never overlap: the second gets SyncInProgressError."""
    sim = make_simulator(accounts=2, regions=("us-east-1",), instances_per_scope=20, seed=13)
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)
    sim.set_faults(latencyMs=150)
    outcomes: list[object] = []

    async def run() -> None:
        try:
            outcomes.append(await sync_all(settings))
        except SyncInProgressError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.sleep(0.1)
        tg.start_soon(run)

    assert sum(isinstance(o, SyncInProgressError) for o in outcomes) == 1
    # The lease is released: a later full sync runs.
    sim.set_faults(latencyMs=0)
    assert (await sync_all(settings)).status is RunStatus.SUCCESS


async def test_concurrent_syncs_of_one_scope_leave_the_newest_observation(ddb_moto, make_simulator) -> None:
    """A slow sync that observed first cannot overwrite what a later sync observed."""
    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=10, seed=14)
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    ri = sorted(sim.estate.recovery_instances(), key=lambda r: r["sourceServerID"])[0]
    hub = sim.estate.hub_account_id
    sim.set_faults(latencyMs=200)

    async def slow_scheduled() -> None:
        await sync_all(settings)

    async def wave_after_change() -> None:
        await anyio.sleep(0.05)
        sim.estate.update_ec2(ri["ec2InstanceID"], private_ip="10.42.42.42")
        await sync_scope(settings, hub, "us-east-1", [ri["sourceServerID"]])

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_scheduled)
        tg.start_soon(wave_after_change)

    cached = await cache_items(settings)
    assert cached[ri["sourceServerID"]]["privateIp"] == "10.42.42.42"


async def test_sync_all_converges_under_throttling(ddb, make_simulator) -> None:
    """With 20% of calls throttled, retries still cache every instance."""
    sim = make_simulator(accounts=3, regions=("us-east-1", "eu-west-1"), instances_per_scope=40, seed=15)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    sim.set_faults(throttleRate=0.2, retryAfterSeconds=0)

    report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS
    assert len(await cache_items(settings)) == sim.estate.total_recovery_instances()


async def test_sync_all_deadline_keeps_unfinished_scopes_and_writes_status(ddb_moto, make_simulator) -> None:
    """A run cut short by its deadline deletes nothing of unfinished scopes, reports them skipped
    and still records the run's status."""
    sim = make_simulator(accounts=2, regions=("us-east-1", "eu-west-1"), instances_per_scope=10, seed=16)
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    target = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    before = {k: v for k, v in (await cache_items(settings)).items() if v["accountId"] == target}
    for ri in sim.estate.recovery_instances(target):
        sim.estate.terminate(ri["recoveryInstanceID"])
    # Setup takes one round trip and the target account's scopes need three more (AssumeRole,
    # DescribeRecoveryInstances, ...): the deadline falls in between.
    sim.set_faults(latencyMs=1000)

    report = await sync_all(settings.with_changes(deadline_seconds=2.5))

    target_results = [r for r in report.scopes if r.scope.account_id == target]
    assert len(target_results) == 2
    assert all(r.outcome is ScopeOutcome.SKIPPED for r in target_results)
    assert report.status is not RunStatus.SUCCESS
    after = {k: v for k, v in (await cache_items(settings)).items() if v["accountId"] == target}
    assert after == before
    status = await get_sync_status(settings)
    assert status.last_run_status == report.status.value
    assert status.scopes_failed == report.scopes_failed


async def test_sync_all_deadline_during_setup_fails_the_run(ddb_moto, make_simulator) -> None:
    """A deadline that passes before accounts are even loaded is a failed run, not an empty success."""
    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=2, seed=18)
    settings = engine_settings(ddb_moto, sim)
    sim.set_faults(latencyMs=2000)

    report = await sync_all(settings.with_changes(deadline_seconds=0.5))

    assert report.status is RunStatus.FAILED
    assert [e.error_type for e in report.errors] == ["DeadlineExceeded"]


async def test_put_raw_helper_round_trips(ddb_moto) -> None:
    """The test helper writes items the engine can read (guards the helpers themselves)."""
    settings = ddb_moto.settings()
    await put_raw(settings, settings.tables.cache, [{"sourceServerId": "s-1", "scopeKey": "1#x"}])
    assert "s-1" in await cache_items(settings)


async def test_get_sync_status_reports_every_scope(ddb_moto, make_simulator) -> None:
    """After a sync, every account/region has a status entry and the run is healthy."""
    sim = make_simulator(accounts=2, regions=("us-east-1", "eu-west-1"), instances_per_scope=5, seed=17)
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)
    before = await get_sync_status(settings)

    await sync_all(settings)

    status = await get_sync_status(settings)
    assert before.status.value == "no_sync_yet"
    assert status.status.value == "healthy"
    assert {(s.account_id, s.region) for s in status.scopes} == {
        (a.account_id, r) for a in sim.estate.accounts for r in a.regions
    }
    assert sum(s.instance_count for s in status.scopes) == sim.estate.total_recovery_instances()


@pytest.mark.parametrize(
    "bad", [pytest.param(("123", "us-east-1"), id="account"), pytest.param(("123456789012", "moon-1"), id="region")]
)
async def test_sync_scope_rejects_bad_input(ddb_moto, bad) -> None:
    """Scoped syncs validate the account id and region before any call."""
    from syncengine.core.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError):
        await sync_scope(ddb_moto.settings(), *bad)


async def test_sync_scope_rejects_an_account_that_is_not_a_target(ddb_moto, make_simulator) -> None:
    """A scoped sync of an unregistered account is a caller error, not an empty success."""
    from syncengine.core.errors import InvalidRequestError

    sim = make_simulator(accounts=2, regions=("us-east-1",), instances_per_scope=2, seed=19)
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)

    with pytest.raises(InvalidRequestError, match="not an active target account"):
        await sync_scope(settings, "999999999999", "us-east-1")
    with pytest.raises(InvalidRequestError, match="not configured"):
        await sync_all(settings, account_id=sim.estate.hub_account_id, region="ap-south-1")
