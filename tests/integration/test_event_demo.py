"""devtools.event_demo (the event-driven refresh of ``make demo``): a terminated recovery
instance's EC2 event goes through moto's SQS to the refresh function and its record leaves the
cache."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rich.console import Console

from devtools.event_demo import run_event_refresh
from syncengine.core.models import RunStatus
from syncengine.sync.engine import sync_all
from tests.integration.engine_support import cache_items, engine_settings, seed

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend


def test_event_demo_refreshes_the_terminated_instances_record(ddb: Any, make_simulator: Any) -> None:
    sim = make_simulator(accounts=2, regions=("us-east-1",), instances_per_scope=4, seed=3)
    settings = engine_settings(ddb, sim, scope_lease_wait=0.5)

    async def prepare() -> None:
        await seed(settings, sim.estate)
        assert (await sync_all(settings)).status is RunStatus.SUCCESS

    asyncio.run(prepare())
    before = asyncio.run(cache_items(settings))
    console = Console(record=True, width=200)

    assert run_event_refresh(settings, sim, console) is True

    after = asyncio.run(cache_items(settings))
    assert len(after) == len(before) - 1
    assert "dropped its record" in " ".join(console.export_text().split())
