"""check_existing_instances end to end: plans, protection groups and the cache on real DynamoDB
servers, after a sync from the simulator. No DRS or EC2 call is made by the check itself."""

from __future__ import annotations

import json

import pytest

from syncengine.engine import sync_all
from syncengine.errors import InvalidRequestError, RecoveryPlanNotFoundError
from syncengine.faultproxy import DynamoFaultProxy, FaultKind, FaultRule
from syncengine.plans import check_existing_instances
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
    """Servers that never launched: the empty shape, every server a cache miss."""
    sim = make_simulator(**ESTATE)
    settings = await synced(ddb_moto, sim)
    scenario = plan_scenario(sim.estate)
    idle = sorted(scenario["idle"])
    await put(settings, settings.tables.recovery_plans, [{"planId": "plan-idle", "waves": [{"serverIds": idle}]}])

    body = await check_existing_instances(settings, "plan-idle")

    assert body == {"hasExistingInstances": False, "instanceCount": 0, "planId": "plan-idle", "existingInstances": []}


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
    """150 servers: two BatchGetItem calls, UnprocessedKeys re-requested, misses counted."""
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
    assert (metrics[-1]["CacheHits"], metrics[-1]["CacheMisses"]) == (140, 10)
    assert metrics[-1]["CacheMissRate"] == pytest.approx(100 * 10 / 150)
