"""The execution index on real DynamoDB servers (moto and dynalite): conditional "most recent
wins" puts, a steady sync that reads no history, a wave that attributes by job without a rebuild,
a rebuild that keeps a racing refresh's newer entry, a failed rebuild that fails no scope, and a
missing entry that makes terminate skip (never end a wrong instance)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from syncengine.aws.clients import AwsClients
from syncengine.core.models import RunStatus
from syncengine.dynamodb.seam import Dynamo
from syncengine.refresh.waves import sync_wave
from syncengine.sync.engine import open_runtime, sync_all
from syncengine.sync.execution_sync import index_table
from syncengine.tables.execution_index.items import entry_item, job_key, server_key
from syncengine.tables.execution_index.lookup import ExecutionIndex, ExecutionRef
from syncengine.tables.execution_index.table import STATE_KEY, ExecutionIndexTable
from syncengine.terminate.instances import terminate_execution_instances
from tests.integration.engine_support import cache_items, engine_settings, put_raw, seed
from tests.integration.test_handlers_support import execution_item

REGION = "us-east-1"
REFS = (
    ExecutionRef("exec-a", "Plan A", 10),
    ExecutionRef("exec-b", "Plan B", 20),
    ExecutionRef("exec-c", "Plan C", 20),  # same time as exec-b: the larger id wins the tie
)


async def _stored(settings: Any, keys: list[str]) -> dict[str, ExecutionRef]:
    async with open_runtime(settings) as rt:
        return await index_table(rt.dynamo, settings).get(keys)


async def _state(settings: Any) -> dict[str, Any]:
    async with open_runtime(settings) as rt:
        return await index_table(rt.dynamo, settings).state() or {}


async def _drop_history(settings: Any) -> None:
    # Through aiobotocore: the engine's DynamoDB client serves only the calls the engine makes.
    async with AwsClients(settings) as aws:
        client = await aws.client("dynamodb", settings.home_region)
        await Dynamo(client, retry=settings.retry).call("delete_table", TableName=settings.tables.execution_history)


@pytest.mark.parametrize(
    "writes", list(itertools.permutations(REFS)), ids=lambda w: "-".join(r.execution_id for r in w)
)
async def test_execution_index_conditional_put_keeps_the_most_recent_under_any_order(
    ddb: Any, writes: tuple[ExecutionRef, ...]
) -> None:
    settings = ddb.settings()
    async with open_runtime(settings) as rt:
        table = index_table(rt.dynamo, settings)
        for ref in writes:
            await table.put_latest("srv#s-1#us-east-1", ref)
        stored = await table.get(["srv#s-1#us-east-1"])

    assert stored == {"srv#s-1#us-east-1": REFS[2]}


async def test_execution_index_steady_sync_reads_no_history_item(ddb: Any, make_simulator: Any) -> None:
    """Once the first sync built the index (and marked the jobs no execution names), a sync
    needs the history table not at all: with it gone, the next sync succeeds, writes nothing,
    keeps every attribution and claims no rebuild (a Scan would have failed)."""
    sim = make_simulator(accounts=2, regions=(REGION,), instances_per_scope=12, seed=7)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    before = await cache_items(settings)
    state = await _state(settings)
    await _drop_history(settings)

    again = await sync_all(settings)

    assert again.status is RunStatus.SUCCESS
    assert await _state(settings) == state
    assert (again.instances_updated, again.instances_unchanged) == (0, len(before))
    after = await cache_items(settings)
    attributed = {sid: r.get("sourceExecutionId") for sid, r in before.items()}
    assert {sid: r.get("sourceExecutionId") for sid, r in after.items()} == attributed
    assert any(attributed.values())


async def test_execution_index_wave_attributes_by_job_without_a_rebuild(ddb: Any, make_simulator: Any) -> None:
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=6, seed=9, max_servers_per_job=3)
    settings = engine_settings(ddb, sim)
    account = sim.estate.accounts[0].account_id
    await seed(settings, sim.estate, executions=[])
    await sync_all(settings)
    rebuilt = (await _state(settings))["lastRebuildTime"]
    new = set(sim.estate.launch(account, REGION, 2))
    job = next(
        {**j, "accountId": account, "region": REGION}
        for j in sim.estate.jobs(account, REGION)
        if {p.get("recoveryInstanceID") for p in j["participatingServers"]} == new
    )
    await put_raw(settings, settings.tables.execution_history, [execution_item("exec-wave", "plan-w", [job])])

    result = await sync_wave(settings, "exec-wave", "plan-w", wave_number=1)

    assert result.to_dict()["status"] == "SYNCED"
    cached = await cache_items(settings)
    servers = {p["sourceServerID"] for p in job["participatingServers"]}
    assert {(cached[s]["sourceExecutionId"], cached[s]["attribution"]) for s in servers} == {("exec-wave", "job")}
    assert (await _state(settings))["lastRebuildTime"] == rebuilt
    assert (await _stored(settings, [job_key(job["jobID"])]))[job_key(job["jobID"])].execution_id == "exec-wave"


async def test_execution_index_rebuild_racing_a_refresh_keeps_the_newer(ddb: Any) -> None:
    """The state a race leaves (a refresh's newer entry overwritten by the batch of a rebuild
    that had read the key before the refresh) is repaired by that rebuild's replay."""
    settings = ddb.settings()
    older = {"executionId": "exec-old", "planId": "p", "planName": "Old", "startTime": 10}
    newer = {"executionId": "exec-new", "planId": "p", "planName": "New", "startTime": 20}
    wave = {"waveNumber": 1, "region": REGION, "serverStatuses": [{"sourceServerId": "s-1"}]}
    await put_raw(settings, settings.tables.execution_history, [{**older, "waves": [wave]}])
    key = server_key("s-1", REGION)
    async with open_runtime(settings) as rt:
        table = index_table(rt.dynamo, settings)
        snapshot = ExecutionIndex.from_items(await rt.dynamo.scan_all(settings.tables.execution_history))
        claimed_at = time.time()
        await put_raw(settings, settings.tables.execution_history, [{**newer, "waves": [wave]}])
        await table.refresh("exec-new")
        # The rebuild's batch write of the key it read before the refresh (unconditional).
        await rt.dynamo.batch_write(
            table.table, [{"PutRequest": {"Item": entry_item(key, snapshot.by_server_region[("s-1", REGION)])}}]
        )

        report = await table.rebuild(claimed_at, snapshot)

        stored = await table.get([key])
    assert report.replayed == 1
    assert stored[key].execution_id == "exec-new"


