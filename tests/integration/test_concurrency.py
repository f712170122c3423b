"""Concurrent syncs: overlapping full syncs (the lease), a wave sync during a full sync, parallel
scoped syncs of different scopes and of one scope. No lost update, no duplicate record, no
deadlock: every test runs inside ``anyio.fail_after`` so a hang fails instead of stalling CI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from devtools.localdb import dynalite_available
from syncengine.core.concurrency import BudgetHold
from syncengine.core.errors import SyncInProgressError
from syncengine.core.models import RunStatus, Scope, ScopeOutcome, SyncReport
from syncengine.sync.engine import get_sync_status, open_runtime, sync_all, sync_scope
from tests.fixtures.dynamodb import DynamoDBTables, fresh_tables
from tests.integration.engine_support import cache_items, engine_settings, seed

DEADLOCK_BOUND = 60
ESTATE: dict[str, Any] = {"accounts": 2, "regions": ("us-east-1", "eu-west-1"), "instances_per_scope": 12}


@pytest.fixture
async def ddb_fast(request: pytest.FixtureRequest) -> AsyncIterator[DynamoDBTables]:
    """dynalite when installed (always on CI), else moto. The lease races run on both backends
    (``ddb``): they depend on the server applying conditional writes atomically."""
    backend = "dynalite" if dynalite_available() else "moto"
    async with fresh_tables(request.getfixturevalue(f"{backend}_endpoint"), backend) as tables:
        yield tables


def truth(estate: Any) -> dict[str, tuple[str, str | None, str | None]]:
    """sourceServerId -> (recovery instance, EC2 state, private IP)."""
    result = {}
    for ri in estate.recovery_instances():
        ec2 = estate.ec2_instance(ri["ec2InstanceID"]) or {}
        result[ri["sourceServerID"]] = (
            ri["recoveryInstanceID"],
            (ec2.get("State") or {}).get("Name"),
            ec2.get("PrivateIpAddress"),
        )
    return result


def view(cached: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str | None, str | None]]:
    return {
        sid: (item["recoveryInstanceId"], item.get("ec2InstanceState"), item.get("privateIp"))
        for sid, item in cached.items()
    }


def scopes_of(estate: Any) -> list[Scope]:
    return [Scope(account.account_id, region) for account in estate.accounts for region in account.regions]


async def assert_converged(settings: Any, estate: Any) -> None:
    """The cache equals the truth, each scope's index lists each server once, and no lease is left."""
    cached = await cache_items(settings)
    assert view(cached) == truth(estate)
    async with open_runtime(settings) as rt:
        for scope in scopes_of(estate):
            entries = await rt.store.scope_entries(scope)
            expected = {sid for sid, item in cached.items() if item["scopeKey"] == scope.key}
            assert set(entries) == expected
        assert await rt.status.full_sync_holder() is None
    status = await get_sync_status(settings)
    assert all(s.status != "RUNNING" for s in status.scopes)


async def test_overlapping_full_syncs_run_exactly_one(ddb, make_simulator) -> None:
    """Four full syncs started together: one runs, three are refused with SyncInProgressError, and the
    lease is free again afterwards."""
    sim = make_simulator(seed=41, **ESTATE)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    sim.set_faults(latencyMs=100)
    outcomes: list[SyncReport | SyncInProgressError] = []

    async def full_sync() -> None:
        try:
            outcomes.append(await sync_all(settings))
        except SyncInProgressError as exc:
            outcomes.append(exc)

    with anyio.fail_after(DEADLOCK_BOUND):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(full_sync)

    reports = [o for o in outcomes if isinstance(o, SyncReport)]
    assert len(reports) == 1 and len(outcomes) == 4
    assert reports[0].status is RunStatus.SUCCESS
    refused = [o for o in outcomes if isinstance(o, SyncInProgressError)]
    assert all(exc.holder == reports[0].run_id for exc in refused if exc.holder)
    sim.set_faults(latencyMs=0)
    with anyio.fail_after(DEADLOCK_BOUND):
        assert (await sync_all(settings)).status is RunStatus.SUCCESS
    await assert_converged(settings, sim.estate)


async def test_wave_sync_during_a_full_sync_lands_and_loses_nothing(ddb_fast, make_simulator) -> None:
    """A wave completes while the scheduled full sync is running: the wave's sync waits for its scope,
    writes the wave's new instances and IPs, and the full sync's older view never overwrites them."""
    sim = make_simulator(seed=42, **ESTATE)
    settings = engine_settings(ddb_fast, sim, scope_lease_wait=30.0)
    await seed(settings, sim.estate)
    await sync_all(settings)
    hub = sim.estate.hub_account_id
    sim.set_faults(latencyMs=150)
    reports: dict[str, SyncReport] = {}

    async def scheduled() -> None:
        reports["full"] = await sync_all(settings)

    async def wave() -> None:
        await anyio.sleep(0.2)
        launched = sim.estate.launch(hub, "us-east-1", 3)
        servers = [sim.estate.recovery_instance(ri_id)["sourceServerID"] for ri_id in launched]
        relaunched_server = sim.estate.recovery_instances(hub, "us-east-1")[0]["sourceServerID"]
        sim.estate.relaunch(relaunched_server)
        reports["wave"] = await sync_scope(settings, hub, "us-east-1", [*servers, relaunched_server])

    with anyio.fail_after(DEADLOCK_BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduled)
            tg.start_soon(wave)

    assert reports["full"].status is RunStatus.SUCCESS
    assert reports["wave"].status is RunStatus.SUCCESS
    # Whichever of the two reached the scope first wrote the wave's records; the wave saw all four.
    assert reports["wave"].instances_found == 4
    assert reports["wave"].instances_updated + reports["wave"].instances_unchanged == 4
    await assert_converged(settings, sim.estate)


