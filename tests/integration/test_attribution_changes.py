"""Pay only for change (issue 24): a steady-state sync reads execution-index keys only for the
records that changed, and an unchanged record still follows what the index learns about it (a
rebuild that finds its execution, a refresh that names its recovery instance), through the index's
change log; a write too large to log makes the next sync attribute everything again."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from syncengine.core.models import RunStatus
from syncengine.dynamodb.client import CallObserver
from syncengine.sync import execution_sync
from syncengine.sync.engine import open_runtime, sync_all
from syncengine.sync.execution_sync import index_table
from syncengine.tables.execution_index import changes as execution_changes
from syncengine.tables.execution_index.changes import CHANGE_LOG_MAX_KEYS
from tests.integration.engine_support import cache_items, engine_settings, launch_jobs, put_raw, seed
from tests.integration.test_handlers_support import execution_item

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def _no_clock_skew(monkeypatch: pytest.MonkeyPatch) -> None:
    """These syncs run milliseconds apart on one clock: the allowance for the clocks of two
    Lambda containers would make each re-read what the one before it wrote."""
    monkeypatch.setattr(execution_changes, "CLOCK_SKEW_SECONDS", 0.0)


class IndexKeysRead(CallObserver):
    """Keys each sync reads from the execution-index table (BatchGetItem), seen by the engine's
    DynamoDB client (``syncengine.dynamodb.client.CALL_OBSERVERS``) while ``observing``."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.keys: Counter[str] = Counter()

    def before(self, operation: str, params: dict[str, Any]) -> None:
        if operation != "BatchGetItem":
            return
        for key in (params.get("RequestItems") or {}).get(self.table, {}).get("Keys", []):
            self.keys[key["indexKey"]["S"]] += 1

    def read(self) -> set[str]:
        return {key for key in self.keys if not key.startswith("meta#")}


async def _rebuild(settings: Any) -> None:
    async with open_runtime(settings) as rt:
        await index_table(rt.dynamo, settings).rebuild(time.time())


async def _settled(ddb: Any, sim: Any, executions: list[dict[str, Any]] | None = None) -> Any:
    """Settings of a synced estate in its steady state: the first sync (a Scan), the second (which
    attributes everything again after the first index was written), a third, and a rebuild."""
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate, executions=executions)
    for _ in range(3):
        assert (await sync_all(settings)).status is RunStatus.SUCCESS
    await _rebuild(settings)
    return settings


async def _counted_sync(settings: Any) -> tuple[Any, set[str]]:
    counter = IndexKeysRead(settings.tables.execution_index)
    with counter.observing():
        report = await sync_all(settings)
    assert report.status is RunStatus.SUCCESS
    return report, counter.read()


async def test_attribution_steady_sync_reads_no_index_key(ddb: Any, make_simulator: Any) -> None:
    sim = make_simulator(accounts=2, regions=(REGION,), instances_per_scope=12, seed=7)
    settings = await _settled(ddb, sim)

    report, read = await _counted_sync(settings)

    assert (report.instances_updated, report.instances_unchanged) == (0, 24)
    assert read == set()


async def test_attribution_reads_the_keys_of_a_changed_record_only(ddb: Any, make_simulator: Any) -> None:
    sim = make_simulator(accounts=2, regions=(REGION,), instances_per_scope=12, seed=7)
    settings = await _settled(ddb, sim)
    changed = sim.estate.recovery_instances()[5]
    sim.estate.update_ec2(changed["ec2InstanceID"], name="renamed")
    before = (await cache_items(settings))[changed["sourceServerID"]]

    report, read = await _counted_sync(settings)

    assert report.instances_updated == 1
    assert read and all(
        changed["recoveryInstanceID"] in key or changed["sourceServerID"] in key or key == f"job#{changed['jobID']}"
        for key in read
    )
    after = (await cache_items(settings))[changed["sourceServerID"]]
    assert after["name"] == "renamed"
    assert (after.get("sourceExecutionId"), after.get("attribution")) == (
        before.get("sourceExecutionId"),
        before.get("attribution"),
    )


