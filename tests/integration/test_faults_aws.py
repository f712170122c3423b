"""Faults on the AWS side (the simulator's DRS, EC2 and STS): throttling, retry budgets that run
dry, a scope failing mid-pagination, an account whose role is denied, a deadline hit mid-run.

Each test proves the same three things in its own failure: what can be synced is synced, what
cannot keeps its cached records untouched, and the next healthy sync converges exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from devtools.faultproxy import DynamoFaultProxy, FaultKind, FaultRule
from devtools.localdb import dynalite_available
from syncengine.core.config import RetrySettings, SyncSettings
from syncengine.core.models import RunStatus, ScopeOutcome
from syncengine.sync.engine import get_sync_status, sync_all
from tests.fixtures.dynamodb import DynamoDBTables, fresh_tables
from tests.integration.engine_support import cache_items, engine_settings, seed

# The engine's real backoff shape, shortened: base and cap scaled down, attempts as in production.
THROTTLE_RETRY = RetrySettings(max_attempts=8, base_delay=0.02, max_delay=0.5)


@pytest.fixture
async def ddb_fast(request: pytest.FixtureRequest) -> AsyncIterator[DynamoDBTables]:
    """Fresh tables on dynalite when installed (several times faster than moto on large estates;
    always installed on CI), else moto. These faults are on the AWS side: one backend suffices."""
    backend = "dynalite" if dynalite_available() else "moto"
    async with fresh_tables(request.getfixturevalue(f"{backend}_endpoint"), backend) as tables:
        yield tables


def through(proxy: DynamoFaultProxy, settings: SyncSettings) -> SyncSettings:
    """The same settings with DynamoDB reached through the fault proxy."""
    urls = tuple(
        (service, proxy.endpoint_url if service == "dynamodb" else url) for service, url in settings.endpoint_urls
    )
    return settings.with_changes(endpoint_urls=urls)


def truth(estate: Any, account_id: str | None = None, region: str | None = None) -> dict[str, dict[str, Any]]:
    """sourceServerId -> what the cache must say about it (the live recovery instance and its EC2)."""
    expected: dict[str, dict[str, Any]] = {}
    for ri in estate.recovery_instances(account_id, region):
        ec2 = estate.ec2_instance(ri["ec2InstanceID"]) or {}
        expected[ri["sourceServerID"]] = {
            "recoveryInstanceId": ri["recoveryInstanceID"],
            "ec2InstanceId": ri["ec2InstanceID"],
            "ec2InstanceState": (ec2.get("State") or {}).get("Name") or ri["ec2InstanceState"].lower(),
            "drsInstanceState": ri["ec2InstanceState"],
            "privateIp": ec2.get("PrivateIpAddress"),
            "publicIp": ec2.get("PublicIpAddress"),
        }
    return expected


def view(cached: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The cache reduced to the fields ``truth`` compares."""
    return {
        sid: {
            key: item.get(key)
            for key in (
                "recoveryInstanceId",
                "ec2InstanceId",
                "ec2InstanceState",
                "drsInstanceState",
                "privateIp",
                "publicIp",
            )
        }
        for sid, item in cached.items()
    }


def of_scope(cached: dict[str, dict[str, Any]], account_id: str, region: str | None = None) -> dict[str, Any]:
    return {
        sid: item
        for sid, item in cached.items()
        if item["accountId"] == account_id and (region is None or item["region"] == region)
    }


