"""terminate_execution_instances end to end: the cache's execution index, DRS through the
simulator (cross-account roles, 100-id calls, conflicts), the cache and the execution item."""

from __future__ import annotations

import re

import pytest

from syncengine.engine import sync_all
from syncengine.errors import ExecutionNotFoundError, InvalidRequestError
from syncengine.terminate import terminate_execution_instances
from tests.integration.test_handlers_support import (
    REGION,
    cache,
    estate_settings,
    execution_item,
    launch_jobs,
    put,
    scan,
    seed_estate,
)

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
DESCRIBE_OPERATIONS = ("DescribeRecoveryInstances", "DescribeSourceServers", "DescribeJobs")


def launched_by(jobs: list[dict]) -> set[str]:
    return {p["recoveryInstanceID"] for job in jobs for p in job["participatingServers"]}


async def prepared(ddb, sim, executions: list[dict]):
    settings = estate_settings(ddb, sim)
    await seed_estate(settings, sim.estate, executions)
    report = await sync_all(settings)
    assert report.scopes_failed == 0
    sim.calls.reset()
    return settings


def cross_account_execution(estate) -> tuple[dict, set[str]]:
    """An execution with one wave in the hub and one in a target account."""
    hub = estate.hub_account_id
    target = next(a.account_id for a in estate.accounts if a.account_id != hub)
    jobs = [launch_jobs(estate, hub)[0], launch_jobs(estate, target)[0]]
    return execution_item("exec-cross", "plan-cross", jobs), launched_by(jobs)


async def execution_record(settings, execution_id: str) -> dict:
    items = await scan(settings, settings.tables.execution_history)
    return next(item for item in items if item["executionId"] == execution_id)


async def test_terminate_ends_exactly_the_executions_instances_across_accounts(ddb, make_simulator) -> None:
    sim = make_simulator(accounts=2, regions=(REGION,), instances_per_scope=30, seed=21, max_servers_per_job=6)
    execution, expected = cross_account_execution(sim.estate)
    settings = await prepared(ddb, sim, [execution])
    before = await cache(settings)

    body = await terminate_execution_instances(settings, "exec-cross")

    assert {t["recoveryInstanceId"] for t in body["terminated"]} == expected
    assert (body["totalFound"], body["totalTerminated"], body["totalFailed"]) == (len(expected), len(expected), 0)
    assert all(sim.estate.recovery_instance(ri) is None for ri in expected)
    assert sim.estate.total_recovery_instances() == len(before) - len(expected)
    after = await cache(settings)
    assert {r["recoveryInstanceId"] for r in after.values()} == {
        r["recoveryInstanceId"] for r in before.values()
    } - expected
    assert sum(sim.calls.count(service="drs", operation=op) for op in DESCRIBE_OPERATIONS) == 0
    assert sim.calls.count(service="ec2") == 0
    assert sim.calls.count(service="sts", operation="AssumeRole") == 1


async def test_terminate_records_jobs_on_the_execution_item(ddb_moto, make_simulator) -> None:
    sim = make_simulator(accounts=2, regions=(REGION,), instances_per_scope=12, seed=22, max_servers_per_job=4)
    execution, _ = cross_account_execution(sim.estate)
    settings = await prepared(ddb_moto, sim, [execution])

    body = await terminate_execution_instances(settings, "exec-cross")

    item = await execution_record(settings, "exec-cross")
    assert ISO_Z.match(item["terminationInitiatedAt"])
    assert {j["jobId"] for j in item["terminateJobs"]} == {j["jobId"] for j in body["jobs"]}
    assert len(body["jobs"]) == 2
    assert all(j["type"] == "TERMINATE" and j["status"] for j in body["jobs"])


async def test_terminate_sends_at_most_100_ids_per_call(ddb, make_simulator) -> None:
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=230, seed=23, max_servers_per_job=20)
    jobs = launch_jobs(sim.estate)
    settings = await prepared(ddb, sim, [execution_item("exec-big", "plan-big", jobs)])

    body = await terminate_execution_instances(settings, "exec-big")

    assert body["totalTerminated"] == 230
    assert sim.calls.count(service="drs", operation="TerminateRecoveryInstances") == 3
    assert await cache(settings) == {}


