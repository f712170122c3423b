"""Where an account without ``regions`` is synced when no region-status table is configured: the
full sync's hourly region probe (syncengine.tables.region_discovery), end to end against the
simulator's DRS/EC2/STS and a DynamoDB server, its calls counted by the simulator."""

from __future__ import annotations

import dataclasses
import time

import pytest

from devtools.seed import target_account_items
from syncengine.core.models import RunStatus, Scope, ScopeOutcome
from syncengine.sync.engine import open_runtime, sync_all, sync_scope
from syncengine.sync.run import RemovedScopes, remove_unconfigured_scopes
from syncengine.tables.accounts import load_targets, plan_scopes
from syncengine.tables.status import AccountRegions
from tests.integration.engine_support import cache_items, engine_settings, put_raw, seed

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend

REGIONS = ("af-south-1", "ap-south-1", "eu-west-1", "us-east-1")
OPT_IN = "af-south-1"


def _estate(make_simulator):
    """The hub (explicit regions, DRS uninitialised in ap-south-1) and one account without
    ``regions``, DRS initialised only in us-east-1, af-south-1 not enabled."""
    return make_simulator(
        accounts=2,
        regions=REGIONS,
        instances_per_scope=3,
        seed=24,
        uninitialized_scopes=("0#ap-south-1", "1#eu-west-1", "1#ap-south-1"),
        disabled_regions=(f"1#{OPT_IN}",),
    )


async def _setup(ddb, sim, **overrides):
    settings = engine_settings(ddb, sim, **overrides)
    await seed(settings, sim.estate)
    target = sim.estate.accounts[1]
    (item,) = target_account_items([target.to_json()])
    del item["regions"]
    await put_raw(settings, settings.tables.target_accounts, [item])
    return settings, target.account_id


async def _probes(settings) -> dict[str, AccountRegions]:
    async with open_runtime(settings) as rt:
        return await rt.status.account_regions()


async def _age(settings, account_id: str) -> None:
    """Make the account's stored probe older than the interval."""
    probe = (await _probes(settings))[account_id]
    async with open_runtime(settings) as rt:
        await rt.status.put_account_regions(dataclasses.replace(probe, checked_at=time.time() - 7200))


def _probe_calls(sim, account_id: str) -> dict[str, int]:
    """DescribeSourceServers per region, less the one a scope sync of us-east-1's instances asks
    (as the hub's scope there does)."""
    calls = {r: sim.calls.count("drs", "DescribeSourceServers", account_id, r) for r in REGIONS}
    calls["us-east-1"] -= sim.calls.count(
        "drs", "DescribeSourceServers", sim.estate.accounts[0].account_id, "us-east-1"
    )
    return calls


def _synced(report, account_id: str) -> set[str]:
    return {r.scope.region for r in report.scopes if r.scope.account_id == account_id}


async def test_the_first_sync_probes_stores_and_syncs_only_where_drs_is_in_use(ddb, make_simulator) -> None:
    sim = _estate(make_simulator)
    settings, account = await _setup(ddb, sim)
    hub = sim.estate.accounts[0].account_id

    report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS
    assert _synced(report, account) == {"us-east-1"}
    # One DescribeSourceServers (maxResults=1) per enabled region, none in the disabled opt-in
    # region (DescribeRegions, asked once, said so).
    assert _probe_calls(sim, account) == {OPT_IN: 0, "ap-south-1": 1, "eu-west-1": 1, "us-east-1": 1}
    assert sim.calls.count("ec2", "DescribeRegions", account) == 1
    probe = (await _probes(settings))[account]
    assert probe.regions == ("us-east-1",) and probe.checked == REGIONS and probe.failed == ()
    # The hub's item names its regions: never probed, every named region synced.
    assert hub not in await _probes(settings)
    assert _synced(report, hub) == set(REGIONS) and _probe_calls(sim, hub)["ap-south-1"] == 0
    assert len(await cache_items(settings)) == sim.estate.total_recovery_instances()


async def test_a_sync_within_the_interval_does_not_probe_and_a_later_one_picks_up_a_new_region(
    ddb, make_simulator
) -> None:
    sim = _estate(make_simulator)
    settings, account = await _setup(ddb, sim)
    await sync_all(settings)
    sim.estate.set_scope_initialized(account, "eu-west-1")
    sim.calls.reset()

    report = await sync_all(settings)

    # Nothing asked in the regions out of use: no probe, no DescribeRegions, no scope.
    assert _synced(report, account) == {"us-east-1"}
    assert sim.calls.count(account_id=account, region="eu-west-1") == 0
    assert sim.calls.count(account_id=account, region="ap-south-1") == 0
    assert sim.calls.count("ec2", "DescribeRegions", account) == 0

    await _age(settings, account)
    sim.calls.reset()
    report = await sync_all(settings)

    assert _synced(report, account) == {"eu-west-1", "us-east-1"}
    # us-east-1 holds cached instances: in use without a call.
    assert _probe_calls(sim, account) == {OPT_IN: 0, "ap-south-1": 1, "eu-west-1": 1, "us-east-1": 0}
    assert (await _probes(settings))[account].regions == ("eu-west-1", "us-east-1")
    assert len(await cache_items(settings)) == sim.estate.total_recovery_instances()