async def test_sync_all_under_20pct_throttling_covers_first_keeps_second_converges_third(
    ddb_fast, make_simulator
) -> None:
    """Acceptance: 20% of DRS and EC2 calls throttled. First sync >= 90% cached, the second loses no
    live record, and once throttling stops the cache equals the truth exactly."""
    sim = make_simulator(
        accounts=4, regions=("us-east-1", "eu-west-1", "ap-southeast-2"), instances_per_scope=30, seed=21
    )
    settings = engine_settings(ddb_fast, sim, retry=THROTTLE_RETRY)
    await seed(settings, sim.estate)
    sim.set_faults(throttleRate=0.2, retryAfterSeconds=0, seed=21)
    total = sim.estate.total_recovery_instances()

    first = await sync_all(settings)
    after_first = await cache_items(settings)

    throttled = sum(sim.calls.count(outcome=code) for code in ("ThrottlingException", "RequestLimitExceeded"))
    assert throttled > 0, "the fault must actually have fired"
    coverage = len(set(after_first) & set(truth(sim.estate))) / total
    print(
        f"throttled first-sync coverage: {coverage:.1%} ({len(after_first)}/{total}), "
        f"{throttled} throttled calls, status {first.status.value}"
    )
    assert coverage >= 0.9

    # A few things change while throttling continues: a termination elsewhere must not cost a live record.
    gone = sorted(sim.estate.recovery_instances(), key=lambda ri: ri["sourceServerID"])[0]
    sim.estate.terminate(gone["recoveryInstanceID"])
    await sync_all(settings)
    after_second = await cache_items(settings)
    live = set(truth(sim.estate))
    assert (set(after_first) & live) <= set(after_second), "a live instance's record was lost"

    sim.set_faults(throttleRate=0.0)
    third = await sync_all(settings)

    assert third.status is RunStatus.SUCCESS
    assert view(await cache_items(settings)) == truth(sim.estate)


