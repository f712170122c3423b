"""check_existing_instances end to end: plans, protection groups and the cache on real DynamoDB
servers, after a sync from the simulator. No DRS or EC2 call is made by the check itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from devtools.faultproxy import DynamoFaultProxy, FaultKind, FaultRule
from syncengine.core.errors import InvalidRequestError, RecoveryPlanNotFoundError
from syncengine.core.models import Scope
from syncengine.plans.check_existing import check_existing_instances, unverified_server_ids
from syncengine.sync.engine import get_sync_status, sync_all, sync_scope
from tests.integration.test_handlers_support import (
    REGION,
    estate_settings,
    job_executions,
    live_instances,
    plan_scenario,
    put,
    seed_estate,
    seed_plan,
)

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend

ESTATE = {"accounts": 2, "regions": (REGION,), "instances_per_scope": 24, "idle_servers_per_scope": 2, "seed": 5}


async def synced(ddb, sim, **overrides):
    settings = estate_settings(ddb, sim, **overrides)
    await seed_estate(settings, sim.estate, job_executions(sim.estate))
    report = await sync_all(settings)
    assert report.scopes_failed == 0
    return settings


async def test_check_existing_reports_explicit_and_tagged_servers(ddb, make_simulator) -> None:
    """Exactly the plan's servers that have an instance, each with its source execution."""
    sim = make_simulator(**ESTATE)
    settings = await synced(ddb, sim)
    scenario = plan_scenario(sim.estate)
    await seed_plan(settings, scenario)
    sim.calls.reset()

    body = await check_existing_instances(settings, "plan-mixed")

    found = {entry["sourceServerId"]: entry for entry in body["existingInstances"]}
    assert set(found) == scenario["expected"]
    assert (body["hasExistingInstances"], body["instanceCount"], body["planId"]) == (
        True,
        len(scenario["expected"]),
        "plan-mixed",
    )
    live = live_instances(sim.estate)
    for server_id, entry in found.items():
        assert entry["recoveryInstanceId"] == live[server_id]["recoveryInstanceID"]
        assert entry["sourceExecutionId"] == f"exec-{live[server_id]['jobID']}"
        assert entry["ec2InstanceId"] == live[server_id]["ec2InstanceID"]
    assert sim.calls.count(service="drs") == 0 and sim.calls.count(service="ec2") == 0


async def test_check_existing_unknown_plan_raises_not_found(ddb_moto) -> None:
    settings = ddb_moto.settings(endpoint_urls=(("dynamodb", ddb_moto.endpoint_url),))

    with pytest.raises(RecoveryPlanNotFoundError):
        await check_existing_instances(settings, "no-such-plan")


async def test_check_existing_rejects_malformed_plan_id(ddb_moto) -> None:
    settings = ddb_moto.settings(endpoint_urls=(("dynamodb", ddb_moto.endpoint_url),))

    with pytest.raises(InvalidRequestError):
        await check_existing_instances(settings, "x" * 1000)


async def test_check_existing_plan_without_instances(ddb_moto, make_simulator) -> None:
    """Servers that never launched, in a freshly synced scope: the empty shape and no cache miss."""
    sim = make_simulator(**ESTATE)
    settings = await synced(ddb_moto, sim)
    scenario = plan_scenario(sim.estate)
    idle = sorted(scenario["idle"])
    await put(settings, settings.tables.recovery_plans, [{"planId": "plan-idle", "waves": [{"serverIds": idle}]}])

    body = await check_existing_instances(settings, "plan-idle")

    assert body == {
        "hasExistingInstances": False,
        "instanceCount": 0,
        "planId": "plan-idle",
        "existingInstances": [],
        "unverifiedServerIds": [],
    }


async def test_check_existing_uses_wave_server_ids_when_group_lists_none(ddb_moto, make_simulator) -> None:
    sim = make_simulator(**ESTATE)
    settings = await synced(ddb_moto, sim)
    hub = sim.estate.hub_account_id
    chosen = sorted(live_instances(sim.estate, hub, REGION))[:2]
    await put(
        settings, settings.tables.protection_groups, [{"groupId": "pg-empty", "region": REGION, "accountId": hub}]
    )
    plan = {"planId": "plan-wave-ids", "waves": [{"protectionGroupId": "pg-empty", "serverIds": chosen}]}
    await put(settings, settings.tables.recovery_plans, [plan])

    body = await check_existing_instances(settings, "plan-wave-ids")

    assert [e["sourceServerId"] for e in body["existingInstances"]] == chosen


