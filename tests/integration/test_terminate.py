"""terminate_execution_instances end to end: the cache's execution index, DRS through the
simulator (cross-account roles, 100-id calls, conflicts), the cache and the execution item."""

from __future__ import annotations

import re

import pytest

from syncengine.core.errors import ExecutionInProgressError, ExecutionNotFoundError, InvalidRequestError
from syncengine.core.models import Scope
from syncengine.sync.engine import open_runtime, sync_all
from syncengine.tables.records import content_hash, public_record
from syncengine.terminate.drs import Job
from syncengine.terminate.instances import execution_recovery_instances, record_job, terminate_execution_instances
from syncengine.terminate.rules import TerminateOptions
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
    sim = make_simulator(
        accounts=2, regions=(REGION,), instances_per_scope=30, seed=21, drill_fraction=1.0, max_servers_per_job=6
    )
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
    sim = make_simulator(
        accounts=2, regions=(REGION,), instances_per_scope=12, seed=22, drill_fraction=1.0, max_servers_per_job=4
    )
    execution, _ = cross_account_execution(sim.estate)
    settings = await prepared(ddb_moto, sim, [execution])

    body = await terminate_execution_instances(settings, "exec-cross")

    item = await execution_record(settings, "exec-cross")
    # Epoch seconds, as the orchestration's own terminate writes it (int(time.time())).
    assert isinstance(item["terminationInitiatedAt"], int) and item["terminationInitiatedAt"] > 1_700_000_000
    assert [j["jobId"] for j in item["terminateJobs"]] == [j["jobId"] for j in body["jobs"]]
    assert len(body["jobs"]) == 2
    assert all(j["type"] == "TERMINATE" and j["status"] for j in body["jobs"])
    assert "instancesTerminated" not in item and "terminateJobIds" not in item


async def raw_execution_items(settings, execution_id: str) -> list[dict]:
    """The execution's items as the orchestration's boto3 resource reads them (Decimal, set)."""
    from boto3.dynamodb.types import TypeDeserializer

    async with open_runtime(settings) as rt:
        pages = rt.dynamo.paginate(
            "query",
            TableName=settings.tables.execution_history,
            KeyConditionExpression="#e = :e",
            ExpressionAttributeNames={"#e": "executionId"},
            ExpressionAttributeValues={":e": {"S": execution_id}},
        )
        raw = [item async for item in pages]
    deserializer = TypeDeserializer()
    return [{k: deserializer.deserialize(v) for k, v in item.items()} for item in raw]


def decimal_only_json(value) -> str:
    """The orchestration's response encoder: Decimal and nothing else (lambda/shared/response_utils.py)."""
    import json
    from decimal import Decimal

    class DecimalEncoder(json.JSONEncoder):
        def default(self, o):
            if isinstance(o, Decimal):
                return int(o) if o % 1 == 0 else float(o)
            return super().default(o)

    return json.dumps(value, cls=DecimalEncoder)


async def test_terminate_execution_item_still_serialises_and_completes_on_the_next_sync(ddb, make_simulator) -> None:
    """The orchestration returns whole execution items through a Decimal-only JSON encoder: after
    terminate its item must still serialise (no set), and once DRS reports the jobs complete the
    next full sync sets ``instancesTerminated`` and ``instancesTerminatedAt`` (epoch seconds),
    which its Execution Details page polls for."""
    sim = make_simulator(
        accounts=2, regions=(REGION,), instances_per_scope=12, seed=29, drill_fraction=1.0, max_servers_per_job=4
    )
    execution, _ = cross_account_execution(sim.estate)
    settings = await prepared(ddb, sim, [execution])

    await terminate_execution_instances(settings, "exec-cross")
    (item,) = await raw_execution_items(settings, "exec-cross")
    decimal_only_json(item)  # raises TypeError on a set
    assert "instancesTerminated" not in item

    report = await sync_all(settings)

    (item,) = await raw_execution_items(settings, "exec-cross")
    decimal_only_json(item)
    assert report.scopes_failed == 0
    assert item["instancesTerminated"] is True
    assert item["instancesTerminatedAt"] >= item["terminationInitiatedAt"]
    assert sim.calls.count(service="drs", operation="DescribeJobs") == 2  # one per account/region