async def test_attribution_unchanged_record_follows_an_execution_a_rebuild_finds(ddb: Any, make_simulator: Any) -> None:
    """An execution item written after its instances were first seen (no wave event reached us):
    the rebuild indexes it, and the next sync attributes those unchanged records by job."""
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=6, seed=9, max_servers_per_job=3)
    settings = await _settled(ddb, sim, executions=[])
    assert not any("attribution" in r for r in (await cache_items(settings)).values())
    job = launch_jobs(sim.estate)[0]
    servers = {p["sourceServerID"] for p in job["participatingServers"]}
    await put_raw(settings, settings.tables.execution_history, [execution_item("exec-late", "plan-l", [job])])
    await _rebuild(settings)

    report, read = await _counted_sync(settings)

    assert report.instances_updated == len(servers)
    cached = await cache_items(settings)
    assert {sid for sid, r in cached.items() if r.get("attribution")} == servers
    assert {(cached[s]["sourceExecutionId"], cached[s]["attribution"]) for s in servers} == {("exec-late", "job")}
    assert f"job#{job['jobID']}" in read
    assert len(read) < 3 * len(cached)


async def test_attribution_unchanged_record_follows_a_refresh_naming_its_recovery_instance(
    ddb: Any, make_simulator: Any
) -> None:
    """A refresh (a wave's, a terminate's) of an execution that names a recovery instance in its
    server statuses only, not by job: the next full sync attributes it by recovery instance."""
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=6, seed=9, max_servers_per_job=3)
    settings = await _settled(ddb, sim, executions=[])
    job = launch_jobs(sim.estate)[0]
    item = execution_item("exec-ri", "plan-r", [job])
    for wave in item["waves"]:
        del wave["jobId"]
    await put_raw(settings, settings.tables.execution_history, [item])
    async with open_runtime(settings) as rt:
        await index_table(rt.dynamo, settings).refresh("exec-ri")

    report = await sync_all(settings)

    servers = {p["sourceServerID"] for p in job["participatingServers"]}
    assert report.instances_updated == len(servers)
    cached = await cache_items(settings)
    assert {cached[s]["attribution"] for s in servers} == {"recoveryInstance"}


async def test_attribution_write_too_large_to_log_makes_the_next_sync_attribute_everything(
    ddb: Any, make_simulator: Any
) -> None:
    """A write of more keys than the log lists (a first rebuild): a sync whose records were
    attributed before it landed reads every key again; the sync after that reads none."""
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=6, seed=9)
    settings = await _settled(ddb, sim)
    async with open_runtime(settings) as rt:
        table = index_table(rt.dynamo, settings)
        keys = [f"srv#s-{n}#{REGION}" for n in range(CHANGE_LOG_MAX_KEYS + 1)]
        logged = await table.change_log.log_changes(keys, time.time())
        await table.change_log.changes_written(logged, time.time())
    assert logged.unlogged_mark is not None

    first, read_first = await _counted_sync(settings)
    second, read_second = await _counted_sync(settings)

    assert len(read_first) >= len(await cache_items(settings))
    assert read_second == set()
    assert first.instances_updated == second.instances_updated == 0


async def test_attribution_unknown_job_asks_again_after_a_refused_early_rebuild(
    ddb: Any, make_simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new instance whose job no indexed execution names, met while an early rebuild was just
    made (its claim refused): the record is written unattributed, and the next sync, although
    the record did not change, reads its marker again, asks, and attributes it by job."""
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=4, seed=5)
    settings = await _settled(ddb, sim, executions=[])
    account = sim.estate.accounts[0].account_id
    (launched,) = sim.estate.launch(account, REGION, 1)
    job = next(
        j
        for j in launch_jobs(sim.estate)
        if launched in {p.get("recoveryInstanceID") for p in j["participatingServers"]}
    )
    server = next(p["sourceServerID"] for p in job["participatingServers"])
    await put_raw(settings, settings.tables.execution_history, [execution_item("exec-new", "plan-n", [job])])
    async with open_runtime(settings) as rt:
        table = index_table(rt.dynamo, settings)
        now = time.time()
        assert await table.claim_rebuild(now, 300, early=True)  # an early rebuild just ran
        await table.release_claim(now)

    refused = await sync_all(settings)
    assert refused.instances_updated == 1
    assert "attribution" not in (await cache_items(settings))[server]

    monkeypatch.setattr(execution_sync, "EARLY_REBUILD_SECONDS", 0.0)
    again = await sync_all(settings)

    assert again.instances_updated == 1
    cached = (await cache_items(settings))[server]
    assert (cached["sourceExecutionId"], cached["attribution"]) == ("exec-new", "job")