async def test_parallel_scoped_syncs_of_different_scopes_each_sync_their_own(ddb_fast, make_simulator) -> None:
    """One scoped sync per scope, all at once: each succeeds and touches only its scope."""
    sim = make_simulator(seed=43, **ESTATE)
    settings = engine_settings(ddb_fast, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    for scope in scopes_of(sim.estate):
        instances = sim.estate.recovery_instances(scope.account_id, scope.region)
        sim.estate.terminate(instances[0]["recoveryInstanceID"])
        sim.estate.update_ec2(instances[1]["ec2InstanceID"], private_ip="10.123.0.1")
    sim.set_faults(latencyMs=80)
    reports: dict[Scope, SyncReport] = {}

    async def scoped(scope: Scope) -> None:
        reports[scope] = await sync_all(settings, account_id=scope.account_id, region=scope.region)

    with anyio.fail_after(DEADLOCK_BOUND):
        async with anyio.create_task_group() as tg:
            for scope in scopes_of(sim.estate):
                tg.start_soon(scoped, scope)

    for scope, report in reports.items():
        assert report.status is RunStatus.SUCCESS
        assert [r.scope for r in report.scopes] == [scope]
        assert (report.instances_updated, report.instances_deleted) == (1, 1)
    await assert_converged(settings, sim.estate)


async def test_parallel_syncs_of_one_scope_serialise_without_lost_update(ddb, make_simulator) -> None:
    """Five syncs of the same scope (full, scoped, wave) started while the estate keeps changing: they
    take turns on the scope lease, none is skipped, and the last observation wins."""
    sim = make_simulator(seed=44, **ESTATE)
    settings = engine_settings(ddb, sim, scope_lease_wait=30.0)
    await seed(settings, sim.estate)
    await sync_all(settings)
    hub = sim.estate.hub_account_id
    sim.set_faults(latencyMs=60)
    instances = sim.estate.recovery_instances(hub, "us-east-1")
    reports: list[SyncReport] = []

    async def run(step: int) -> None:
        await anyio.sleep(0.1 * step)
        # Each sync starts right after its own change: whichever runs last has seen them all.
        sim.estate.update_ec2(instances[step]["ec2InstanceID"], private_ip=f"10.200.0.{step + 1}")
        if step == 0:
            reports.append(await sync_all(settings))
        elif step % 2:
            reports.append(await sync_scope(settings, hub, "us-east-1"))
        else:
            reports.append(await sync_scope(settings, hub, "us-east-1", [instances[step]["sourceServerID"]]))

    with anyio.fail_after(DEADLOCK_BOUND):
        async with anyio.create_task_group() as tg:
            for step in range(5):
                tg.start_soon(run, step)

    assert len(reports) == 5
    assert all(r.status is RunStatus.SUCCESS for r in reports), [r.errors for r in reports]
    cached = await cache_items(settings)
    for step in range(5):
        assert cached[instances[step]["sourceServerID"]]["privateIp"] == f"10.200.0.{step + 1}"
    await assert_converged(settings, sim.estate)


async def test_busy_scope_is_skipped_not_clobbered(ddb_fast, make_simulator) -> None:
    """With almost no patience for a busy scope lease, concurrent syncs of one scope are SKIPPED
    (ScopeBusy) rather than run in parallel; skipped syncs delete nothing and the cache converges."""
    sim = make_simulator(seed=45, **ESTATE)
    settings = engine_settings(ddb_fast, sim, scope_lease_wait=0.05)
    await seed(settings, sim.estate)
    await sync_all(settings)
    hub = sim.estate.hub_account_id
    for ri in sim.estate.recovery_instances(hub, "us-east-1")[:4]:
        sim.estate.terminate(ri["recoveryInstanceID"])
    sim.set_faults(latencyMs=200)
    reports: list[SyncReport] = []

    async def run() -> None:
        reports.append(await sync_scope(settings, hub, "us-east-1"))

    with anyio.fail_after(DEADLOCK_BOUND):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(run)

    outcomes = sorted(r.scopes[0].outcome.value for r in reports)
    assert outcomes.count(ScopeOutcome.SUCCESS.value) >= 1
    skipped = [r for r in reports if r.scopes[0].outcome is ScopeOutcome.SKIPPED]
    assert skipped, "some syncs should have found the scope busy"
    assert all(r.scopes[0].error.error_type == "ScopeBusy" for r in skipped)
    assert sum(r.instances_deleted for r in reports) == 4, "each stale record is deleted exactly once"
    await assert_converged(settings, sim.estate)


@pytest.mark.parametrize("backend_latency_ms", [pytest.param(0, id="fast"), pytest.param(120, id="slow")])
async def test_everything_at_once_finishes_and_converges(ddb_fast, make_simulator, backend_latency_ms) -> None:
    """A full sync, a scoped sync per scope, wave syncs and status reads all at once, with estate
    changes in between: everything finishes within the bound and the cache equals the truth."""
    sim = make_simulator(seed=46, **ESTATE)
    settings = engine_settings(ddb_fast, sim, scope_lease_wait=30.0)
    await seed(settings, sim.estate)
    await sync_all(settings)
    sim.set_faults(latencyMs=backend_latency_ms)
    reports: list[SyncReport] = []

    async def full() -> None:
        reports.append(await sync_all(settings))

    async def scoped(scope: Scope, delay: float) -> None:
        await anyio.sleep(delay)
        first = sim.estate.recovery_instances(scope.account_id, scope.region)[0]
        sim.estate.update_ec2(first["ec2InstanceID"], private_ip="10.201.0.1")
        reports.append(await sync_all(settings, account_id=scope.account_id, region=scope.region))

    async def wave(scope: Scope, delay: float) -> None:
        await anyio.sleep(delay)
        launched = sim.estate.launch(scope.account_id, scope.region, 2)
        servers = [sim.estate.recovery_instance(ri_id)["sourceServerID"] for ri_id in launched]
        reports.append(await sync_scope(settings, scope.account_id, scope.region, servers))

    async def status_reads() -> None:
        for _ in range(5):
            await get_sync_status(settings)
            await anyio.sleep(0.05)

    with anyio.fail_after(DEADLOCK_BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(full)
            tg.start_soon(status_reads)
            for index, scope in enumerate(scopes_of(sim.estate)):
                tg.start_soon(scoped, scope, 0.03 * index)
                tg.start_soon(wave, scope, 0.05 * index)

    # No final repair sync: every change was followed by a sync covering it, so nothing may be lost.
    assert reports and all(r.status is RunStatus.SUCCESS for r in reports), [r.errors for r in reports]
    await assert_converged(settings, sim.estate)


def recorded_takes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(instances the run holds, holders waiting) after every admission of a scope's page."""
    seen: list[tuple[int, int]] = []
    take = BudgetHold.take

    async def recording(self: BudgetHold, weight: int) -> None:
        await take(self, weight)
        seen.append((self._budget.held, len(self._budget._waiting)))

    monkeypatch.setattr(BudgetHold, "take", recording)
    return seen


async def test_a_bounded_full_sync_holds_at_most_its_bound_and_converges(ddb_fast, make_simulator, monkeypatch) -> None:
    """Eight scopes of 12 instances, at most 30 in flight: two scopes at a time describe and
    write, the others wait their turn; every scope is synced and the cache equals the truth."""
    sim = make_simulator(seed=47, **{**ESTATE, "accounts": 4})
    settings = engine_settings(ddb_fast, sim, max_instances_in_flight=30)
    await seed(settings, sim.estate)
    sim.set_faults(latencyMs=30)
    takes = recorded_takes(monkeypatch)

    with anyio.fail_after(DEADLOCK_BOUND):
        report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS, report.errors
    assert report.instances_updated == sim.estate.total_recovery_instances() == 8 * 12
    assert len(takes) == 8
    assert max(held for held, _ in takes) == 24  # two scopes at once, never a third
    assert any(waiting for _, waiting in takes), "the bound should have made scopes wait"
    await assert_converged(settings, sim.estate)


async def test_scopes_failing_once_admitted_let_the_next_ones_in(ddb_fast, make_simulator, monkeypatch) -> None:
    """One scope in flight at a time, and every assumed-role scope fails after admission (EC2
    refuses it): each failure gives its share back, so the run ends instead of hanging."""
    sim = make_simulator(seed=48, **{**ESTATE, "accounts": 3})
    settings = engine_settings(ddb_fast, sim, max_instances_in_flight=1)
    await seed(settings, sim.estate)
    sim.set_faults(unauthorizedOperations=["ec2:DescribeInstances"])
    takes = recorded_takes(monkeypatch)

    with anyio.fail_after(DEADLOCK_BOUND):
        report = await sync_all(settings)

    hub = {a.account_id for a in sim.estate.accounts if a.is_hub}
    failed = {r.scope for r in report.scopes if r.outcome is ScopeOutcome.FAILED}
    assert failed == {s for s in scopes_of(sim.estate) if s.account_id not in hub}
    assert len(takes) == len(report.scopes) == 6
    assert all(held == 12 for held, _ in takes)  # one scope at a time, then released