async def test_terminate_completion_waits_for_every_job_to_complete(ddb, make_simulator) -> None:
    """A job DRS still reports running keeps the execution unmarked; the next sync that sees it
    COMPLETED marks it, and later syncs ask DRS nothing more."""
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=8, seed=30, drill_fraction=1.0, max_servers_per_job=8
    )
    jobs = launch_jobs(sim.estate)
    settings = await prepared(ddb, sim, [execution_item("exec-slow", "plan-s", jobs)])
    body = await terminate_execution_instances(settings, "exec-slow")
    (job,) = body["jobs"]
    sim.estate.set_job_status(job["accountId"], REGION, job["jobId"], "STARTED")

    await sync_all(settings)
    (item,) = await raw_execution_items(settings, "exec-slow")
    assert "instancesTerminated" not in item

    sim.estate.set_job_status(job["accountId"], REGION, job["jobId"], "COMPLETED")
    await sync_all(settings)
    (item,) = await raw_execution_items(settings, "exec-slow")
    assert item["instancesTerminated"] is True

    sim.calls.reset()
    await sync_all(settings)
    assert sim.calls.count(service="drs", operation="DescribeJobs") == 0


async def test_terminate_sends_at_most_100_ids_per_call(ddb, make_simulator) -> None:
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=230, seed=23, drill_fraction=1.0, max_servers_per_job=20
    )
    jobs = launch_jobs(sim.estate)
    settings = await prepared(ddb, sim, [execution_item("exec-big", "plan-big", jobs)])

    body = await terminate_execution_instances(settings, "exec-big")

    assert body["totalTerminated"] == 230
    assert sim.calls.count(service="drs", operation="TerminateRecoveryInstances") == 3
    assert await cache(settings) == {}


async def test_terminate_isolates_an_instance_already_terminating(ddb, make_simulator) -> None:
    """DRS rejects the whole call for one such id: the rest still terminate, that one is
    reported as a conflict and its cache record stays."""
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=8, seed=24, drill_fraction=1.0, max_servers_per_job=8
    )
    jobs = launch_jobs(sim.estate)
    expected = launched_by(jobs)
    settings = await prepared(ddb, sim, [execution_item("exec-conflict", "plan-c", jobs)])
    gone = sorted(expected)[0]
    sim.estate.terminate(gone)
    sim.calls.reset()

    body = await terminate_execution_instances(settings, "exec-conflict")

    assert [f["recoveryInstanceId"] for f in body["failed"]] == [gone]
    assert body["failed"][0]["errorType"] == "ConflictException"
    # Some were terminated: not "already terminated" (the orchestration's Execution Details page
    # would stop tracking the termination on it).
    assert "alreadyTerminated" not in body and "already terminating" in body["message"]
    assert {t["recoveryInstanceId"] for t in body["terminated"]} == expected - {gone}
    assert sim.calls.count(service="drs", operation="TerminateRecoveryInstances") == 1 + len(expected)
    assert {r["recoveryInstanceId"] for r in (await cache(settings)).values()} == {gone}


async def test_terminate_everything_already_terminating(ddb_moto, make_simulator) -> None:
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=3, seed=25, drill_fraction=1.0, max_servers_per_job=3
    )
    jobs = launch_jobs(sim.estate)
    settings = await prepared(ddb_moto, sim, [execution_item("exec-done", "plan-d", jobs)])
    for ri in launched_by(jobs):
        sim.estate.terminate(ri)

    body = await terminate_execution_instances(settings, "exec-done")

    assert (body["totalTerminated"], body["totalFailed"], body["alreadyTerminated"]) == (0, 3, True)
    assert "terminateJobs" not in await execution_record(settings, "exec-done")


