"""Answers that cannot be trusted fail their scope only, and never delete on weak evidence: a
malformed 2xx body, a DRS body without ``items``, a repeated pagination token, DRS saying
"uninitialised" after it already answered, and reconciliation's conditional deletes. Each test
on DynamoDB (dynalite), against the simulator."""

from __future__ import annotations

from typing import Any

import pytest

from syncengine.core.models import Scope, ScopeOutcome
from syncengine.sync.engine import open_runtime, sync_all
from syncengine.tables.cache import CachedEntry
from tests.integration.engine_support import cache_items, engine_settings, seed

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend

REGIONS = ("us-east-1", "us-west-2")


def of_region(cached: dict[str, dict[str, Any]], region: str) -> dict[str, dict[str, Any]]:
    return {sid: item for sid, item in cached.items() if item["region"] == region}


async def synced_then_emptied(ddb: Any, make_simulator: Any, *, keep: int = 0, **estate: Any) -> tuple[Any, Any, str]:
    """An estate of one account in two regions, synced once; then every us-east-1 instance but
    ``keep`` terminated, so a sync that took a partial answer for the whole would delete records."""
    sim = make_simulator(**{"accounts": 1, "regions": REGIONS, "instances_per_scope": 12, "seed": 31, **estate})
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    report = await sync_all(settings)
    assert report.scopes_failed == 0
    hub = sim.estate.hub_account_id
    for ri in list(sim.estate.recovery_instances(hub, "us-east-1"))[keep:]:
        sim.estate.terminate(ri["recoveryInstanceID"])
    return sim, settings, hub


async def assert_only_east_failed(settings: Any, before: dict[str, Any], error_type: str) -> None:
    report = await sync_all(settings)
    results = {r.scope.region: r for r in report.scopes}
    assert results["us-east-1"].outcome is ScopeOutcome.FAILED
    assert results["us-east-1"].error is not None and results["us-east-1"].error.error_type == error_type
    assert results["us-west-2"].ok
    assert of_region(await cache_items(settings), "us-east-1") == of_region(before, "us-east-1")


async def test_sync_all_truncated_drs_body_fails_only_its_scope(ddb, make_simulator) -> None:
    """A 2xx DRS answer cut mid-body is not "zero instances" (botocore alone would parse it as an
    answer without members, now an empty page): its scope fails as ``ResponseParseError`` and
    keeps every record; the other region syncs."""
    sim, settings, hub = await synced_then_emptied(ddb, make_simulator)
    before = await cache_items(settings)
    sim.set_faults(malformedScopes=[f"{hub}#us-east-1"])

    await assert_only_east_failed(settings, before, "ResponseParseError")


async def test_sync_all_drs_answer_without_items_is_an_empty_page(ddb, make_simulator) -> None:
    """DRS's model does not require ``items``: an empty scope answered ``{}`` is empty and
    successful (its records go), as ``{"items": []}`` is; never a failed scope."""
    sim, settings, _hub = await synced_then_emptied(ddb, make_simulator)
    sim.set_faults(missingItemsScopes=["*#us-east-1"])

    report = await sync_all(settings)

    assert report.scopes_failed == 0
    assert of_region(await cache_items(settings), "us-east-1") == {}
    assert of_region(await cache_items(settings), "us-west-2")


async def test_sync_all_tolerates_null_fields_and_a_null_item_list(ddb, make_simulator) -> None:
    """Optional members answered ``null`` (tags, jobID, failback, the staging area, a last page's
    ``nextToken``) and an empty page's ``"items": null``: every scope syncs."""
    sim, settings, hub = await synced_then_emptied(ddb, make_simulator)
    sim.set_faults(nullFieldsScopes=[f"{hub}#us-east-1", f"{hub}#us-west-2"])

    report = await sync_all(settings)

    assert report.scopes_failed == 0
    cached = await cache_items(settings)
    assert of_region(cached, "us-east-1") == {}
    west = of_region(cached, "us-west-2")
    assert len(west) == 12 and all(item["recoveryInstanceId"] and item["ec2InstanceId"] for item in west.values())


async def test_sync_all_follows_the_token_of_an_empty_page(ddb, make_simulator) -> None:
    """An empty first page without ``items`` but with a ``nextToken`` is not the end of the
    listing: the instances on the next page are cached, none deleted."""
    sim = make_simulator(accounts=1, regions=REGIONS, instances_per_scope=5, seed=32)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    sim.set_faults(emptyPageScopes=["*#us-east-1"])

    report = await sync_all(settings)

    assert report.scopes_failed == 0
    assert len(of_region(await cache_items(settings), "us-east-1")) == 5
    assert sim.calls.count("drs", "DescribeRecoveryInstances", region="us-east-1") == 2


