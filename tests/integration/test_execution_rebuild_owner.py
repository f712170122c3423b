"""Who runs the periodic rebuild of the execution index (moto and dynalite): full runs and the
fan-out sweep; never a targeted sync (an event's refresh must not pay for a Scan of the whole
history, and thousands of slices of one fan-out run must not each try the claim), except the
first sync ever, whatever its kind, which writes the index out."""

from __future__ import annotations

import uuid
from typing import Any

import boto3

from devtools.event_source import create_work_queue
from syncengine.sync.engine import open_runtime, sync_all, sync_scope
from syncengine.sync.execution_sync import index_table
from tests.integration.engine_support import engine_settings, seed

REGION = "us-east-1"


async def _rebuilt_at(settings: Any) -> float | None:
    async with open_runtime(settings) as rt:
        state = await index_table(rt.dynamo, settings).state() or {}
    built = state.get("lastRebuildTime")
    return None if built is None else float(built)


async def _estate(ddb: Any, make_simulator: Any) -> tuple[Any, Any]:
    sim = make_simulator(accounts=2, regions=(REGION,), instances_per_scope=3, seed=9)
    # Due at every run: only who may claim it decides whether one happens.
    settings = engine_settings(ddb, sim, execution_index_rebuild_seconds=0.001)
    await seed(settings, sim.estate)
    return sim, settings


def _target(sim: Any) -> str:
    return next(a.account_id for a in sim.estate.accounts if not a.is_hub)


async def test_execution_rebuild_owner_first_targeted_sync_writes_the_index(ddb: Any, make_simulator: Any) -> None:
    sim, settings = await _estate(ddb, make_simulator)

    await sync_scope(settings, _target(sim), REGION)

    assert await _rebuilt_at(settings) is not None


async def test_execution_rebuild_owner_targeted_sync_leaves_a_due_rebuild(ddb: Any, make_simulator: Any) -> None:
    sim, settings = await _estate(ddb, make_simulator)
    await sync_all(settings)
    built = await _rebuilt_at(settings)

    await sync_scope(settings, _target(sim), REGION)

    assert await _rebuilt_at(settings) == built


async def test_execution_rebuild_owner_full_sync_rebuilds_when_due(ddb: Any, make_simulator: Any) -> None:
    _, settings = await _estate(ddb, make_simulator)
    await sync_all(settings)
    built = await _rebuilt_at(settings)

    await sync_all(settings)

    assert (await _rebuilt_at(settings) or 0) > (built or 0)


async def test_execution_rebuild_owner_fanout_sweep_rebuilds_when_due(
    ddb: Any, make_simulator: Any, moto_endpoint: str
) -> None:
    _, settings = await _estate(ddb, make_simulator)
    await sync_all(settings)
    built = await _rebuilt_at(settings)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)
    queue = create_work_queue(sqs, f"rebuild-{uuid.uuid4().hex[:8]}")
    fanout = settings.with_changes(
        fanout="on", work_queue_url=queue.url, endpoint_urls=(*settings.endpoint_urls, ("sqs", moto_endpoint))
    )

    report = await sync_all(fanout)

    assert report.scopes_enqueued > 0
    assert (await _rebuilt_at(settings) or 0) > (built or 0)
