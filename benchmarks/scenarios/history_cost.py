"""history_cost: the DynamoDB reads of a steady-state sync as the execution history grows 10x.

The small estate (the read scenario's shape) is synced cold and then twice more (the second sync
marks the jobs no execution names and runs one early rebuild), with a history of H executions;
then a rebuild and the same steady-state sync are measured with H and again with 10 H executions
(padding executions of plans that never touch this estate, as a long-lived orchestration
accumulates). The rebuild is paid at most once per EXECUTION_INDEX_REBUILD_SECONDS; before the
index, every sync paid about its history read units.

Counted in this process, per table, by ``benchmarks.capacity.DynamoCounter`` (an observer of
the engine's DynamoDB client): calls, and DynamoDB's own ``ConsumedCapacity``, so the numbers are
read units as DynamoDB bills them, not estimates.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import harness as h
from benchmarks.capacity import DynamoCounter
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.sizes import BenchContext
from syncengine.core.config import SyncSettings
from syncengine.sync.engine import open_runtime, sync_all
from syncengine.sync.execution_sync import index_table

# H per mode; the second measurement has 10 H.
HISTORY = {"quick": 200, "full": 2000}
GROWTH = 10


def padding(count: int, offset: int) -> list[dict[str, Any]]:
    """Executions of plans outside this estate: three waves of ten servers each, with job ids."""
    items = []
    for number in range(offset, offset + count):
        waves = [
            {
                "waveNumber": wave,
                "region": "us-east-1",
                "accountId": "999999999999",
                "jobId": f"drsjob-pad{number:07d}{wave}",
                "status": "COMPLETED",
                "serverStatuses": [
                    {
                        "sourceServerId": f"s-pad{number:07d}{wave}{server:02d}",
                        "recoveryInstanceId": f"i-pad{number:07d}{wave}{server:02d}",
                        "launchStatus": "LAUNCHED",
                    }
                    for server in range(10)
                ],
            }
            for wave in (1, 2, 3)
        ]
        items.append(
            {
                "executionId": f"exec-pad-{number:07d}",
                "planId": f"plan-pad-{number % 13:03d}",
                "planName": f"Padding plan {number % 13}",
                "executionType": "DRILL",
                "status": "COMPLETED",
                "startTime": 1_700_000_000 + number,
                "waves": waves,
            }
        )
    return items


async def _steady_sync(settings: SyncSettings, counter: DynamoCounter) -> dict[str, Any]:
    counter.reset()
    with counter.observing():
        report = await sync_all(settings)
    if report.status.value != "SUCCESS" or report.instances_updated != 0:
        raise ScenarioBroken(f"history_cost: the steady-state sync was not steady: {report.to_dict()}")
    tables = settings.tables
    return {
        "history": counter.of(tables.execution_history),
        "index": counter.of(tables.execution_index),
        "read_units": round(sum(counter.read_units.values()), 1),
        "calls": sum(counter.calls.values()),
    }


async def _rebuild(settings: SyncSettings, counter: DynamoCounter) -> dict[str, Any]:
    counter.reset()
    with counter.observing():
        async with open_runtime(settings) as rt:
            report = await index_table(rt.dynamo, settings).rebuild(time.time())
    return {
        "history": counter.of(settings.tables.execution_history),
        "index": counter.of(settings.tables.execution_index),
        "history_items": report.history_items,
    }


async def _grow(settings: SyncSettings, items: list[dict[str, Any]]) -> None:
    from devtools.seed import put_items

    async with open_runtime(settings) as rt:
        await put_items(rt.dynamo, settings.tables.execution_history, items)


def run(ctx: BenchContext) -> dict[str, Any]:
    sizes = ctx.sizes
    size = HISTORY[sizes.mode]
    with h.SimulatorProcess(sizes.small) as sim:
        accounts = sim.estate()["accounts"]
        estate_history = h.seeded_execution_history(sim.endpoint_url, accounts)
        history = [*estate_history, *padding(size - len(estate_history), 0)]
        settings = h.seeded_settings(ctx.dynamodb_url, sim, accounts, history, "hist")
        counter = DynamoCounter()
        ctx.log(f"history_cost: {len(history)} executions, cold sync and two settling syncs")
        for _ in range(3):
            h.run_async(sync_all(settings))
        # Each steady-state sync after a rebuild and one settling sync: a rebuild that writes more
        # index keys than the change log holds (here the 9 H executions added at once) makes the
        # next sync attribute every record again, once (docs/EXECUTION-INDEX.md); a history that
        # grows an execution at a time never does. The steady state is what this compares.
        small_rebuild = h.run_async(_rebuild(settings, counter))
        h.run_async(sync_all(settings))
        small = h.run_async(_steady_sync(settings, counter))
        h.run_async(_grow(settings, padding(size * (GROWTH - 1), size)))
        ctx.log(f"history_cost: {size * GROWTH} executions")
        large_rebuild = h.run_async(_rebuild(settings, counter))
        h.run_async(sync_all(settings))
        large = h.run_async(_steady_sync(settings, counter))
        h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    section = _section([size, size * GROWTH], [small, large], [small_rebuild, large_rebuild])
    section["dynamodb"] = ctx.dynamodb_backend
    ctx.log(
        f"history_cost: sync read units {section['sync_read_units']} (ratio {section['sync_read_units_ratio']}), "
        f"rebuild history read units {section['rebuild_history_read_units']}"
    )
    return {"history_cost": section}


def _section(history: list[int], syncs: list[dict[str, Any]], rebuilds: list[dict[str, Any]]) -> dict[str, Any]:
    reads = [s["read_units"] for s in syncs]
    return {
        "history_items": history,
        "sync_read_units": reads,
        "sync_read_units_ratio": round(reads[1] / reads[0], 3) if reads[0] else None,
        "sync_calls": [s["calls"] for s in syncs],
        "sync_history_calls": [s["history"]["calls"] for s in syncs],
        "sync_history_read_units": [s["history"]["read_units"] for s in syncs],
        "sync_index_calls": [s["index"]["calls"] for s in syncs],
        "sync_index_read_units": [s["index"]["read_units"] for s in syncs],
        "rebuild_history_calls": [r["history"]["calls"] for r in rebuilds],
        "rebuild_history_read_units": [r["history"]["read_units"] for r in rebuilds],
        "rebuild_index_calls": [r["index"]["calls"] for r in rebuilds],
    }
