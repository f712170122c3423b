"""Properties of whole syncs, over random estates and random changes, against the simulator and a
real DynamoDB server (a fresh estate and fresh tables per example).

* idempotency: syncing twice gives the same table, and the second sync writes nothing;
* data integrity: every record has the required fields, each in its valid format;
* timestamp ordering: interleaved, overlapping syncs of the same scopes leave the newest truth;
* region coverage: every configured account/region has a status entry after a sync;
* reconciliation soundness: records are deleted only in scopes whose sync succeeded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Awaitable
from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.aws.clients import drs_regions
from syncengine.core.errors import SyncInProgressError
from syncengine.core.models import ScopeOutcome
from syncengine.sync.engine import get_sync_status, sync_all, sync_scope
from syncengine.tables.records import REQUIRED_FIELDS
from tests.property.conftest import SERVER_EXAMPLES
from tests.property.support import apply, cache_of, estates, mutations, truth, view, world

EXAMPLE_TIMEOUT = 60
SOURCE_SERVER_ID = re.compile(r"\As-[0-9a-f]{17}\Z")
INSTANCE_ID = re.compile(r"\Ai-(?:[0-9a-f]{8}|[0-9a-f]{17})\Z")
ACCOUNT_ID = re.compile(r"\A[0-9]{12}\Z")
JOB_ID = re.compile(r"\Adrsjob-[0-9a-f]{17}\Z")
ISO_Z = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z\Z")
EC2_STATES = {"pending", "running", "shutting-down", "terminated", "stopping", "stopped"}
DRS_STATES = {state.upper() for state in EC2_STATES}
CACHE_WRITES = {"BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem"}


def run(scenario: Awaitable[None]) -> None:
    """One example: its own event loop, bounded in time."""

    async def bounded() -> None:
        with anyio.fail_after(EXAMPLE_TIMEOUT):
            await scenario

    asyncio.run(bounded())


@settings(max_examples=SERVER_EXAMPLES)
@given(config=estates, changes=st.lists(mutations, max_size=6))
def test_sync_all_twice_gives_the_same_table_and_writes_nothing(backend, config, changes) -> None:
    """Idempotency: after any sync, syncing again sends no write to the cache and leaves every item
    (lastSyncTime included) exactly as it was."""

    async def scenario() -> None:
        async with world(config, backend, proxy=True) as w:
            await sync_all(w.settings)
            for change in changes:
                apply(w.estate, change)
            await sync_all(w.settings)
            table = await cache_of(w)
            w.proxy.reset_counts()

            again = await sync_all(w.settings)

            cache_table = w.settings.tables.cache
            writes = [
                r
                for r in w.proxy.recorded
                if r.operation in CACHE_WRITES
                and (r.body.get("TableName") == cache_table or cache_table in (r.body.get("RequestItems") or {}))
            ]
            assert writes == []
            assert (again.instances_updated, again.instances_deleted) == (0, 0)
            assert await cache_of(w) == table
            assert view(table) == truth(w.estate)

    run(scenario())


def assert_valid_record(item: dict[str, Any]) -> None:
    for name in REQUIRED_FIELDS:
        assert name in item, f"{name} missing from {item}"
    for name, value in item.items():
        assert value not in ("", None, [], {}), f"{name} written empty in {item}"
    assert SOURCE_SERVER_ID.match(item["sourceServerId"]), item["sourceServerId"]
    assert INSTANCE_ID.match(item["recoveryInstanceId"]), item["recoveryInstanceId"]
    assert INSTANCE_ID.match(item["ec2InstanceId"]), item["ec2InstanceId"]
    assert ACCOUNT_ID.match(item["accountId"]), item["accountId"]
    assert item["region"] in drs_regions()
    assert item["ec2InstanceState"] in EC2_STATES
    assert item["drsInstanceState"] in DRS_STATES
    assert ISO_Z.match(item["lastSyncTime"]), item["lastSyncTime"]
    assert item["scopeKey"] == f"{item['accountId']}#{item['region']}"
    for name in ("launchTime", "pointInTimeSnapshotDateTime"):
        if name in item:
            assert ISO_Z.match(item[name]), (name, item[name])
    if "jobId" in item:
        assert JOB_ID.match(item["jobId"]), item["jobId"]
    if "replicationStagingAccountId" in item:
        assert ACCOUNT_ID.match(item["replicationStagingAccountId"])
    for name in ("privateIp", "publicIp"):
        if name in item:
            ipaddress.IPv4Address(item[name])
    if "isDrill" in item:
        assert isinstance(item["isDrill"], bool)
    if "sourceServerTags" in item:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in item["sourceServerTags"].items())


@settings(max_examples=SERVER_EXAMPLES)
@given(config=estates, changes=st.lists(mutations, max_size=8))
def test_every_cached_record_has_required_fields_in_valid_formats(backend, config, changes) -> None:
    """Data integrity: whatever the estate and whatever changed, each record is complete and well
    formed: s-/i- ids, a 12-digit account, a DRS region, ISO ...Z times, no empty values."""

    async def scenario() -> None:
        async with world(config, backend) as w:
            await sync_all(w.settings)
            for change in changes:
                apply(w.estate, change)
            await sync_all(w.settings)

            cached = await cache_of(w)
            for item in cached.values():
                assert_valid_record(item)
            assert view(cached) == truth(w.estate)

    run(scenario())


# One step of an interleaving: a change to the estate, or a sync started now that is either
# awaited before the next step or left running alongside the next ones.
steps = st.one_of(
    mutations.map(lambda m: ("mutate", m)),
    st.tuples(st.just("full"), st.booleans()),
    st.tuples(st.just("scoped"), st.integers(0, 99), st.booleans()),
    st.tuples(st.just("wave"), st.integers(0, 99), st.integers(1, 4), st.booleans()),
)


@settings(max_examples=SERVER_EXAMPLES)
@given(
    config=estates,
    schedule=st.lists(steps, min_size=1, max_size=10),
    latency_ms=st.sampled_from((0, 15, 40)),
)
def test_interleaved_syncs_leave_the_newest_observation(backend, config, schedule, latency_ms) -> None:
    """Timestamp ordering: random changes interleaved with overlapping full, scoped and wave syncs
    (with jittered latency, so observations and writes race); once the last changes are followed
    by a sync of every scope, the cache equals the final truth: no older observation won."""

    async def scenario() -> None:
        async with world(config, backend) as w:
            w.sim.set_faults(latencyMs=latency_ms, latencyJitterMs=latency_ms, seed=1)
            scopes = w.scopes()

            async def full() -> None:
                try:
                    await sync_all(w.settings)
                except SyncInProgressError:
                    pass  # another full sync holds the lease: the property is about the ones that run

            async def scoped(index: int) -> None:
                scope = scopes[index % len(scopes)]
                await sync_all(w.settings, account_id=scope.account_id, region=scope.region)

            async def wave(index: int, count: int) -> None:
                scope = scopes[index % len(scopes)]
                servers = [s["sourceServerID"] for s in w.estate.source_servers(scope.account_id, scope.region)]
                start = index % max(1, len(servers))
                await sync_scope(w.settings, scope.account_id, scope.region, servers[start : start + count])

            async with anyio.create_task_group() as tg:
                for step in schedule:
                    kind, *args = step
                    if kind == "mutate":
                        apply(w.estate, args[0])
                        continue
                    *params, wait = args
                    job = {"full": full, "scoped": scoped, "wave": wave}[kind]
                    if wait:
                        await job(*params)
                    else:
                        tg.start_soon(job, *params)
                        await anyio.sleep(0.01)
                # The closing syncs start after every change, while earlier ones may still run.
                for index in range(len(scopes)):
                    tg.start_soon(scoped, index)

            assert view(await cache_of(w)) == truth(w.estate)

    run(scenario())


@settings(max_examples=SERVER_EXAMPLES)
@given(config=estates, data=st.data())
def test_every_configured_scope_has_a_status_entry_after_a_sync(backend, config, data) -> None:
    """Region coverage: after a full sync every configured account/region, whether it synced, had
    no DRS, failed or was denied, has a status entry saying so."""

    async def scenario() -> None:
        async with world(config, backend) as w:
            keys = sorted(scope.key for scope in w.scopes())
            failing = data.draw(st.sets(st.sampled_from(keys)), label="failing scopes")
            targets = [a.account_id for a in w.estate.accounts if not a.is_hub]
            denied = data.draw(st.sets(st.sampled_from(targets)) if targets else st.just(set()), label="denied")
            w.sim.set_faults(failingScopes=sorted(failing), accessDeniedAccounts=sorted(denied))

            await sync_all(w.settings)

            status = await get_sync_status(w.settings)
            entries = {(s.account_id, s.region): s for s in status.scopes}
            assert set(entries) == {(scope.account_id, scope.region) for scope in w.scopes()}
            for scope in w.scopes():
                entry = entries[(scope.account_id, scope.region)]
                broken = scope.key in failing or scope.account_id in denied
                expected = ScopeOutcome.FAILED if broken else ScopeOutcome.SUCCESS
                assert entry.status == expected.value, (scope, entry)
                if broken:
                    assert entry.last_error
                else:
                    assert entry.instance_count == len(truth(w.estate, scope))

    run(scenario())


@settings(max_examples=SERVER_EXAMPLES)
@given(config=estates, changes=st.lists(mutations, min_size=1, max_size=10), data=st.data())
def test_records_are_deleted_only_in_scopes_that_synced(backend, config, changes, data) -> None:
    """Reconciliation soundness: with a random set of failing scopes and denied accounts and random
    terminations and launches, a failed scope's records are exactly what they were, and every
    successful scope equals its truth."""

    async def scenario() -> None:
        async with world(config, backend) as w:
            await sync_all(w.settings)
            before = await cache_of(w)
            keys = sorted(scope.key for scope in w.scopes())
            failing = data.draw(st.sets(st.sampled_from(keys)), label="failing scopes")
            targets = [a.account_id for a in w.estate.accounts if not a.is_hub]
            denied = data.draw(st.sets(st.sampled_from(targets)) if targets else st.just(set()), label="denied")
            for change in changes:
                apply(w.estate, change)
            w.sim.set_faults(failingScopes=sorted(failing), accessDeniedAccounts=sorted(denied))

            report = await sync_all(w.settings)

            cached = await cache_of(w)
            failed = {r.scope for r in report.scopes if not r.ok}
            assert failed == {s for s in w.scopes() if s.key in failing or s.account_id in denied}
            for scope in w.scopes():
                now = {sid: item for sid, item in cached.items() if item["scopeKey"] == scope.key}
                if scope in failed:
                    assert now == {sid: item for sid, item in before.items() if item["scopeKey"] == scope.key}
                else:
                    assert view(now) == truth(w.estate, scope)

    run(scenario())