@pytest.mark.parametrize(
    "plan_account",
    [pytest.param(True, id="plan-account"), pytest.param(False, id="current-account")],
)
async def test_check_existing_tag_group_without_account_uses_fallback(ddb_moto, make_simulator, plan_account) -> None:
    """A tag group with no accountId matches in the plan's account, else the current (hub) one."""
    sim = make_simulator(**ESTATE)
    settings = await synced(ddb_moto, sim)
    scenario = plan_scenario(sim.estate)
    group = {**scenario["groups"][1], "groupId": "pg-no-account"}
    del group["accountId"]
    plan = {"planId": "plan-fallback", "waves": [{"protectionGroupId": "pg-no-account"}]}
    if plan_account:
        plan["accountId"] = sim.estate.hub_account_id
    await put(settings, settings.tables.protection_groups, [group])
    await put(settings, settings.tables.recovery_plans, [plan])
    sim.calls.reset()

    body = await check_existing_instances(settings, "plan-fallback")

    hub_live = live_instances(sim.estate, sim.estate.hub_account_id, REGION)
    assert {e["sourceServerId"] for e in body["existingInstances"]} == scenario["expected"] & set(hub_live)
    assert sim.calls.count(service="sts", operation="GetCallerIdentity") == (0 if plan_account else 1)
    assert sim.calls.count(service="drs") == 0


async def test_check_existing_reads_past_100_keys_and_unprocessed_keys(ddb, make_simulator, capsys) -> None:
    """150 servers: two BatchGetItem calls, UnprocessedKeys re-requested, lookups counted; servers
    of a freshly synced scope without a record are no cache miss."""
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=140, seed=9)
    settings = await synced(ddb, sim)
    live = sorted(live_instances(sim.estate))
    missing = [f"s-{n:017x}" for n in range(10)]
    plan = {"planId": "plan-big", "waves": [{"serverIds": live[:70]}, {"serverIds": live[70:] + missing}]}
    await put(settings, settings.tables.recovery_plans, [plan])
    rules = [FaultRule(FaultKind.UNPROCESSED, operations={"BatchGetItem"}, fraction=0.5, limit=3)]
    async with DynamoFaultProxy(ddb.endpoint_url, rules=rules) as proxy:
        endpoints = tuple((s, proxy.endpoint_url if s == "dynamodb" else u) for s, u in settings.endpoint_urls)
        faulty = settings.with_changes(endpoint_urls=endpoints, emit_metrics=True)
        capsys.readouterr()

        body = await check_existing_instances(faulty, "plan-big")

        assert proxy.injected(FaultKind.UNPROCESSED) >= 1
    assert {e["sourceServerId"] for e in body["existingInstances"]} == set(live)
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"CacheHits"' in line]
    # Powertools' layout: each metric is a list of its data points (one here).
    assert (metrics[-1]["CacheLookups"], metrics[-1]["CacheHits"], metrics[-1]["CacheMisses"]) == ([150], [150], [0])
    assert metrics[-1]["CacheMissRate"] == [0]
    assert body["unverifiedServerIds"] == []


async def test_check_existing_returns_ec2s_lower_case_state(ddb, make_simulator) -> None:
    """``ec2InstanceState`` is EC2's lower-case state, which the orchestration's Recovery Plans page
    compares with 'running' (frontend/src/pages/RecoveryPlansPage.tsx); DRS's value is apart."""
    sim = make_simulator(**ESTATE)
    settings = await synced(ddb, sim)
    scenario = plan_scenario(sim.estate)
    await seed_plan(settings, scenario)

    body = await check_existing_instances(settings, "plan-mixed")

    live = live_instances(sim.estate)
    for entry in body["existingInstances"]:
        ri = live[entry["sourceServerId"]]
        ec2 = sim.estate.ec2_instance(ri["ec2InstanceID"]) or {}
        assert entry["ec2InstanceState"] == ((ec2.get("State") or {}).get("Name") or ri["ec2InstanceState"].lower())
        assert entry["ec2InstanceState"].islower()
        assert entry["drsInstanceState"] == ri["ec2InstanceState"]


