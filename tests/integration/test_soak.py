"""Soak: 30 consecutive syncs of one simulated estate that keeps changing between runs (launches,
terminations, relaunches, IP and state changes, a region that goes down and comes back, a spell
of throttling). After every run the synced scopes equal the truth and the down region is frozen;
after the last, the whole cache equals the truth. Memory and file descriptors stay flat across
runs: a leak check (growth after warm-up under a generous bound), not a timing assertion.

Marked ``slow`` so it can be deselected locally (``-m "not slow"``); ``make test`` and CI run
everything, this included (about 30 s).
"""

from __future__ import annotations

import gc
import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import psutil
import pytest

from devtools.localdb import dynalite_available
from syncengine.core.models import RunStatus, Scope
from syncengine.sync.engine import get_sync_status, sync_all
from tests.fixtures.dynamodb import DynamoDBTables, fresh_tables
from tests.integration.engine_support import cache_items, engine_settings, seed

RUNS = 30
WARM_UP = 8
DOWN_FROM, DOWN_UNTIL = 10, 16  # runs during which one region fails
THROTTLED_FROM, THROTTLED_UNTIL = 20, 23  # runs with 15% of DRS/EC2 calls throttled
# Generous: a leak of one client or session per run costs several MB a run, so 22 runs after the
# warm-up would blow far past these; allocator noise and lazily built caches stay well inside.
MAX_RSS_GROWTH_MB = 40.0
MAX_FD_GROWTH = 10


@pytest.fixture
async def ddb_fast(request: pytest.FixtureRequest) -> AsyncIterator[DynamoDBTables]:
    """dynalite when installed (out of process, so its memory is not ours; always on CI), else moto."""
    backend = "dynalite" if dynalite_available() else "moto"
    async with fresh_tables(request.getfixturevalue(f"{backend}_endpoint"), backend) as tables:
        yield tables


def truth(estate: Any, scope: Scope | None = None) -> dict[str, tuple[Any, ...]]:
    account_id, region = (scope.account_id, scope.region) if scope else (None, None)
    result = {}
    for ri in estate.recovery_instances(account_id, region):
        ec2 = estate.ec2_instance(ri["ec2InstanceID"]) or {}
        result[ri["sourceServerID"]] = (
            ri["recoveryInstanceID"],
            (ec2.get("State") or {}).get("Name"),
            ec2.get("PrivateIpAddress"),
            ec2.get("PublicIpAddress"),
        )
    return result


def view(cached: dict[str, dict[str, Any]], scope: Scope | None = None) -> dict[str, tuple[Any, ...]]:
    return {
        sid: (item["recoveryInstanceId"], item.get("ec2InstanceState"), item.get("privateIp"), item.get("publicIp"))
        for sid, item in cached.items()
        if scope is None or item["scopeKey"] == scope.key
    }


def mutate(estate: Any, rng: random.Random, run: int) -> None:
    """Between-run changes: a few of each kind, drawn from a seeded generator."""
    scopes = [(a.account_id, r) for a in estate.accounts for r in a.regions]
    for _ in range(rng.randint(0, 2)):
        estate.launch(*rng.choice(scopes), rng.randint(1, 3))
    live = sorted(estate.recovery_instances(), key=lambda ri: ri["recoveryInstanceID"])
    rng.shuffle(live)
    picks = iter(live)
    for _ in range(rng.randint(0, 2)):
        estate.terminate(next(picks)["recoveryInstanceID"])
    if rng.random() < 0.5:
        estate.relaunch(next(picks)["sourceServerID"])
    for _ in range(rng.randint(1, 3)):
        estate.update_ec2(next(picks)["ec2InstanceID"], private_ip=f"10.240.{run}.{rng.randint(1, 254)}")
    if rng.random() < 0.4:
        estate.update_ec2(next(picks)["ec2InstanceID"], state=rng.choice(["running", "stopped"]))
    if rng.random() < 0.3:
        estate.update_ec2(next(picks)["ec2InstanceID"], public_ip=None)


def footprint(process: psutil.Process) -> tuple[float, int]:
    gc.collect()
    return process.memory_info().rss / 2**20, process.num_fds()


@pytest.mark.slow
async def test_soak_thirty_syncs_of_a_changing_estate_converge_without_leaking(ddb_fast, make_simulator) -> None:
    sim = make_simulator(accounts=3, regions=("us-east-1", "eu-west-1"), instances_per_scope=10, seed=81)
    settings = engine_settings(ddb_fast, sim)
    await seed(settings, sim.estate)
    rng = random.Random(81)
    process = psutil.Process()
    down = Scope(next(a.account_id for a in sim.estate.accounts if not a.is_hub), "eu-west-1")
    frozen: dict[str, dict[str, Any]] = {}
    samples: list[tuple[int, float, int]] = []

    for run in range(1, RUNS + 1):
        if run > 1:
            mutate(sim.estate, rng, run)
        if run == DOWN_FROM:
            frozen = {sid: item for sid, item in (await cache_items(settings)).items() if item["scopeKey"] == down.key}
            sim.set_faults(failingScopes=[down.key])
        elif run == DOWN_UNTIL:
            sim.set_faults(failingScopes=[])
        if run == THROTTLED_FROM:
            sim.set_faults(throttleRate=0.15, retryAfterSeconds=0, seed=run)
        elif run == THROTTLED_UNTIL:
            sim.set_faults(throttleRate=0.0)

        with anyio.fail_after(60):
            report = await sync_all(settings)

        region_down = DOWN_FROM <= run < DOWN_UNTIL
        assert {r.scope for r in report.scopes if not r.ok} == ({down} if region_down else set()), (run, report.errors)
        cached = await cache_items(settings)
        for scope in {r.scope for r in report.scopes if r.ok}:
            assert view(cached, scope) == truth(sim.estate, scope), f"run {run}: {scope.key} diverged"
        if region_down:
            assert {sid: item for sid, item in cached.items() if item["scopeKey"] == down.key} == frozen
        if run >= WARM_UP:
            samples.append((run, *footprint(process)))

    assert view(await cache_items(settings)) == truth(sim.estate)
    status = await get_sync_status(settings)
    assert status.status.value == "healthy" and report.status is RunStatus.SUCCESS
    (_, rss_start, fds_start), (_, rss_end, fds_end) = samples[0], samples[-1]
    rss_peak = max(rss for _, rss, _ in samples)
    print(f"soak: RSS {rss_start:.1f} -> {rss_end:.1f} MB (peak {rss_peak:.1f}), fds {fds_start} -> {fds_end}")
    assert rss_end - rss_start < MAX_RSS_GROWTH_MB
    assert fds_end - fds_start <= MAX_FD_GROWTH
