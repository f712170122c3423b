"""A cache that tells the truth in a real estate: opt-in regions an account has not enabled,
accounts and regions removed from the configuration, and a status whose run fields belong to
full syncs only. The simulator's DRS/EC2/STS over HTTP, DynamoDB (dynalite)."""

from __future__ import annotations

import dataclasses
import json
import time

import anyio
import pytest

from devtools.seed import target_account_items
from syncengine.core import metrics as m
from syncengine.core.config import LEASE_MARGIN_SECONDS
from syncengine.core.models import RunStatus, ScopeOutcome
from syncengine.dynamodb.seam import from_item, to_item
from syncengine.refresh.waves import sync_wave
from syncengine.sync.engine import get_sync_status, open_runtime, sync_all, sync_scope
from syncengine.tables.status import SCOPE_PK
from tests.integration.engine_support import cache_items, engine_settings, put_raw, seed

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend

OPT_IN = "af-south-1"


def target_items(sim, **changes_by_account: dict) -> list[dict]:
    """The estate's target-accounts items, with per-account changes (keyed ``a<index>``)."""
    items = target_account_items([a.to_json() for a in sim.estate.accounts])
    for index, item in enumerate(items):
        item.update(changes_by_account.get(f"a{index}", {}))
    return items


def scopes_of(status) -> dict[tuple[str, str], str]:
    return {(s.account_id, s.region): s.status for s in status.scopes}


def records_of(cached: dict, account_id: str) -> set[str]:
    return {sid for sid, item in cached.items() if item["accountId"] == account_id}


def emitted(capsys) -> list[dict]:
    """The EMF documents printed, each metric's data points (a list, Powertools' layout) summed."""
    lines = capsys.readouterr().out.splitlines()
    documents = [json.loads(line) for line in lines if line.startswith('{"_aws"')]
    for document in documents:
        for definition in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            document[definition["Name"]] = sum(document[definition["Name"]])
    return documents


# -- opt-in regions -------------------------------------------------------------------------------


async def test_sync_all_reports_a_disabled_opt_in_region_not_enabled_and_stays_healthy(
    ddb, make_simulator, capsys
) -> None:
    """The account that has not enabled af-south-1: NOT_ENABLED, no DRS call there, no error metric."""
    sim = make_simulator(
        accounts=3, regions=("us-east-1", OPT_IN), instances_per_scope=4, seed=21, disabled_regions=(f"1#{OPT_IN}",)
    )
    settings = engine_settings(ddb, sim, emit_metrics=True)
    await seed(settings, sim.estate)
    lagging = sim.estate.accounts[1].account_id

    report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS
    assert (report.scopes_synced, report.scopes_failed, report.scopes_not_enabled) == (5, 0, 1)
    assert not report.errors
    assert sim.calls.count("drs", account_id=lagging, region=OPT_IN) == 0
    status = await get_sync_status(settings)
    assert status.status.value == "healthy"
    assert scopes_of(status)[(lagging, OPT_IN)] == ScopeOutcome.NOT_ENABLED.value
    assert status.to_dict()["staleScopes"] == 0
    (run_metrics,) = [doc for doc in emitted(capsys) if m.SYNC_ERRORS in doc]
    assert run_metrics[m.SYNC_ERRORS] == 0 and run_metrics[m.SCOPES_NOT_ENABLED] == 1


async def test_sync_all_asks_describe_regions_once_per_account_with_an_opt_in_region(ddb, make_simulator) -> None:
    """One DescribeRegions per account that has an opt-in scope, none for always-enabled regions."""
    sim = make_simulator(accounts=3, regions=("us-east-1", "eu-west-1", OPT_IN), instances_per_scope=2, seed=22)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)

    report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS and report.scopes_synced == 9
    for account in sim.estate.accounts:
        assert sim.calls.count("ec2", "DescribeRegions", account_id=account.account_id) == 1


async def test_sync_all_falls_back_to_the_auth_failure_when_describe_regions_is_denied(ddb, make_simulator) -> None:
    """Roles without ec2:DescribeRegions: DRS's UnrecognizedClientException in the opt-in region
    marks it NOT_ENABLED; the enabled opt-in region still syncs."""
    sim = make_simulator(
        accounts=3,
        regions=("us-east-1", OPT_IN),
        instances_per_scope=3,
        seed=23,
        disabled_regions=(f"2#{OPT_IN}",),
        faults={"unauthorizedOperations": ["ec2:DescribeRegions"]},
    )
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    lagging, enabled = sim.estate.accounts[2].account_id, sim.estate.accounts[1].account_id

    report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS
    assert sim.calls.count("ec2", "DescribeRegions", outcome="UnauthorizedOperation") == 2
    assert sim.calls.count("drs", account_id=lagging, region=OPT_IN, outcome="UnrecognizedClientException") >= 1
    status = scopes_of(await get_sync_status(settings))
    assert status[(lagging, OPT_IN)] == ScopeOutcome.NOT_ENABLED.value
    assert status[(enabled, OPT_IN)] == ScopeOutcome.SUCCESS.value
    assert records_of(await cache_items(settings), enabled)