async def test_sync_all_malformed_ec2_body_fails_only_its_scope(ddb, make_simulator) -> None:
    """EC2's XML cut mid-document: botocore cannot parse it (the fast path falls back to it
    first), the scope fails as ``ResponseParseError``, the other scope is unaffected."""
    sim, settings, hub = await synced_then_emptied(ddb, make_simulator)
    before = await cache_items(settings)
    # Only EC2's answers are cut (a cut DRS answer would fail the scope first).
    sim.set_faults(malformedScopes=[f"{hub}#us-west-2"], faultServices=["ec2"])

    report = await sync_all(settings)

    results = {r.scope.region: r for r in report.scopes}
    west = results["us-west-2"]
    assert west.outcome is ScopeOutcome.FAILED and west.error is not None
    assert west.error.error_type == "ResponseParseError"
    assert results["us-east-1"].ok
    assert of_region(await cache_items(settings), "us-west-2") == of_region(before, "us-west-2")


async def test_sync_all_repeated_pagination_token_fails_only_its_scope(ddb, make_simulator) -> None:
    """DRS handing back the token it was given would loop (or end on a partial listing): the
    scope fails as ``RepeatedPaginationToken`` and deletes nothing."""
    sim, settings, hub = await synced_then_emptied(ddb, make_simulator, keep=201, instances_per_scope=205)
    before = await cache_items(settings)
    sim.set_faults(repeatedTokenScopes=[f"{hub}#us-east-1"])

    await assert_only_east_failed(settings, before, "RepeatedPaginationToken")


async def test_sync_all_uninitialized_after_the_first_answer_is_a_failure(ddb, make_simulator) -> None:
    """``UninitializedAccountException`` empties a scope only as the answer to its first
    DescribeRecoveryInstances; said later (here to DescribeSourceServers), the scope fails and
    keeps its records."""
    sim, settings, hub = await synced_then_emptied(ddb, make_simulator)
    sim.estate.launch(hub, "us-east-1", 1)
    before = await cache_items(settings)
    sim.set_faults(
        failingScopes=[f"{hub}#us-east-1"], failAfterPages=1, failingScopeError="UninitializedAccountException"
    )

    await assert_only_east_failed(settings, before, "UninitializedAccountException")


async def test_sync_all_uninitialized_first_answer_empties_the_scope(ddb, make_simulator) -> None:
    """Said to the first DescribeRecoveryInstances, it means DRS is not set up there: an empty,
    successful scope whose records go."""
    sim, settings, hub = await synced_then_emptied(ddb, make_simulator)
    sim.set_faults(uninitializedScopes=[f"{hub}#us-east-1"])

    report = await sync_all(settings)

    assert report.scopes_failed == 0
    assert of_region(await cache_items(settings), "us-east-1") == {}


# -- conditional deletes --------------------------------------------------------------------------


async def one_record(ddb: Any, make_simulator: Any) -> tuple[Any, dict[str, Any]]:
    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=3, seed=37)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    item = next(iter((await cache_items(settings)).values()))
    return settings, item


def scope_of(item: dict[str, Any]) -> Scope:
    return Scope(item["accountId"], item["region"])


def entry_of(item: dict[str, Any], *, observed_at: int | None = None) -> CachedEntry:
    observed = int(item["observedAt"]) if observed_at is None else observed_at
    return CachedEntry(item["sourceServerId"], item["recoveryInstanceId"], item["contentHash"], observed)


async def test_delete_stale_deletes_the_record_it_judged(ddb, make_simulator) -> None:
    """Same scope, same observation: the record goes, and is counted."""
    settings, item = await one_record(ddb, make_simulator)

    async with open_runtime(settings) as rt:
        deleted = await rt.store.delete_stale(scope_of(item), [entry_of(item)])

    assert deleted == 1
    assert item["sourceServerId"] not in await cache_items(settings)


async def test_delete_stale_spares_a_record_rewritten_since(ddb, make_simulator) -> None:
    """The index showed an older observation than the table now holds (another sync wrote in
    between, or the index lagged): the record stays."""
    settings, item = await one_record(ddb, make_simulator)

    async with open_runtime(settings) as rt:
        stale_view = entry_of(item, observed_at=int(item["observedAt"]) - 1)
        deleted = await rt.store.delete_stale(scope_of(item), [stale_view])

    assert deleted == 0
    assert (await cache_items(settings))[item["sourceServerId"]] == item


async def test_delete_stale_spares_a_record_of_another_scope(ddb, make_simulator) -> None:
    """A record that now belongs to another scope is not this reconciliation's to delete."""
    settings, item = await one_record(ddb, make_simulator)

    async with open_runtime(settings) as rt:
        deleted = await rt.store.delete_stale(Scope(item["accountId"], "eu-west-1"), [entry_of(item)])

    assert deleted == 0
    assert item["sourceServerId"] in await cache_items(settings)
