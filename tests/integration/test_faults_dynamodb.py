"""Faults on the DynamoDB side, injected by the project's fault proxy between the engine and a real
backend (moto, dynalite): UnprocessedItems, UnprocessedKeys, throughput exceptions, 5xx, slow
answers and dropped connections, before and after the backend applied the request.

What must hold in each: no record is lost, a scope whose writes failed deletes nothing, the run
reports the failure instead of crashing, and the next healthy sync repairs the cache exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from devtools.faultproxy import DynamoFaultProxy, FaultKind, FaultRule
from devtools.localdb import dynalite_available
from syncengine.core.config import RetrySettings, SyncSettings
from syncengine.core.errors import AwsError
from syncengine.core.models import RunStatus, ScopeOutcome
from syncengine.sync.engine import get_cached_records, get_sync_status, open_runtime, sync_all
from tests.fixtures.dynamodb import DynamoDBTables, fresh_tables
from tests.integration.engine_support import cache_items, engine_settings, seed

ESTATE: dict[str, Any] = {"accounts": 2, "regions": ("us-east-1", "eu-west-1"), "instances_per_scope": 30}
# Every test bounds itself: a retry loop that never ends is a failure, not a hang.
TEST_TIMEOUT = 90


def truth(estate: Any) -> dict[str, tuple[str, str | None]]:
    """sourceServerId -> (recovery instance, private IP): what a converged cache holds."""
    result = {}
    for ri in estate.recovery_instances():
        ec2 = estate.ec2_instance(ri["ec2InstanceID"]) or {}
        result[ri["sourceServerID"]] = (ri["recoveryInstanceID"], ec2.get("PrivateIpAddress"))
    return result


def view(cached: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    return {sid: (item["recoveryInstanceId"], item.get("privateIp")) for sid, item in cached.items()}


def through(proxy: DynamoFaultProxy, settings: SyncSettings) -> SyncSettings:
    urls = tuple(
        (service, proxy.endpoint_url if service == "dynamodb" else url) for service, url in settings.endpoint_urls
    )
    return settings.with_changes(endpoint_urls=urls)


@pytest.fixture
async def ddb_fast(request: pytest.FixtureRequest) -> AsyncIterator[DynamoDBTables]:
    """One backend for faults whose handling does not depend on it: dynalite when installed
    (faster; always on CI), else moto. Backend-sensitive faults run on both (``ddb``)."""
    backend = "dynalite" if dynalite_available() else "moto"
    async with fresh_tables(request.getfixturevalue(f"{backend}_endpoint"), backend) as tables:
        yield tables


@pytest.fixture
async def proxy_fast(ddb_fast) -> AsyncIterator[DynamoFaultProxy]:
    async with DynamoFaultProxy(ddb_fast.endpoint_url, seed=30) as running:
        yield running


@pytest.fixture
async def proxy(ddb) -> AsyncIterator[DynamoFaultProxy]:
    async with DynamoFaultProxy(ddb.endpoint_url, seed=31) as running:
        yield running


async def settings_for(ddb: Any, sim: Any, proxy: DynamoFaultProxy, **overrides: Any) -> SyncSettings:
    """Engine settings whose DynamoDB goes through the proxy; tables seeded directly."""
    direct = engine_settings(ddb, sim, **overrides)
    await seed(direct, sim.estate)
    return through(proxy, direct)


async def cache_faults_lose_no_record(ddb: Any, make_simulator: Any, proxy: DynamoFaultProxy, rule: FaultRule) -> None:
    sim = make_simulator(seed=33, **ESTATE)
    settings = await settings_for(ddb, sim, proxy)
    proxy.set_rules(dataclasses.replace(rule, tables=frozenset({settings.tables.cache})))

    with anyio.fail_after(TEST_TIMEOUT):
        first = await sync_all(settings)
        changed = sim.estate.recovery_instances()[0]
        sim.estate.update_ec2(changed["ec2InstanceID"], private_ip="10.77.0.1")
        gone = sim.estate.recovery_instances()[1]
        sim.estate.terminate(gone["recoveryInstanceID"])
        second = await sync_all(settings)

    assert proxy.injected(rule.kind) > 0, "the fault must actually have fired"
    assert first.status is RunStatus.SUCCESS and second.status is RunStatus.SUCCESS
    assert view(await cache_items(settings)) == truth(sim.estate)


UNPROCESSED_ITEMS = FaultRule(FaultKind.UNPROCESSED, rate=0.6, fraction=0.5)


async def test_sync_all_with_unprocessed_items_loses_no_record(ddb, make_simulator, proxy) -> None:
    """Half of most batch writes come back unprocessed (on both backends: dynalite checks the re-sent
    batches against DynamoDB's limits): every instance is still cached, then a change and a deletion."""
    await cache_faults_lose_no_record(ddb, make_simulator, proxy, UNPROCESSED_ITEMS)


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(FaultRule(FaultKind.THROUGHPUT, rate=0.3), id="throughput"),
        pytest.param(FaultRule(FaultKind.SERVER_ERROR, rate=0.3), id="5xx"),
        pytest.param(FaultRule(FaultKind.DROP, rate=0.25), id="dropped-before-write"),
        pytest.param(FaultRule(FaultKind.DROP, rate=0.25, after_forward=True), id="dropped-after-write"),
    ],
)
async def test_sync_all_with_dynamodb_faults_on_the_cache_loses_no_record(
    ddb_fast, make_simulator, proxy_fast, rule
) -> None:
    """Every call on the cache table (scope queries, batch writes, deletes) faulted at random: the
    retries absorb it; a cold sync caches every instance, the next one a change and a deletion."""
    await cache_faults_lose_no_record(ddb_fast, make_simulator, proxy_fast, rule)


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(FaultRule(FaultKind.SERVER_ERROR, rate=0.2), id="5xx"),
        pytest.param(FaultRule(FaultKind.THROUGHPUT, rate=0.2), id="throughput"),
        pytest.param(FaultRule(FaultKind.DROP, rate=0.15), id="dropped"),
    ],
)
async def test_sync_all_with_dynamodb_faults_on_every_table_completes(
    ddb_fast, make_simulator, proxy_fast, rule
) -> None:
    """Faults on every table (target accounts, execution history, status, leases, cache): the run
    still completes, writes its status and leaves no lease behind."""
    sim = make_simulator(seed=34, **ESTATE)
    settings = await settings_for(ddb_fast, sim, proxy_fast)
    proxy_fast.set_rules(rule)

    with anyio.fail_after(TEST_TIMEOUT):
        report = await sync_all(settings)
        proxy_fast.clear()
        status = await get_sync_status(settings)
        again = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS
    assert status.status.value == "healthy"
    assert again.instances_updated == 0
    assert view(await cache_items(settings)) == truth(sim.estate)