async def test_sync_all_steady_state_with_a_disabled_region_writes_no_record(ddb, make_simulator) -> None:
    """A second full sync over an estate with a NOT_ENABLED scope writes nothing to the cache."""
    sim = make_simulator(
        accounts=2, regions=("us-east-1", OPT_IN), instances_per_scope=5, seed=24, disabled_regions=(f"1#{OPT_IN}",)
    )
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    before = await cache_items(settings)

    second = await sync_all(settings)

    assert second.status is RunStatus.SUCCESS
    assert (second.instances_updated, second.instances_deleted) == (0, 0)
    assert await cache_items(settings) == before


# -- malformed regions in target-accounts -------------------------------------------------------


@pytest.mark.parametrize(
    ("regions", "words"),
    [
        pytest.param("us-east-1", "must be a list", id="string-not-list"),
        pytest.param(["us-east-1", "mars-north-1"], "mars-north-1", id="unknown-region"),
    ],
)
async def test_sync_all_fails_only_the_account_with_malformed_regions(ddb, make_simulator, regions, words) -> None:
    """The malformed item's scopes fail with a sentence naming the problem, no AWS call for it;
    every other account syncs."""
    sim = make_simulator(accounts=3, regions=("us-east-1",), instances_per_scope=3, seed=25)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await put_raw(settings, settings.tables.target_accounts, target_items(sim, a1={"regions": regions}))
    broken = sim.estate.accounts[1].account_id

    report = await sync_all(settings)

    assert report.status is RunStatus.PARTIAL
    assert report.scopes_synced == 2 and report.scopes_failed == 1
    (error,) = report.errors
    assert error.account_id == broken and error.error_type == "InvalidConfiguration" and words in error.message
    assert sim.calls.count(account_id=broken) == 0
    assert scopes_of(await get_sync_status(settings))[(broken, "us-east-1")] == ScopeOutcome.FAILED.value


# -- removed scopes -------------------------------------------------------------------------------


async def test_full_sync_removes_the_records_and_scopes_of_an_inactive_account(ddb, make_simulator) -> None:
    """An account set inactive between syncs: its records and scope entries go, nothing else does."""
    sim = make_simulator(accounts=3, regions=("us-east-1", "eu-west-1"), instances_per_scope=4, seed=26)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    gone = sim.estate.accounts[2].account_id
    before = await cache_items(settings)
    assert records_of(before, gone)
    await put_raw(settings, settings.tables.target_accounts, target_items(sim, a2={"status": "inactive"}))

    report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS and report.scopes_removed == 2
    after = await cache_items(settings)
    assert not records_of(after, gone)
    assert set(after) == set(before) - records_of(before, gone)
    status = await get_sync_status(settings)
    assert all(account != gone for account, _ in scopes_of(status))
    assert len(status.scopes) == 4 and status.status.value == "healthy"


async def test_full_sync_removes_a_region_dropped_from_an_item(ddb, make_simulator) -> None:
    """A region removed from an item's regions: that scope's records and entry go; its other region stays."""
    sim = make_simulator(accounts=2, regions=("us-east-1", "eu-west-1"), instances_per_scope=4, seed=27)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    account = sim.estate.accounts[1].account_id
    await put_raw(settings, settings.tables.target_accounts, target_items(sim, a1={"regions": ["us-east-1"]}))

    report = await sync_all(settings)

    assert report.scopes_removed == 1
    cached = await cache_items(settings)
    assert {item["region"] for item in cached.values() if item["accountId"] == account} == {"us-east-1"}
    assert (account, "eu-west-1") not in scopes_of(await get_sync_status(settings))


async def test_failed_configuration_read_deletes_nothing(ddb, make_simulator) -> None:
    """The target-accounts table cannot be read: the run fails and every record and scope stays."""
    sim = make_simulator(accounts=2, regions=("us-east-1",), instances_per_scope=4, seed=28)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    before, status_before = await cache_items(settings), await get_sync_status(settings)
    unreadable = settings.with_changes(
        tables=dataclasses.replace(settings.tables, target_accounts="no-such-target-accounts-table")
    )

    report = await sync_all(unreadable)

    assert report.status is RunStatus.FAILED and report.scopes_removed == 0
    assert await cache_items(settings) == before
    assert scopes_of(await get_sync_status(settings)) == scopes_of(status_before)


