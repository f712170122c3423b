"""When a scope reads the execution index (issue 16, latency_bound): as soon as DRS has listed its
recovery instances, inside the Retry-After wait of its throttled source-server lookup, not after
it; what lands after the wait is only what needs DRS's late answers."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.simulator.calls import SUCCESS
from syncengine.core.models import RunStatus, Scope
from syncengine.sync.engine import open_runtime, sync_all, sync_scope_in_runtime
from syncengine.sync.execution_sync import SyncExecutions, open_for_sync
from syncengine.tables.accounts import load_targets
from syncengine.tables.execution_index.lookup import ExecutionIndex, Recheck
from tests.integration.engine_support import engine_settings, seed

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend

REGION = "us-east-1"


class SpyExecutions:
    """The run's execution source; notes how many DescribeSourceServers calls of the scope had
    succeeded when the scope asked it for the index."""

    def __init__(self, source: Any, sim: Any, account_id: str):
        self.source, self.sim, self.account_id = source, sim, account_id
        self.servers_answered_at_lookup: list[int] = []

    async def for_instances(self, dynamo: Any, region: str, recovery_instances: Any) -> ExecutionIndex:
        answered = self.sim.calls.count(
            service="drs", operation="DescribeSourceServers", account_id=self.account_id, outcome=SUCCESS
        )
        self.servers_answered_at_lookup.append(answered)
        return await self.source.for_instances(dynamo, region, recovery_instances)

    def recheck(self, stamp: float | None) -> Recheck:
        return self.source.recheck(stamp)


async def test_pipeline_reads_the_execution_index_inside_the_throttle_wait(ddb: Any, make_simulator: Any) -> None:
    sim = make_simulator(accounts=2, regions=(REGION,), instances_per_scope=4, seed=3)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    await sync_all(settings)  # the index exists from here on
    account = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    # One DRS token per scope, then one per 2 s: the source-server lookup after the listing waits.
    sim.set_faults(tpsPerScope=0.5, burstPerScope=1, retryAfterSeconds=2, faultServices=["drs"])
    sim.calls.reset()

    async with open_runtime(settings) as rt:
        targets = await load_targets(rt.aws, rt.dynamo, settings)
        opened = await open_for_sync(rt.dynamo, settings)
        spy = SpyExecutions(opened.source, sim, account)
        report = await sync_scope_in_runtime(
            rt, Scope(account, REGION), None, targets=targets, executions=SyncExecutions(spy)
        )

    assert report.status is RunStatus.SUCCESS
    assert sim.calls.count(service="drs", account_id=account, outcome="ThrottlingException") >= 1
    assert spy.servers_answered_at_lookup == [0]
