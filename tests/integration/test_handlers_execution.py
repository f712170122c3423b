"""handlers.execution against the simulator and DynamoDB: a completed wave syncs its own
account/region and servers only, and a failing sync never raises."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from handlers import dependencies
from handlers.execution import lambda_handler, sync_recovery_instances_after_wave
from syncengine.core.config import SyncSettings
from tests.events_loader import FakeLambdaContext
from tests.integration.test_handlers_support import (
    REGION,
    cache,
    estate_settings,
    execution_item,
    live_instances,
    put,
    seed_estate,
)


@pytest.fixture
def sim(make_simulator: Any) -> Any:
    return make_simulator(accounts=2, regions=(REGION,), instances_per_scope=10, seed=41, max_servers_per_job=5)


@pytest.fixture
def configured(ddb_moto: Any, sim: Any) -> Iterator[SyncSettings]:
    settings = estate_settings(ddb_moto, sim, emit_metrics=True)
    asyncio.run(seed_estate(settings, sim.estate))
    dependencies.configure(settings=settings)
    yield settings
    dependencies.reset()


def target_of(sim: Any) -> str:
    return next(a.account_id for a in sim.estate.accounts if not a.is_hub)


def launch_wave(sim: Any, settings: SyncSettings, account_id: str, count: int = 3) -> set[str]:
    """Launch ``count`` new servers' instances and record the wave that launched them."""
    new = set(sim.estate.launch(account_id, REGION, count))
    job = next(
        {**j, "accountId": account_id, "region": REGION}
        for j in sim.estate.jobs(account_id, REGION)
        if {p.get("recoveryInstanceID") for p in j["participatingServers"]} == new
    )
    asyncio.run(put(settings, settings.tables.execution_history, [execution_item("exec-wave", "plan-w", [job])]))
    return {p["sourceServerID"] for p in job["participatingServers"]}


def wave_sync_errors(stdout: str) -> list[int]:
    lines = [json.loads(line) for line in stdout.splitlines() if '"WaveSyncErrors"' in line]
    return [sum(line["WaveSyncErrors"]) for line in lines]  # Powertools: a list of data points


def test_wave_completed_syncs_only_the_waves_servers(sim: Any, configured: SyncSettings) -> None:
    servers = launch_wave(sim, configured, target_of(sim))
    sim.calls.reset()

    result = lambda_handler(
        {"operation": "wave_completed", "executionId": "exec-wave", "planId": "plan-w", "waveNumber": 1},
        FakeLambdaContext(),
    )

    assert result["status"] == "SYNCED"
    assert result["scopes"] == [{"accountId": target_of(sim), "region": REGION, "serverCount": 3}]
    cached = asyncio.run(cache(configured))
    assert set(cached) == servers
    assert {r["sourceExecutionId"] for r in cached.values()} == {"exec-wave"}
    assert sim.calls.count(service="drs", account_id=sim.estate.hub_account_id) == 0


def test_wave_sync_resolves_servers_and_scope_from_the_protection_group(sim: Any, configured: SyncSettings) -> None:
    """A wave naming only its group: the group's servers, account and region."""
    hub = sim.estate.hub_account_id
    chosen = sorted(live_instances(sim.estate, hub, REGION))[:2]
    group = {"groupId": "pg-two", "region": REGION, "accountId": hub, "sourceServerIds": chosen}
    asyncio.run(put(configured, configured.tables.protection_groups, [group]))

    result = sync_recovery_instances_after_wave("exec-none", "plan-x", {"waveNumber": 1, "protectionGroupId": "pg-two"})

    assert result["status"] == "SYNCED"
    assert set(asyncio.run(cache(configured))) == set(chosen)


def test_wave_sync_tag_group_syncs_the_whole_scope(sim: Any, configured: SyncSettings) -> None:
    """Servers chosen by tag may be new to the cache: the group's whole account/region is synced."""
    hub = sim.estate.hub_account_id
    group = {"groupId": "pg-tags", "region": REGION, "accountId": hub, "serverSelectionTags": {"Tier": "web"}}
    asyncio.run(put(configured, configured.tables.protection_groups, [group]))

    result = sync_recovery_instances_after_wave(
        "exec-none", "plan-x", {"waveNumber": 1, "protectionGroupId": "pg-tags"}
    )

    assert result["scopes"] == [{"accountId": hub, "region": REGION, "serverCount": None}]
    assert set(asyncio.run(cache(configured))) == set(live_instances(sim.estate, hub, REGION))


def test_wave_sync_denied_account_is_counted_not_raised(
    sim: Any, configured: SyncSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    target = target_of(sim)
    launch_wave(sim, configured, target)
    sim.set_faults(access_denied_accounts=(target,))
    capsys.readouterr()

    result = lambda_handler(
        {"operation": "wave_completed", "executionId": "exec-wave", "planId": "plan-w", "waveNumber": 1},
        FakeLambdaContext(),
    )

    assert result["status"] == "FAILED"
    assert result["errors"][0]["accountId"] == target
    assert wave_sync_errors(capsys.readouterr().out) == [1]
    assert asyncio.run(cache(configured)) == {}


def test_wave_sync_unknown_execution_is_counted_not_raised(
    configured: SyncSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    result = lambda_handler(
        {"operation": "wave_completed", "executionId": "exec-missing", "planId": "plan-w", "waveNumber": 1},
        FakeLambdaContext(),
    )

    assert (result["status"], result["error"]) == ("FAILED", "EXECUTION_NOT_FOUND")
    assert wave_sync_errors(capsys.readouterr().out) == [1]