async def test_scoped_sync_removes_nothing(ddb, make_simulator) -> None:
    """Only a full sync reconciles the configuration: a scoped sync after an account went inactive
    leaves that account's records for the next full sync."""
    sim = make_simulator(accounts=3, regions=("us-east-1",), instances_per_scope=3, seed=29)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    gone = sim.estate.accounts[2].account_id
    await put_raw(settings, settings.tables.target_accounts, target_items(sim, a2={"status": "inactive"}))

    await sync_scope(settings, sim.estate.accounts[1].account_id, "us-east-1")

    assert records_of(await cache_items(settings), gone)


# -- freshness ------------------------------------------------------------------------------------


async def test_scoped_sync_leaves_the_full_sync_summary_and_reports_beside_it(ddb, make_simulator) -> None:
    """lastSyncTime and the counts stay the full sync's; the scoped run is lastScopedSync."""
    sim = make_simulator(accounts=2, regions=("us-east-1", "eu-west-1"), instances_per_scope=3, seed=30)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    full = await sync_all(settings)
    first = (await get_sync_status(settings)).to_dict()

    scoped = await sync_scope(settings, sim.estate.accounts[1].account_id, "eu-west-1")

    body = (await get_sync_status(settings)).to_dict()
    assert body["status"] == "healthy"
    run_fields = ("lastSyncTime", "instancesUpdated", "scopesSynced", "durationMs", "errors")
    assert {k: body[k] for k in run_fields} == {k: first[k] for k in run_fields}
    assert body["scopesSynced"] == full.scopes_synced == 4
    assert body["lastScopedSync"]["runId"] == scoped.run_id
    assert body["lastScopedSync"]["scopesSynced"] == 1
    assert first["lastScopedSync"] is None


async def test_an_older_scoped_report_written_late_never_replaces_the_newest(ddb, make_simulator) -> None:
    """Two scoped syncs finishing close together: the one that finished first, written last,
    does not become lastScopedSync."""
    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=2, seed=32)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    newest = await sync_scope(settings, sim.estate.accounts[0].account_id, "us-east-1")
    older = dataclasses.replace(newest, run_id="older-run", finished_at="2000-01-01T00:00:00Z")

    async with open_runtime(settings) as rt:
        await rt.status.write_run(older, full=False)

    assert (await get_sync_status(settings)).to_dict()["lastScopedSync"]["runId"] == newest.run_id


async def test_targeted_sync_leaves_the_scope_status_of_the_whole_scope_sync(ddb, make_simulator) -> None:
    """A wave/event sync of one server says nothing of the rest of the scope: the scope keeps the
    status, success time and instance count of its last whole-scope sync, and shows the refresh
    apart as lastTargetedTime."""
    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=5, seed=31)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    (before,) = (await get_sync_status(settings)).to_dict()["scopes"]
    account = sim.estate.accounts[0].account_id
    one_server = sorted(await cache_items(settings))[0]

    await anyio.sleep(1.1)  # ISO times have second resolution
    report = await sync_scope(settings, account, "us-east-1", [one_server])

    assert report.status is RunStatus.SUCCESS and report.instances_found == 1
    (after,) = (await get_sync_status(settings)).to_dict()["scopes"]
    kept = ("status", "lastSuccessTime", "instanceCount", "lastAttemptTime")
    assert {k: after.get(k) for k in kept} == {k: before.get(k) for k in kept}
    assert after["instanceCount"] == 5
    assert after["lastTargetedTime"] > before["lastSuccessTime"]


async def test_full_sync_emits_a_heartbeat_and_a_held_lease_a_skip(ddb, make_simulator, capsys) -> None:
    """FullSyncHeartbeat per successful full sync; SyncsSkipped when the full-sync lease is held."""
    from syncengine.core.errors import SyncInProgressError

    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=2, seed=31)
    settings = engine_settings(ddb, sim, emit_metrics=True)
    await seed(settings, sim.estate)

    await sync_all(settings)
    assert [doc.get(m.FULL_SYNC_HEARTBEAT) for doc in emitted(capsys) if m.SYNC_ERRORS in doc] == [1]
    await sync_scope(settings, sim.estate.accounts[0].account_id, "us-east-1")
    assert [doc.get(m.FULL_SYNC_HEARTBEAT) for doc in emitted(capsys) if m.SYNC_ERRORS in doc] == [None]
    async with open_runtime(settings) as rt:
        await rt.status.acquire_full_sync_lease("someone-else")
    with pytest.raises(SyncInProgressError):
        await sync_all(settings)
    (skip,) = emitted(capsys)
    assert skip[m.SYNCS_SKIPPED] == 1 and skip["holder"] == "someone-else"


# -- the acceptance scenario --------------------------------------------------------------------