async def test_terminate_isolates_an_instance_already_terminating(ddb, make_simulator) -> None:
    """DRS rejects the whole call for one such id: the rest still terminate, that one is
    reported as a conflict and its cache record stays."""
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=8, seed=24, max_servers_per_job=8)
    jobs = launch_jobs(sim.estate)
    expected = launched_by(jobs)
    settings = await prepared(ddb, sim, [execution_item("exec-conflict", "plan-c", jobs)])
    gone = sorted(expected)[0]
    sim.estate.terminate(gone)
    sim.calls.reset()

    body = await terminate_execution_instances(settings, "exec-conflict")

    assert [f["recoveryInstanceId"] for f in body["failed"]] == [gone]
    assert body["failed"][0]["errorType"] == "ConflictException"
    assert body["alreadyTerminated"] is True
    assert {t["recoveryInstanceId"] for t in body["terminated"]} == expected - {gone}
    assert sim.calls.count(service="drs", operation="TerminateRecoveryInstances") == 1 + len(expected)
    assert {r["recoveryInstanceId"] for r in (await cache(settings)).values()} == {gone}


async def test_terminate_everything_already_terminating(ddb_moto, make_simulator) -> None:
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=3, seed=25, max_servers_per_job=3)
    jobs = launch_jobs(sim.estate)
    settings = await prepared(ddb_moto, sim, [execution_item("exec-done", "plan-d", jobs)])
    for ri in launched_by(jobs):
        sim.estate.terminate(ri)

    body = await terminate_execution_instances(settings, "exec-done")

    assert (body["totalTerminated"], body["totalFailed"], body["alreadyTerminated"]) == (0, 3, True)
    assert "terminateJobs" not in await execution_record(settings, "exec-done")


async def test_terminate_reports_an_account_whose_role_is_denied(ddb_moto, make_simulator) -> None:
    """The denied account's instances fail (and stay cached); the hub's still terminate."""
    sim = make_simulator(accounts=2, regions=(REGION,), instances_per_scope=10, seed=26, max_servers_per_job=5)
    execution, expected = cross_account_execution(sim.estate)
    settings = await prepared(ddb_moto, sim, [execution])
    target = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    sim.set_faults(access_denied_accounts=(target,))

    body = await terminate_execution_instances(settings, "exec-cross")

    failed_accounts = {f["accountId"] for f in body["failed"]}
    assert failed_accounts == {target}
    assert {f["errorType"] for f in body["failed"]} <= {"AccessDenied", "AccessDeniedException"}
    assert {t["accountId"] for t in body["terminated"]} == {sim.estate.hub_account_id}
    assert body["totalTerminated"] + body["totalFailed"] == len(expected)
    assert "alreadyTerminated" not in body
    cached_accounts = {r["accountId"] for r in (await cache(settings)).values()}
    assert target in cached_accounts


async def test_terminate_execution_without_cached_instances(ddb_moto, make_simulator) -> None:
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=2, seed=27)
    empty = execution_item("exec-empty", "plan-e", [])
    empty["waves"] = [{"waveNumber": 1, "region": REGION, "serverStatuses": []}]
    settings = await prepared(ddb_moto, sim, [empty])

    body = await terminate_execution_instances(settings, "exec-empty")

    assert body["noInstancesFound"] is True
    assert sim.calls.count(service="drs") == 0


async def test_terminate_execution_without_waves_is_invalid(ddb_moto) -> None:
    settings = ddb_moto.settings(endpoint_urls=(("dynamodb", ddb_moto.endpoint_url),))
    await put(settings, settings.tables.execution_history, [execution_item("exec-nowaves", "plan-n", [])])

    with pytest.raises(InvalidRequestError, match="no waves"):
        await terminate_execution_instances(settings, "exec-nowaves")


async def test_terminate_unknown_execution_is_not_found(ddb_moto) -> None:
    settings = ddb_moto.settings(endpoint_urls=(("dynamodb", ddb_moto.endpoint_url),))

    with pytest.raises(ExecutionNotFoundError):
        await terminate_execution_instances(settings, "exec-unknown")