async def test_execution_index_failed_rebuild_fails_no_scope(ddb: Any, make_simulator: Any) -> None:
    sim = make_simulator(accounts=1, regions=(REGION, "eu-west-1"), instances_per_scope=5, seed=13)
    settings = engine_settings(ddb, sim, execution_index_rebuild_seconds=0.001)
    await seed(settings, sim.estate)
    await sync_all(settings)
    await _drop_history(settings)  # the next rebuild's Scan fails

    report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS
    assert report.scopes_synced == 2
    state = await _state(settings)
    assert "rebuildClaimedAt" not in state  # released: the next sync tries again
    assert state.get("indexKey") == STATE_KEY


async def test_execution_index_missing_entry_makes_terminate_skip_and_refreshes_it(
    ddb: Any, make_simulator: Any
) -> None:
    """An execution the index does not know yet (recorded after the index was built, no wave
    event): its instances carry no attribution to it, so terminate finds nothing to end (the safe
    direction), and refreshes the index from the items it read by key; the next sync attributes
    them by job and terminate then ends exactly them."""
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=8, seed=5, drill_fraction=1.0)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate, executions=[])
    await sync_all(settings)
    account = sim.estate.accounts[0].account_id
    job = next(
        {**j, "accountId": account, "region": REGION}
        for j in sim.estate.jobs(account, REGION)
        if j.get("type") == "LAUNCH"
    )
    launched = {p["recoveryInstanceID"] for p in job["participatingServers"]}
    await put_raw(settings, settings.tables.execution_history, [execution_item("exec-late", "plan-l", [job])])

    skipped = await terminate_execution_instances(settings, "exec-late")

    assert skipped["totalTerminated"] == 0
    assert all(sim.estate.recovery_instance(ri) is not None for ri in launched)
    await sync_all(settings)
    ended = await terminate_execution_instances(settings, "exec-late")
    assert {t["recoveryInstanceId"] for t in ended["terminated"]} == launched


async def test_execution_index_run_asks_once_for_an_early_rebuild(
    ddb: Any, make_simulator: Any, monkeypatch: Any
) -> None:
    """Every scope meets a job launched outside the orchestration (a console drill): each marks
    it, and the run makes one claim on the index's state item, not one per scope."""
    sim = make_simulator(accounts=4, regions=(REGION,), instances_per_scope=2, seed=11)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate, executions=[])
    await sync_all(settings)
    for account in sim.estate.accounts:
        sim.estate.launch(account.account_id, REGION, 1)
    claims: list[bool] = []
    real_claim = ExecutionIndexTable.claim_rebuild

    async def counted_claim(self: Any, now: float, every_seconds: float, *, early: bool = False) -> bool:
        claims.append(early)
        return await real_claim(self, now, every_seconds, early=early)

    monkeypatch.setattr(ExecutionIndexTable, "claim_rebuild", counted_claim)

    report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS
    assert report.instances_updated == len(sim.estate.accounts)
    assert claims.count(True) == 1
    assert "lastEarlyRebuildTime" in await _state(settings)