async def test_terminate_reports_an_account_whose_role_is_denied(ddb_moto, make_simulator) -> None:
    """The denied account's instances fail (and stay cached); the hub's still terminate."""
    sim = make_simulator(
        accounts=2, regions=(REGION,), instances_per_scope=10, seed=26, drill_fraction=1.0, max_servers_per_job=5
    )
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
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=2, seed=27, drill_fraction=1.0)
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


# -- safety rules ------------------------------------------------------------------------------------


def outside_launch_scenario(estate) -> tuple[dict, str, set[str]]:
    """A drill execution, then an operator relaunches one of its servers by hand: the new
    instance's server is planned by the execution, but neither its job nor its id is on it."""
    job = launch_jobs(estate)[0]
    execution = execution_item("exec-drill", "plan-drill", [job])
    servers = [p["sourceServerID"] for p in job["participatingServers"]]
    manual = estate.relaunch(servers[0])
    launched = launched_by([job]) - {p["recoveryInstanceID"] for p in job["participatingServers"][:1]}
    return execution, manual, launched


async def test_sync_records_how_each_instance_was_attributed(ddb, make_simulator) -> None:
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=6, seed=40, drill_fraction=1.0, max_servers_per_job=3
    )
    execution, manual, launched = outside_launch_scenario(sim.estate)
    settings = await prepared(ddb, sim, [execution])

    records = {r["recoveryInstanceId"]: r for r in (await cache(settings)).values()}

    assert records[manual]["attribution"] == "inferred"
    assert records[manual]["sourceExecutionId"] == "exec-drill"
    assert {records[ri]["attribution"] for ri in launched} == {"job"}
    assert all("attribution" not in r for r in records.values() if "sourceExecutionId" not in r)


async def test_sync_attributes_by_recovery_instance_when_the_wave_has_no_job(ddb_moto, make_simulator) -> None:
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=3, seed=41, drill_fraction=1.0, max_servers_per_job=3
    )
    jobs = launch_jobs(sim.estate)
    execution = execution_item("exec-ri", "plan-ri", jobs)
    for wave in execution["waves"]:
        del wave["jobId"]
    settings = await prepared(ddb_moto, sim, [execution])

    records = (await cache(settings)).values()

    assert {r["attribution"] for r in records} == {"recoveryInstance"}


async def test_sync_gives_existing_records_their_attribution_once(ddb, make_simulator) -> None:
    """Records written before the field existed are rewritten by the next sync (their hash
    changes once), and the sync after that writes nothing."""
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=8, seed=42, drill_fraction=1.0, max_servers_per_job=4
    )
    jobs = launch_jobs(sim.estate)
    settings = await prepared(ddb, sim, [execution_item("exec-old", "plan-old", jobs[:1])])
    attributed = [item for item in (await cache(settings)).values() if "attribution" in item]
    old_items = []
    for item in attributed:
        old = {k: v for k, v in item.items() if k != "attribution"}
        content = {k: v for k, v in public_record(old).items() if k != "lastSyncTime"}
        old_items.append({**old, "contentHash": content_hash(content)})
    await put(settings, settings.tables.cache, old_items)

    first = await sync_all(settings)
    second = await sync_all(settings)

    assert first.instances_updated == len(attributed) > 0
    assert second.instances_updated == 0
    assert all("attribution" in item for item in (await cache(settings)).values() if "sourceExecutionId" in item)


async def test_terminate_never_touches_an_instance_launched_outside_the_execution(ddb, make_simulator) -> None:
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=6, seed=43, drill_fraction=1.0, max_servers_per_job=3
    )
    execution, manual, launched = outside_launch_scenario(sim.estate)
    settings = await prepared(ddb, sim, [execution])

    body = await terminate_execution_instances(settings, "exec-drill")

    assert {t["recoveryInstanceId"] for t in body["terminated"]} == launched
    assert [s["recoveryInstanceId"] for s in body["skipped"]] == [manual]
    assert "inference" in body["skipped"][0]["reason"]
    assert sim.estate.recovery_instance(manual) is not None
    assert manual in {r["recoveryInstanceId"] for r in (await cache(settings)).values()}