async def test_sync_all_with_exhausted_retry_budget_loses_nothing_and_repairs(ddb_fast, make_simulator) -> None:
    """A retry budget that runs dry fails scopes, never records: failed scopes keep even the records of
    since-terminated instances, and the next healthy sync converges."""
    sim = make_simulator(accounts=3, regions=("us-east-1", "us-west-2"), instances_per_scope=15, seed=22)
    settings = engine_settings(ddb_fast, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    before = await cache_items(settings)
    for ri in sim.estate.recovery_instances()[::4]:
        sim.estate.terminate(ri["recoveryInstanceID"])
    sim.set_faults(throttleRate=0.6, retryAfterSeconds=0, seed=5)

    starved = await sync_all(
        settings.with_changes(retry=RetrySettings(max_attempts=2, base_delay=0.001, max_delay=0.01))
    )

    assert starved.scopes_failed > 0
    cached = await cache_items(settings)
    live = truth(sim.estate)
    for result in starved.scopes:
        scope_now = of_scope(cached, result.scope.account_id, result.scope.region)
        scope_before = of_scope(before, result.scope.account_id, result.scope.region)
        if result.ok:
            assert set(scope_now) == {sid for sid in scope_before if sid in live}
        else:
            assert scope_now == scope_before, f"failed scope {result.scope.key} changed"
    sim.set_faults(throttleRate=0.0)
    assert (await sync_all(settings)).status is RunStatus.SUCCESS
    assert view(await cache_items(settings)) == truth(sim.estate)


# 210 instances: two pages of DescribeRecoveryInstances, each followed by a DescribeSourceServers call.
@pytest.mark.parametrize("pages", [pytest.param(1, id="after-first-page"), pytest.param(3, id="last-page")])
async def test_sync_all_scope_failing_mid_pagination_keeps_its_records(ddb_fast, make_simulator, pages) -> None:
    """DRS fails part-way through a scope's pages: nothing of that scope is written or deleted (partial
    discovery never drives reconciliation); the other region syncs; the next sync repairs."""
    sim = make_simulator(accounts=1, regions=("us-east-1", "us-west-2"), instances_per_scope=210, seed=23)
    settings = engine_settings(ddb_fast, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    hub = sim.estate.hub_account_id
    before = await cache_items(settings)
    # Changes on every page of both regions: the failing one must show none of them.
    for region in ("us-east-1", "us-west-2"):
        instances = sorted(sim.estate.recovery_instances(hub, region), key=lambda r: r["recoveryInstanceID"])
        for ri in instances[::60]:
            sim.estate.terminate(ri["recoveryInstanceID"])
        for ri in instances[30::60]:
            sim.estate.update_ec2(ri["ec2InstanceID"], private_ip="10.250.0.1")
    sim.set_faults(failingScopes=[f"{hub}#us-east-1"], failAfterPages=pages)
    sim.calls.reset()

    report = await sync_all(settings)

    assert sim.calls.count(service="drs", account_id=hub, region="us-east-1", outcome="Success") >= pages
    failed = {r.scope.region: r for r in report.scopes}
    assert failed["us-east-1"].outcome is ScopeOutcome.FAILED
    assert failed["us-west-2"].ok
    cached = await cache_items(settings)
    assert of_scope(cached, hub, "us-east-1") == of_scope(before, hub, "us-east-1")
    assert view(of_scope(cached, hub, "us-west-2")) == truth(sim.estate, hub, "us-west-2")
    sim.set_faults(failingScopes=[], failAfterPages=None)
    await sync_all(settings)
    assert view(await cache_items(settings)) == truth(sim.estate)


async def test_sync_all_access_denied_account_keeps_its_records_while_others_reconcile(
    ddb_fast, make_simulator
) -> None:
    """A denied role freezes that account's records (terminations included), while the other accounts
    delete and update as usual; its scopes say AccessDenied; restoring the role repairs it."""
    sim = make_simulator(accounts=3, regions=("us-east-1", "eu-west-1"), instances_per_scope=10, seed=24)
    settings = engine_settings(ddb_fast, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    denied, other = [a.account_id for a in sim.estate.accounts if not a.is_hub]
    hub = sim.estate.hub_account_id
    before = await cache_items(settings)
    for account in (denied, other, hub):
        victim = sim.estate.recovery_instances(account, "eu-west-1")[0]
        sim.estate.terminate(victim["recoveryInstanceID"])
    sim.set_faults(accessDeniedAccounts=[denied])

    report = await sync_all(settings)

    assert report.status is RunStatus.PARTIAL
    assert {(e.account_id, e.error_type) for e in report.errors} == {(denied, "AccessDenied")}
    cached = await cache_items(settings)
    assert of_scope(cached, denied) == of_scope(before, denied)
    for account in (other, hub):
        assert view(of_scope(cached, account)) == truth(sim.estate, account)
    status = await get_sync_status(settings)
    denied_scopes = [s for s in status.scopes if s.account_id == denied]
    assert len(denied_scopes) == 2
    assert all(s.status == ScopeOutcome.FAILED.value for s in denied_scopes)
    assert status.status.value == "degraded"

    sim.set_faults(accessDeniedAccounts=[])
    assert (await sync_all(settings)).status is RunStatus.SUCCESS
    assert view(await cache_items(settings)) == truth(sim.estate)


async def test_sync_all_deadline_mid_run_writes_status_and_deletes_nothing_unfinished(ddb_fast, make_simulator) -> None:
    """The deadline passes after some scopes finished: finished scopes reconcile, unfinished ones keep
    every record, the report is PARTIAL and both it and each scope's status are written."""
    sim = make_simulator(accounts=3, regions=("us-east-1", "eu-west-1"), instances_per_scope=6, seed=25)
    slow = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    async with DynamoFaultProxy(ddb_fast.endpoint_url) as proxy:
        settings = through(proxy, engine_settings(ddb_fast, sim))
        await seed(settings, sim.estate)
        await sync_all(settings)
        before = await cache_items(settings)
        for ri in sim.estate.recovery_instances():
            sim.estate.terminate(ri["recoveryInstanceID"])
        # The slow account's two scope leases are granted at once but answered 6 s late: its scopes
        # are still starting when the deadline comes, the others are long done.
        proxy.set_rules(
            FaultRule(
                FaultKind.LATENCY, seconds=6.0, after_forward=True, operations={"UpdateItem"}, contains=slow, limit=2
            )
        )

        with anyio.fail_after(60):
            report = await sync_all(settings.with_changes(deadline_seconds=2.5))

        outcomes = {r.scope: r.outcome for r in report.scopes}
        finished = {scope for scope, outcome in outcomes.items() if outcome is ScopeOutcome.SUCCESS}
        unfinished = {scope for scope, outcome in outcomes.items() if outcome is not ScopeOutcome.SUCCESS}
        assert proxy.injected(FaultKind.LATENCY) == 2
        assert {scope.account_id for scope in unfinished} == {slow} and len(unfinished) == 2
        assert len(finished) == 4
        assert report.status is RunStatus.PARTIAL
        assert {e.error_type for e in report.errors} == {"DeadlineExceeded"}
        cached = await cache_items(settings)
        assert of_scope(cached, slow) == of_scope(before, slow)
        assert set(cached) == set(of_scope(before, slow)), "finished scopes delete their terminated records"
        status = await get_sync_status(settings)
        assert status.last_run_status == RunStatus.PARTIAL.value
        assert status.scopes_synced == 4
        by_scope = {(s.account_id, s.region): s for s in status.scopes}
        for scope in finished:
            assert by_scope[(scope.account_id, scope.region)].status == ScopeOutcome.SUCCESS.value
        for scope in unfinished:
            assert by_scope[(scope.account_id, scope.region)].status == ScopeOutcome.SKIPPED.value
        # The run released what it held: the next full sync runs every scope and converges.
        proxy.clear()
        final = await sync_all(settings)
        assert final.status is RunStatus.SUCCESS
        assert await cache_items(settings) == {}


async def test_sync_all_deadline_during_setup_is_not_reported_as_success(ddb_fast, make_simulator) -> None:
    """A run whose deadline passes before it could even list the accounts did nothing: its report and
    status must not claim SUCCESS (a dashboard would show a healthy cache that is not being synced)."""
    sim = make_simulator(accounts=2, regions=("us-east-1",), instances_per_scope=3, seed=26)
    settings = engine_settings(ddb_fast, sim)
    await seed(settings, sim.estate)
    sim.set_faults(latencyMs=1500)

    with anyio.fail_after(60):
        report = await sync_all(settings.with_changes(deadline_seconds=0.5))

    assert report.status is not RunStatus.SUCCESS
    assert report.errors, "the report must say why nothing was synced"
    status = await get_sync_status(settings)
    assert status.last_run_status != RunStatus.SUCCESS.value


async def test_scoped_sync_deadline_covers_its_setup(ddb_fast, make_simulator, monkeypatch) -> None:
    """An API scoped sync's deadline counts from the request, not from the run: a setup that
    hangs (here the scope's check against the target accounts) ends at the deadline with a
    DeadlineExceeded report, never past API Gateway's limit."""
    from syncengine.sync import engine

    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=2, seed=27)
    settings = engine_settings(ddb_fast, sim)
    await seed(settings, sim.estate)

    async def hanging(*args, **kwargs):
        await anyio.sleep(60)

    monkeypatch.setattr(engine, "require_configured_scope", hanging)
    started = anyio.current_time()
    with anyio.fail_after(10):
        report = await sync_all(
            settings.with_changes(deadline_seconds=1.0), account_id=sim.estate.hub_account_id, region="us-east-1"
        )

    assert anyio.current_time() - started < 3
    assert report.status is RunStatus.FAILED
    assert [e.error_type for e in report.errors] == ["DeadlineExceeded"]


async def test_scoped_sync_shielded_cleanup_is_bounded(ddb_fast, make_simulator, monkeypatch) -> None:
    """The run's shielded cleanup (status, lease, metrics) gets ``cleanup_seconds`` after the
    deadline, not a fixed 15 s: deadline plus cleanup is the whole budget of an API request."""
    from syncengine.sync import run as run_module

    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=2, seed=28)
    settings = engine_settings(ddb_fast, sim)
    await seed(settings, sim.estate)

    async def slow_finish(*args, **kwargs):
        await anyio.sleep(60)

    monkeypatch.setattr(run_module, "finish_run", slow_finish)
    started = anyio.current_time()
    with anyio.fail_after(10):
        await sync_all(
            settings.with_changes(deadline_seconds=1.0, cleanup_seconds=0.5),
            account_id=sim.estate.hub_account_id,
            region="us-east-1",
        )

    assert anyio.current_time() - started < 3