async def test_a_failed_probe_keeps_its_region_and_a_failed_account_keeps_its_last_probe(ddb, make_simulator) -> None:
    sim = _estate(make_simulator)
    settings, account = await _setup(ddb, sim)
    await sync_all(settings)
    cached = {k for k, v in (await cache_items(settings)).items() if v["accountId"] == account}
    assert cached

    await _age(settings, account)
    sim.set_faults(failingScopes=[f"{account}#ap-south-1"])
    report = await sync_all(settings)

    # Its probe failed: ap-south-1 is synced (and fails visibly there), never dropped.
    assert _synced(report, account) == {"ap-south-1", "us-east-1"}
    assert {r.scope.region for r in report.scopes if r.outcome is ScopeOutcome.FAILED} == {"ap-south-1"}
    probe = (await _probes(settings))[account]
    assert probe.failed == ("ap-south-1",) and probe.regions == ("ap-south-1", "us-east-1")

    sim.reset_faults()
    await _age(settings, account)
    aged = (await _probes(settings))[account]
    sim.set_faults(accessDeniedAccounts=[account])
    report = await sync_all(settings)

    # AssumeRole fails: the probe learned nothing, so the last one stands (not rewritten), its
    # regions are attempted (and fail), and the account's records stay.
    assert (await _probes(settings))[account] == aged
    assert _synced(report, account) == {"ap-south-1", "us-east-1"}
    assert {k for k, v in (await cache_items(settings)).items() if v["accountId"] == account} == cached


async def test_the_region_status_table_takes_precedence_and_nothing_is_probed(ddb, make_simulator) -> None:
    sim = _estate(make_simulator)
    # Configured but unreadable (no such table): the configured regions apply, as before.
    settings, account = await _setup(ddb, sim, drs_region_status_table="no-such-region-status")

    report = await sync_all(settings)

    assert _synced(report, account) == set(REGIONS)
    assert await _probes(settings) == {}
    assert sum(_probe_calls(sim, account).values()) == 0


async def test_a_region_set_up_since_the_probe_takes_a_wave_sync_and_the_next_full_sync_keeps_it(
    ddb, make_simulator
) -> None:
    """DRS set up in a region the fresh probe found unused, and a first drill's wave synced there:
    the wave sync is accepted (any configured region is, whatever the probe said), and the full
    sync within the hour syncs that scope and keeps its records instead of removing them as an
    unconfigured scope (its targeted sync since its last whole-scope sync marks it in use)."""
    sim = _estate(make_simulator)
    settings, account = await _setup(ddb, sim)
    await sync_all(settings)
    sim.estate.set_scope_initialized(account, "eu-west-1")
    launched_ids = sim.estate.launch(account, "eu-west-1", count=2)
    wave = [sim.estate.recovery_instance(i)["sourceServerID"] for i in launched_ids]
    assert wave

    scoped = await sync_scope(settings, account, "eu-west-1", wave)

    assert scoped.status is RunStatus.SUCCESS
    launched = {
        k for k, v in (await cache_items(settings)).items() if (v["accountId"], v["region"]) == (account, "eu-west-1")
    }
    assert len(launched) == len(wave)

    report = await sync_all(settings)

    assert _synced(report, account) == {"eu-west-1", "us-east-1"} and report.scopes_removed == 0
    in_region = {
        k for k, v in (await cache_items(settings)).items() if (v["accountId"], v["region"]) == (account, "eu-west-1")
    }
    assert launched <= in_region
    assert len(in_region) == len(sim.estate.recovery_instances(account, "eu-west-1"))


async def test_a_wave_synced_while_a_full_sync_runs_keeps_its_records_when_the_full_sync_removes_scopes(
    ddb, make_simulator
) -> None:
    """The race the previous test leaves open: a full sync read the probes (eu-west-1 not in use), then a
    wave synced eu-west-1, set up since; the full sync's removal of unconfigured scopes, run after
    its scopes, must not delete the wave's records."""
    sim = _estate(make_simulator)
    settings, account = await _setup(ddb, sim)
    await sync_all(settings)
    async with open_runtime(settings) as rt:
        targets = await load_targets(rt.aws, rt.dynamo, rt.settings)  # as the full sync read them
        planned = plan_scopes(targets, rt.settings)
        assert Scope(account, "eu-west-1") not in {scope for scope, _ in planned}
        sim.estate.set_scope_initialized(account, "eu-west-1")
        launched = sim.estate.launch(account, "eu-west-1", count=2)
        wave = [sim.estate.recovery_instance(i)["sourceServerID"] for i in launched]
        assert (await sync_scope(settings, account, "eu-west-1", wave)).status is RunStatus.SUCCESS

        removed = RemovedScopes()
        await remove_unconfigured_scopes(rt, planned, targets, removed)

    assert removed.scopes == 0 and removed.records == 0
    cached = await cache_items(settings)
    assert set(wave) <= {k for k, v in cached.items() if (v["accountId"], v["region"]) == (account, "eu-west-1")}


async def test_a_full_sync_forgets_the_probe_of_an_account_made_inactive(ddb, make_simulator) -> None:
    """The account's ``REGIONS`` row goes with its scopes once its item is no longer active; the
    row is not read again, let alone by a sync that probes nothing."""
    sim = _estate(make_simulator)
    settings, account = await _setup(ddb, sim)
    await sync_all(settings)
    assert account in await _probes(settings)
    (item,) = target_account_items([sim.estate.accounts[1].to_json()])
    del item["regions"]
    await put_raw(settings, settings.tables.target_accounts, [{**item, "status": "inactive"}])

    report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS and _synced(report, account) == set()
    assert account not in await _probes(settings)
    assert not [i for i in (await cache_items(settings)).values() if i["accountId"] == account]