async def test_terminate_active_execution_is_refused_before_any_drs_call(ddb, make_simulator) -> None:
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=4, seed=44, drill_fraction=1.0, max_servers_per_job=4
    )
    jobs = launch_jobs(sim.estate)
    settings = await prepared(ddb, sim, [{**execution_item("exec-run", "plan-run", jobs), "status": "PAUSED"}])
    before = await cache(settings)

    with pytest.raises(ExecutionInProgressError) as caught:
        await terminate_execution_instances(settings, "exec-run")

    assert caught.value.execution_status == "PAUSED"
    assert sim.calls.count(service="drs") == 0
    assert await cache(settings) == before


async def test_terminate_skips_real_recoveries_unless_included(ddb, make_simulator) -> None:
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=4, seed=45, drill_fraction=0.0, max_servers_per_job=4
    )
    jobs = launch_jobs(sim.estate)
    expected = launched_by(jobs)
    settings = await prepared(ddb, sim, [execution_item("exec-dr", "plan-dr", jobs)])

    skipped = await terminate_execution_instances(settings, "exec-dr")
    assert sim.calls.count(service="drs", operation="TerminateRecoveryInstances") == 0
    included = await terminate_execution_instances(settings, "exec-dr", TerminateOptions(include_non_drill=True))

    assert {s["recoveryInstanceId"] for s in skipped["skipped"]} == expected
    assert skipped["totalTerminated"] == 0
    assert {t["recoveryInstanceId"] for t in included["terminated"]} == expected


async def test_terminate_applied_then_500_reports_terminated_and_never_calls_twice(ddb, make_simulator) -> None:
    """DRS applies the termination and answers 500: the engine looks (DescribeRecoveryInstances,
    DescribeJobs), reports every instance terminated with the job, and calls terminate once."""
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=5, seed=46, drill_fraction=1.0, max_servers_per_job=5
    )
    jobs = launch_jobs(sim.estate)
    expected = launched_by(jobs)
    settings = await prepared(ddb, sim, [execution_item("exec-amb", "plan-amb", jobs)])
    sim.set_faults(terminate_apply_then_fail=1)

    body = await terminate_execution_instances(settings, "exec-amb")

    assert {t["recoveryInstanceId"] for t in body["terminated"]} == expected
    assert body["failed"] == []
    job_ids = {t["jobId"] for t in body["terminated"]}
    assert len(job_ids) == 1 and None not in job_ids
    assert sim.calls.count(service="drs", operation="TerminateRecoveryInstances") == 1
    assert sim.calls.count(service="drs", operation="DescribeJobs") == 1
    assert await cache(settings) == {}
    item = await execution_record(settings, "exec-amb")
    assert [j["jobId"] for j in item["terminateJobs"]] == list(job_ids)


async def test_terminate_ambiguous_outcome_without_describe_jobs_still_proves_by_instance(ddb, make_simulator) -> None:
    """DescribeJobs denied (an older role): what DescribeRecoveryInstances shows terminating is
    reported terminated with a null job id, never sent twice, never failed."""
    sim = make_simulator(
        accounts=2, regions=(REGION,), instances_per_scope=4, seed=48, drill_fraction=1.0, max_servers_per_job=4
    )
    # A target account: the simulator denies operations to assumed roles, as a role policy would.
    target = next(a.account_id for a in sim.estate.accounts if a.account_id != sim.estate.hub_account_id)
    jobs = launch_jobs(sim.estate, target)
    expected = launched_by(jobs)
    settings = await prepared(ddb, sim, [execution_item("exec-nojobs", "plan-nojobs", jobs)])
    sim.set_faults(terminate_apply_then_fail=1, unauthorized_operations=("drs:DescribeJobs",))

    body = await terminate_execution_instances(settings, "exec-nojobs")

    assert {t["recoveryInstanceId"] for t in body["terminated"]} == expected
    assert {t["jobId"] for t in body["terminated"]} == {None}
    assert body["failed"] == []
    assert sim.calls.count(service="drs", operation="TerminateRecoveryInstances") == 1
    assert not {r["recoveryInstanceId"] for r in (await cache(settings)).values()} & expected