async def test_acceptance_opt_in_inactive_account_and_scoped_syncs(ddb, make_simulator) -> None:
    """A disabled opt-in region, an account going inactive, scoped syncs after a full one: healthy,
    NOT_ENABLED, the inactive account gone, the full lastSyncTime kept, a steady state writing nothing."""
    sim = make_simulator(
        accounts=3, regions=("us-east-1", OPT_IN), instances_per_scope=3, seed=32, disabled_regions=(f"1#{OPT_IN}",)
    )
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    lagging, leaving = sim.estate.accounts[1].account_id, sim.estate.accounts[2].account_id
    await sync_all(settings)
    await put_raw(settings, settings.tables.target_accounts, target_items(sim, a2={"status": "inactive"}))

    await sync_all(settings)
    full_time = (await get_sync_status(settings)).last_sync_time
    await sync_scope(settings, lagging, "us-east-1")
    await sync_scope(settings, lagging, OPT_IN)
    steady = await sync_all(settings)
    await sync_scope(settings, lagging, "us-east-1")

    status = await get_sync_status(settings)
    assert status.status.value == "healthy"
    assert scopes_of(status)[(lagging, OPT_IN)] == "NOT_ENABLED"
    assert all(account != leaving for account, _ in scopes_of(status))
    assert not records_of(await cache_items(settings), leaving)
    assert full_time is not None and status.last_sync_time == steady.finished_at != full_time
    assert steady.instances_updated == 0


# -- leases ---------------------------------------------------------------------------------------


async def test_scope_lease_expires_at_the_holders_deadline_plus_a_margin(ddb, make_simulator) -> None:
    """A sync with a 60 s deadline holds its scope lease no longer than 60 s + the margin, not 15 minutes."""
    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=2, seed=33, faults={"latencyMs": 300})
    settings = engine_settings(ddb, sim, deadline_seconds=60.0)
    await seed(settings, sim.estate)
    account = sim.estate.accounts[0].account_id
    seen: list[int] = []

    async def watch_lease() -> None:
        async with open_runtime(settings) as rt:
            while not seen:
                response = await rt.dynamo.call(
                    "get_item",
                    TableName=settings.tables.status,
                    Key=to_item({"pk": SCOPE_PK, "sk": f"{account}#us-east-1"}),
                    ConsistentRead=True,
                )
                expires = from_item(response.get("Item") or {}).get("leaseExpiresAt")
                if expires is not None:
                    seen.append(int(expires))
                await anyio.sleep(0.02)

    started = time.time()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_lease)
            await sync_scope(settings, account, "us-east-1")
            tg.cancel_scope.cancel()
    assert seen, "the lease was never observed"
    assert seen[0] <= started + 60 + LEASE_MARGIN_SECONDS + 1


async def test_wave_sync_deadline_covers_all_its_targets(ddb, make_simulator) -> None:
    """A wave touching two scopes under a deadline the first one uses up: the second is reported
    skipped (DeadlineExceeded) and gets no DRS call."""
    sim = make_simulator(accounts=1, regions=("us-east-1", "eu-west-1"), instances_per_scope=2, seed=34)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    account = sim.estate.accounts[0].account_id
    servers = {
        r: [ri["sourceServerID"] for ri in sim.estate.recovery_instances(account, r)]
        for r in ("us-east-1", "eu-west-1")
    }
    await put_raw(
        settings,
        settings.tables.protection_groups,
        [
            {"groupId": f"pg-{r}", "groupName": r, "region": r, "accountId": account, "sourceServerIds": ids}
            for r, ids in servers.items()
        ],
    )
    sim.set_faults(latency_ms=2000)
    wave = {"waveNumber": 1, "protectionGroupIds": ["pg-us-east-1", "pg-eu-west-1"], "accountId": account}

    result = await sync_wave(settings.with_changes(deadline_seconds=3.0), "exec-w", "plan-w", wave=wave)

    skipped = [e for r in result.reports for e in r.errors if "wave sync's deadline" in e.message]
    assert len(result.reports) == 2 and len(skipped) == 1
    assert skipped[0].error_type == "DeadlineExceeded"
    assert sim.calls.count("drs", region=skipped[0].region) == 0


async def test_full_sync_with_nothing_configured_fails_and_removes_nothing(ddb, make_simulator) -> None:
    """An emptied target-accounts table (and no current account): the run fails, status is error,
    and no record or scope entry is removed."""
    sim = make_simulator(accounts=2, regions=("us-east-1",), instances_per_scope=3, seed=35)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)
    before = await cache_items(settings)
    inactive = [{**item, "status": "inactive"} for item in target_items(sim)]
    await put_raw(settings, settings.tables.target_accounts, inactive)

    report = await sync_all(settings.with_changes(include_current_account=False))

    assert report.status is RunStatus.FAILED and report.scopes_removed == 0
    assert [e.error_type for e in report.errors] == ["NoScopesConfigured"]
    assert await cache_items(settings) == before
    status = await get_sync_status(settings)
    assert status.status.value == "error" and len(status.scopes) == 2