async def test_sync_all_write_failure_beyond_retries_fails_only_that_scope(
    ddb_fast, make_simulator, proxy_fast
) -> None:
    """Batch writes of one scope keep failing past the retry budget: that scope is FAILED in the report
    (no exception escapes the run), deletes nothing, keeps the records already written; the other
    scopes sync; the next healthy sync repairs."""
    sim = make_simulator(seed=35, **ESTATE)
    settings = await settings_for(
        ddb_fast, sim, proxy_fast, retry=RetrySettings(max_attempts=3, base_delay=0.001, max_delay=0.01)
    )
    with anyio.fail_after(TEST_TIMEOUT):
        await sync_all(settings)
    before = await cache_items(settings)
    hub = sim.estate.hub_account_id
    victim_key = f"{hub}#us-east-1"
    for ri in sim.estate.recovery_instances(hub, "us-east-1")[:3]:
        sim.estate.terminate(ri["recoveryInstanceID"])
    for ri in sim.estate.recovery_instances(hub, "us-east-1")[:5]:
        sim.estate.update_ec2(ri["ec2InstanceID"], private_ip="10.66.0.1")
    # Writes carrying the victim scope's key fail every time; everything else passes.
    proxy_fast.set_rules(FaultRule(FaultKind.SERVER_ERROR, operations={"BatchWriteItem"}, contains=victim_key))

    with anyio.fail_after(TEST_TIMEOUT):
        report = await sync_all(settings)

    outcome = {r.scope.key: r for r in report.scopes}
    assert outcome[victim_key].outcome is ScopeOutcome.FAILED
    assert all(r.ok for key, r in outcome.items() if key != victim_key)
    assert report.status is RunStatus.PARTIAL
    cached = await cache_items(settings)
    victims = {sid for sid, item in before.items() if item["scopeKey"] == victim_key}
    assert victims <= set(cached), "a scope whose writes failed must delete nothing"
    proxy_fast.clear()
    with anyio.fail_after(TEST_TIMEOUT):
        assert (await sync_all(settings)).status is RunStatus.SUCCESS
    assert view(await cache_items(settings)) == truth(sim.estate)


async def test_sync_all_delete_failure_beyond_retries_fails_only_that_scope(
    ddb_fast, make_simulator, proxy_fast
) -> None:
    """Reconciliation's deletes keep failing: the scope is reported FAILED (not a crash), its records
    stay, and the next healthy sync deletes them."""
    sim = make_simulator(seed=36, **ESTATE)
    settings = await settings_for(
        ddb_fast, sim, proxy_fast, retry=RetrySettings(max_attempts=2, base_delay=0.001, max_delay=0.01)
    )
    with anyio.fail_after(TEST_TIMEOUT):
        await sync_all(settings)
    gone = sim.estate.recovery_instances()[0]
    sim.estate.terminate(gone["recoveryInstanceID"])
    # Reconciliation deletes are conditional DeleteItems on the cache table.
    proxy_fast.set_rules(FaultRule(FaultKind.SERVER_ERROR, operations={"DeleteItem"}, tables={settings.tables.cache}))

    with anyio.fail_after(TEST_TIMEOUT):
        report = await sync_all(settings)

    assert report.scopes_failed == 1 and report.status is RunStatus.PARTIAL
    assert gone["sourceServerID"] in await cache_items(settings)
    proxy_fast.clear()
    with anyio.fail_after(TEST_TIMEOUT):
        await sync_all(settings)
    assert view(await cache_items(settings)) == truth(sim.estate)