async def test_terminate_splits_a_per_id_validation_rejection(ddb_moto, make_simulator) -> None:
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=6, seed=47, drill_fraction=1.0, max_servers_per_job=6
    )
    jobs = launch_jobs(sim.estate)
    expected = launched_by(jobs)
    bad = sorted(expected)[0]
    settings = await prepared(ddb_moto, sim, [execution_item("exec-val", "plan-val", jobs)])
    sim.set_faults(terminate_rejected_ids=(bad,), terminate_rejection_code="ValidationException")

    body = await terminate_execution_instances(settings, "exec-val")

    assert [(f["recoveryInstanceId"], f["errorType"]) for f in body["failed"]] == [(bad, "ValidationException")]
    assert {t["recoveryInstanceId"] for t in body["terminated"]} == expected - {bad}
    assert "alreadyTerminated" not in body
    assert {r["recoveryInstanceId"] for r in (await cache(settings)).values()} == {bad}


async def test_terminate_past_its_budget_starts_nothing_and_says_incomplete(ddb_moto, make_simulator) -> None:
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=3, seed=48, drill_fraction=1.0, max_servers_per_job=3
    )
    jobs = launch_jobs(sim.estate)
    settings = await prepared(ddb_moto, sim, [execution_item("exec-late", "plan-late", jobs)])
    before = await cache(settings)

    body = await terminate_execution_instances(settings, "exec-late", TerminateOptions(budget_seconds=0.0))

    assert body["incomplete"] is True and body["totalNotAttempted"] == 3
    assert sim.calls.count(service="drs", operation="TerminateRecoveryInstances") == 0
    assert await cache(settings) == before


async def test_record_job_never_appends_the_same_job_twice(ddb, make_simulator) -> None:
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=2, seed=49, drill_fraction=1.0)
    jobs = launch_jobs(sim.estate)
    settings = await prepared(ddb, sim, [execution_item("exec-job", "plan-job", jobs)])
    job = Job("drsjob-0123456789abcdef0", Scope(sim.estate.hub_account_id, REGION), "TERMINATE", "PENDING", 2)
    async with open_runtime(settings) as rt:
        executions = [await execution_record(settings, "exec-job")]
        first = await record_job(rt, executions, job, "arn:aws:iam::111122223333:role/Operator")
        second = await record_job(rt, executions, job, "arn:aws:iam::111122223333:role/Operator")

    item = await execution_record(settings, "exec-job")
    assert first and second
    assert [j["jobId"] for j in item["terminateJobs"]] == [job.job_id]
    assert item["terminateJobs"][0]["requestedBy"] == "arn:aws:iam::111122223333:role/Operator"


async def test_preview_lists_the_decision_with_zero_aws_calls(ddb, make_simulator) -> None:
    sim = make_simulator(
        accounts=1, regions=(REGION,), instances_per_scope=6, seed=50, drill_fraction=1.0, max_servers_per_job=3
    )
    execution, manual, launched = outside_launch_scenario(sim.estate)
    settings = await prepared(ddb, sim, [execution])

    body = await execution_recovery_instances(settings, "exec-drill")

    assert sim.calls.count() == 0
    by_ri = {i["recoveryInstanceId"]: i for i in body["instances"]}
    assert set(by_ri) == launched
    assert {by_ri[ri]["attribution"] for ri in launched} == {"job"}
    assert [(s["recoveryInstanceId"], s["attribution"]) for s in body["skipped"]] == [(manual, "inferred")]
    assert (body["totalInstances"], body["executionStatus"]) == (len(launched), "COMPLETED")