async def test_check_existing_last_sync_time_is_the_last_confirming_sync(ddb, make_simulator) -> None:
    """A steady-state sync rewrites no record, yet every record's ``lastSyncTime`` moves to it:
    it is the scope's last successful full-scope sync, not the record's last content change."""
    sim = make_simulator(**ESTATE)
    settings = await synced(ddb, sim)
    scenario = plan_scenario(sim.estate)
    await seed_plan(settings, scenario)
    first = await check_existing_instances(settings, "plan-mixed")

    second_sync = await sync_all(settings)
    body = await check_existing_instances(settings, "plan-mixed")

    assert second_sync.instances_updated == 0
    scopes = {f"{s.account_id}#{s.region}": s for s in (await get_sync_status(settings)).scopes}
    before = {e["sourceServerId"]: e["lastSyncTime"] for e in first["existingInstances"]}
    for entry in body["existingInstances"]:
        last_success = scopes[f"{entry['accountId']}#{entry['region']}"].last_success_time
        assert entry["lastSyncTime"] == last_success
        assert entry["lastSyncTime"] > before[entry["sourceServerId"]]


async def test_check_existing_targeted_sync_confirms_no_other_record(ddb, make_simulator) -> None:
    """A wave's targeted sync of one server succeeds for the scope but saw only that server: the
    other records keep the full sync's confirmation time."""
    sim = make_simulator(**ESTATE)
    settings = await synced(ddb, sim)
    scenario = plan_scenario(sim.estate)
    await seed_plan(settings, scenario)
    first = await check_existing_instances(settings, "plan-mixed")
    entry = first["existingInstances"][0]
    others = {e["sourceServerId"]: e["lastSyncTime"] for e in first["existingInstances"][1:]}

    await sync_scope(settings, entry["accountId"], entry["region"], [entry["sourceServerId"]])
    body = await check_existing_instances(settings, "plan-mixed")

    assert {e["sourceServerId"]: e["lastSyncTime"] for e in body["existingInstances"][1:]} == others


async def test_check_existing_servers_of_a_never_synced_scope_are_unverified(ddb, make_simulator) -> None:
    """A scope whose syncs failed cannot vouch for its servers: all of them are listed in
    ``unverifiedServerIds`` and counted as misses; the freshly synced scope's are not."""
    sim = make_simulator(**ESTATE)
    scenario = plan_scenario(sim.estate)
    target = scenario["groups"][0]["accountId"]
    sim.set_faults(failingScopes=[f"{target}#{REGION}"])
    settings = estate_settings(ddb, sim, emit_metrics=False)
    await seed_estate(settings, sim.estate, job_executions(sim.estate))
    report = await sync_all(settings)
    assert report.scopes_failed == 1
    await seed_plan(settings, scenario)

    body = await check_existing_instances(settings, "plan-mixed")

    assert set(body["unverifiedServerIds"]) == set(scenario["groups"][0]["sourceServerIds"])
    assert {e["sourceServerId"] for e in body["existingInstances"]} == scenario["expected"] - set(
        scenario["groups"][0]["sourceServerIds"]
    )


def test_unverified_server_ids_follow_the_stale_window() -> None:
    """Past ``stale_after_seconds`` a record's confirmation, or its scope's reconciliation for a
    server without a record, no longer vouches for the server."""
    fresh, stale = Scope("111122223333", "us-east-1"), Scope("111122223333", "eu-west-1")
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    servers = {"s-1": fresh, "s-2": fresh, "s-3": stale, "s-4": stale}
    records = [
        {"sourceServerId": "s-1", "lastSyncTime": "2026-11-29T11:50:00.000Z"},
        {"sourceServerId": "s-3", "lastSyncTime": "2026-11-29T11:40:00.000Z"},
    ]
    reconciled = {fresh: "2026-11-29T11:50:00.000Z", stale: "2026-11-29T11:40:00.000Z"}

    unverified = unverified_server_ids(servers, records, reconciled, stale_after_seconds=900, now=now)

    assert unverified == ["s-3", "s-4"]