async def test_get_cached_records_with_unprocessed_keys_returns_every_record(ddb, make_simulator, proxy) -> None:
    """BatchGetItem answering only part of each batch (more than one batch of 100): every record comes
    back, exactly once, and absent servers stay absent."""
    sim = make_simulator(accounts=1, regions=("us-east-1", "us-west-2"), instances_per_scope=130, seed=37)
    settings = await settings_for(ddb, sim, proxy)
    with anyio.fail_after(TEST_TIMEOUT):
        await sync_all(settings)
    wanted = [*sorted(truth(sim.estate)), "s-00000000000000000", "s-fffffffffffffffff"]
    proxy.set_rules(FaultRule(FaultKind.UNPROCESSED, operations={"BatchGetItem"}, rate=0.9, fraction=0.6))

    with anyio.fail_after(TEST_TIMEOUT):
        records = await get_cached_records(settings, wanted)

    assert proxy.injected(FaultKind.UNPROCESSED, "BatchGetItem") >= 3
    ids = [r["sourceServerId"] for r in records]
    assert len(ids) == len(set(ids)) == 260
    assert set(ids) == set(truth(sim.estate))


async def test_sync_all_survives_slow_dynamodb_answers(ddb_fast, make_simulator, proxy_fast) -> None:
    """Slow answers (some past the client's read timeout on reads, which are retried) neither fail
    the run nor lose a record."""
    sim = make_simulator(seed=38, **ESTATE)
    settings = await settings_for(ddb_fast, sim, proxy_fast, read_timeout=0.5)
    proxy_fast.set_rules(
        FaultRule(FaultKind.LATENCY, rate=0.3, seconds=0.15),
        FaultRule(FaultKind.LATENCY, rate=0.3, seconds=1.0, operations={"Query"}, limit=3),
    )

    with anyio.fail_after(TEST_TIMEOUT):
        report = await sync_all(settings)

    assert proxy_fast.injected(FaultKind.LATENCY) > 0
    assert report.status is RunStatus.SUCCESS
    # Verify through a quiet proxy: the check's own reads must not race the 0.5 s read timeout.
    proxy_fast.clear()
    assert view(await cache_items(settings)) == truth(sim.estate)


async def test_full_sync_lease_survives_a_lost_acquisition_answer(ddb_fast, make_simulator, proxy_fast) -> None:
    """DynamoDB takes the full-sync lease but the answer is lost (connection dropped after the write):
    the retry must not mistake the run's own lease for another run's, and no lease may be left
    behind to block every full sync for the lease's lifetime."""
    sim = make_simulator(seed=39, **ESTATE)
    settings = await settings_for(ddb_fast, sim, proxy_fast)
    proxy_fast.set_rules(
        FaultRule(
            FaultKind.DROP,
            after_forward=True,
            operations={"PutItem"},
            tables={settings.tables.status},
            contains="FULL_SYNC",
            limit=1,
        )
    )

    with anyio.fail_after(TEST_TIMEOUT):
        try:
            first: object = await sync_all(settings)
        except Exception as exc:
            first = exc
        second = await sync_all(settings)

    assert proxy_fast.injected(FaultKind.DROP) == 1
    assert getattr(first, "status", None) is RunStatus.SUCCESS, f"first full sync: {first!r}"
    assert second.status is RunStatus.SUCCESS


async def test_dynamodb_call_attempts_are_bounded_by_the_one_retry_layer(ddb_fast, proxy_fast) -> None:
    """botocore's own retries are off: a DynamoDB call that always fails reaches the server exactly
    max_attempts times (a second, hidden retry layer would multiply attempts and backoff)."""
    settings = through(
        proxy_fast,
        ddb_fast.settings(
            endpoint_urls=(("dynamodb", ddb_fast.endpoint_url),),
            retry=RetrySettings(max_attempts=3, base_delay=0.001, max_delay=0.01),
        ),
    )
    proxy_fast.set_rules(FaultRule(FaultKind.SERVER_ERROR, operations={"GetItem"}))

    with anyio.fail_after(TEST_TIMEOUT):
        async with open_runtime(settings) as rt:
            with pytest.raises(AwsError):
                await rt.dynamo.call(
                    "get_item", TableName=settings.tables.status, Key={"pk": {"S": "RUN"}, "sk": {"S": "LATEST"}}
                )

    assert proxy_fast.requests("GetItem") == 3
