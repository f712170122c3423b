"""Fan-out of the full sync over the work queue (syncengine.sync.fanout) on moto's SQS, with the local
event source mapping (devtools.event_source) running the refresh function as the worker: the
sweep enqueues the scopes in groups (here one account's two regions a message), the workers sync
them with the same engine, the run record counts each scope once, and the worker that finishes
the last one writes the run summary and removes scopes no longer configured. A run that lost a
message never shows as healthy."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devtools.event_source import EventSourcePoller, WorkQueue, create_work_queue
from handlers import dependencies
from handlers.refresh import lambda_handler
from syncengine.core.config import SyncSettings
from syncengine.core.models import RunStatus, Scope, ScopeOutcome, ScopeResult
from syncengine.refresh.batch import RefreshMessage, refresh
from syncengine.sync.engine import get_sync_status, open_runtime, sync_all
from tests.events_loader import FakeLambdaContext
from tests.integration.engine_support import cache_items, engine_settings, seed

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend

REGIONS = ("us-east-1", "us-west-2")


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def queue(sqs: Any) -> WorkQueue:
    return create_work_queue(sqs, f"fanout-{uuid.uuid4().hex[:8]}", visibility_timeout_s=30)


@pytest.fixture
def estate(ddb: Any, make_simulator: Any, moto_endpoint: str, queue: WorkQueue) -> Iterator[tuple[Any, SyncSettings]]:
    sim = make_simulator(accounts=3, regions=REGIONS, instances_per_scope=3, seed=11)
    base = engine_settings(ddb, sim, scope_lease_wait=0.5)
    settings = base.with_changes(
        fanout="on",
        work_queue_url=queue.url,
        endpoint_urls=(*base.endpoint_urls, ("sqs", moto_endpoint)),
        fanout_scopes_per_message=len(REGIONS),
    )
    asyncio.run(seed(settings, sim.estate))
    dependencies.configure(settings=settings)
    yield sim, settings
    dependencies.reset()


def scope_count(sim: Any) -> int:
    return sum(len(a.regions) for a in sim.estate.accounts)


def work(sqs: Any, queue: WorkQueue) -> list[Any]:
    return EventSourcePoller(sqs, queue, lambda_handler, context=FakeLambdaContext()).run_until_idle()


def received_bodies(sqs: Any, queue: WorkQueue) -> list[dict[str, Any]]:
    bodies = []
    while batch := sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10).get("Messages"):
        bodies += [json.loads(m["Body"]) for m in batch]
    return bodies


def test_fanout_sweep_enqueues_one_message_per_group_of_scopes(sqs: Any, queue: WorkQueue, estate: Any) -> None:
    sim, settings = estate

    report = asyncio.run(sync_all(settings))

    assert report.scopes_enqueued == scope_count(sim)
    bodies = received_bodies(sqs, queue)
    assert len(bodies) == len(sim.estate.accounts)  # one account's two regions a message
    assert all(b["reason"] == "fanout" and b["runId"] == report.run_id for b in bodies)
    enqueued = sorted((s["accountId"], s["region"]) for b in bodies for s in b["scopes"])
    assert enqueued == sorted((a.account_id, r) for a in sim.estate.accounts for r in a.regions)
    assert asyncio.run(get_sync_status(settings)).status.value == "running"


def test_fanout_workers_fill_the_cache_and_the_last_writes_the_summary(sqs: Any, queue: WorkQueue, estate: Any) -> None:
    sim, settings = estate
    started = asyncio.run(sync_all(settings))

    outcomes = work(sqs, queue)

    assert all(o.failed == () for o in outcomes)
    status = asyncio.run(get_sync_status(settings)).to_dict()
    assert status["status"] == "healthy"
    assert status["scopesSynced"] == scope_count(sim)
    assert status["fanoutRun"] == {
        "runId": started.run_id,
        "scopes": scope_count(sim),
        "finished": scope_count(sim),
        "startedAt": started.started_at,
        "parts": 1,  # all six scopes in one part of the run record
        "stale": False,
    }
    # The workers' slices of the full run are not scoped syncs: no lastScopedSync appears.
    assert status["lastScopedSync"] is None
    live = {
        ri["sourceServerID"]
        for a in sim.estate.accounts
        for r in a.regions
        for ri in sim.estate.recovery_instances(a.account_id, r)
    }
    assert set(asyncio.run(cache_items(settings))) == live


def test_fanout_last_worker_removes_scopes_no_longer_configured(sqs: Any, queue: WorkQueue, estate: Any) -> None:
    _sim, settings = estate
    gone = Scope("999999999999", "us-east-1")

    async def leave_a_removed_scope() -> None:
        async with open_runtime(settings) as rt:
            await rt.status.finish_scope(ScopeResult(gone, ScopeOutcome.SUCCESS), owner=None)

    asyncio.run(leave_a_removed_scope())
    asyncio.run(sync_all(settings))

    work(sqs, queue)

    status = asyncio.run(get_sync_status(settings)).to_dict()
    assert gone.account_id not in {s["accountId"] for s in status["scopes"]}


def test_fanout_group_message_with_a_busy_scope_comes_back_and_counts_each_scope_once(
    sqs: Any, queue: WorkQueue, estate: Any
) -> None:
    """One scope of a group busy: the group's message is reported failed (its other scope is
    counted); redelivered, both scopes sync again and the run counts each scope exactly once."""
    sim, settings = estate
    account = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    busy = Scope(account, REGIONS[0])

    async def lease(expires_at: float) -> None:  # another sync's lease; expired = released
        async with open_runtime(settings) as rt:
            assert await rt.status.acquire_scope_lease(busy, "another-sync", wait=0, expires_at=expires_at)

    started = asyncio.run(sync_all(settings))
    asyncio.run(lease(time.time() + 600))
    poller = EventSourcePoller(sqs, queue, lambda_handler, context=FakeLambdaContext())
    messages = poller.receive_batch()
    first = poller.invoke(messages)

    (failed,) = first.failed
    body = json.loads(next(m["Body"] for m in messages if m["MessageId"] == failed))
    assert {(s["accountId"], s["region"]) for s in body["scopes"]} == {(account, r) for r in REGIONS}
    assert asyncio.run(get_sync_status(settings)).to_dict()["fanoutRun"]["finished"] == started.scopes_enqueued - 1

    asyncio.run(lease(time.time() - 60))
    receipt = next(m["ReceiptHandle"] for m in messages if m["MessageId"] == failed)
    sqs.change_message_visibility(QueueUrl=queue.url, ReceiptHandle=receipt, VisibilityTimeout=0)
    again = work(sqs, queue)

    assert [o.failed for o in again] == [()]
    status = asyncio.run(get_sync_status(settings)).to_dict()
    assert status["status"] == "healthy"
    assert status["fanoutRun"]["finished"] == status["fanoutRun"]["scopes"] == scope_count(sim)
    assert status["scopesSynced"] == scope_count(sim)


def test_fanout_counts_a_redelivered_scope_once(estate: Any) -> None:
    _sim, settings = estate

    async def count_twice() -> tuple[Any, Any]:
        async with open_runtime(settings) as rt:
            await rt.status.start_fanout_run("0123456789abcdef", 2, "2026-01-01T00:00:00Z")
            result = ScopeResult(Scope("111111111111", "us-east-1"), ScopeOutcome.SUCCESS)
            return (
                await rt.status.finish_fanout_scope("0123456789abcdef", result),
                await rt.status.finish_fanout_scope("0123456789abcdef", result),
            )

    first, second = asyncio.run(count_twice())
    assert first is not None and int(first["finished"]) == 1
    assert second is None


def test_fanout_count_answers_counters_only_and_zero_remaining_on_the_last_scope(estate: Any) -> None:
    """Each count answers a few counters (never the run's list of counted scopes, which would
    grow with every count); the last one says nothing remains."""
    _sim, settings = estate

    async def count_both() -> tuple[Any, Any, Any]:
        async with open_runtime(settings) as rt:
            await rt.status.start_fanout_run("0123456789abcdef", 2, "2026-01-01T00:00:00Z")
            first = await rt.status.finish_fanout_scope(
                "0123456789abcdef", ScopeResult(Scope("111111111111", "us-east-1"), ScopeOutcome.SUCCESS)
            )
            last = await rt.status.finish_fanout_scope(
                "0123456789abcdef", ScopeResult(Scope("111111111111", "us-west-2"), ScopeOutcome.FAILED)
            )
            return first, last, await rt.status.fanout_run(consistent=True)

    first, last, record = asyncio.run(count_both())
    assert (int(first["remaining"]), int(last["remaining"])) == (1, 0)
    assert len(last) <= 10  # counters and this scope's marker, however many scopes were counted
    assert (record["finished"], record["scopesSynced"], record["scopesFailed"]) == (2, 1, 1)
    assert not any(key.startswith("done:") for key in record)


def test_fanout_counts_a_batch_in_one_update_and_a_redelivered_scope_in_it_once(estate: Any) -> None:
    """A batch's scopes of one run count together; a chunk holding a scope counted already (its
    message delivered again) is refused whole and counted scope by scope: each counts once, and
    the last count finishes the run."""
    from syncengine.sync.fanout import finish_scopes

    _sim, settings = estate
    run = "0123456789abcdef"
    scopes = [Scope("111111111111", region) for region in ("us-east-1", "us-west-2", "eu-west-1")]

    async def count() -> tuple[Any, Any, Any]:
        async with open_runtime(settings) as rt:
            await rt.status.start_fanout_run(run, 4, "2026-01-01T00:00:00Z")
            first_two = [ScopeResult(s, ScopeOutcome.SUCCESS) for s in scopes[:2]]
            together = await rt.status.finish_fanout_scopes(run, first_two)
            again = [ScopeResult(s, ScopeOutcome.SUCCESS) for s in scopes]  # two counted already
            again.append(ScopeResult(Scope("222222222222", "us-east-1"), ScopeOutcome.FAILED))
            await finish_scopes(rt, run, again)
            return together, await rt.status.fanout_run(consistent=True), await rt.status.latest_run()

    together, record, summary = asyncio.run(count())
    assert (int(together["finished"]), int(together["remaining"])) == (2, 2)
    assert (record["finished"], record["remaining"], record["scopesSynced"], record["scopesFailed"]) == (4, 0, 3, 1)
    assert summary is not None and summary["runId"] == run and summary["scopesSynced"] == 3


def test_fanout_never_finishes_a_run_record_that_predates_the_remaining_count(estate: Any) -> None:
    """A run record written before ``remaining`` existed must not be finished by its first count."""
    from tests.integration.engine_support import put_raw

    _sim, settings = estate
    old = {"pk": "RUN", "sk": "FANOUT", "runId": "0123456789abcdef", "total": 5, "finished": 0}
    asyncio.run(put_raw(settings, settings.tables.status, [old]))

    async def count() -> Any:
        async with open_runtime(settings) as rt:
            result = ScopeResult(Scope("111111111111", "us-east-1"), ScopeOutcome.SUCCESS)
            return await rt.status.finish_fanout_scope("0123456789abcdef", result)

    assert asyncio.run(count()) is None


def test_fanout_ignores_a_message_of_an_older_run(estate: Any) -> None:
    _sim, settings = estate

    async def late_message() -> Any:
        async with open_runtime(settings) as rt:
            await rt.status.start_fanout_run("0123456789abcdef", 1, "2026-01-01T00:00:00Z")
            result = ScopeResult(Scope("111111111111", "us-east-1"), ScopeOutcome.SUCCESS)
            return await rt.status.finish_fanout_scope("fedcba9876543210", result)

    assert asyncio.run(late_message()) is None


def test_fanout_run_that_lost_a_message_is_not_healthy(sqs: Any, queue: WorkQueue, estate: Any) -> None:
    _sim, settings = estate
    started = asyncio.run(sync_all(settings))
    lost = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=1)["Messages"][0]
    sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=lost["ReceiptHandle"])
    lost_scopes = len(json.loads(lost["Body"])["scopes"])
    work(sqs, queue)

    async def lease_expires() -> None:  # what the lease's expiry does after stale_after_seconds
        async with open_runtime(settings) as rt:
            await rt.status.release_full_sync_lease(started.run_id)

    asyncio.run(lease_expires())
    status = asyncio.run(get_sync_status(settings)).to_dict()
    assert status["status"] != "healthy"
    assert status["fanoutRun"]["stale"] is True
    assert status["fanoutRun"]["finished"] == started.scopes_enqueued - lost_scopes


def test_fanout_scopes_that_could_not_be_enqueued_fail_and_the_run_still_finishes(
    sqs: Any, queue: WorkQueue, estate: Any
) -> None:
    """The queue refuses every message: no worker will count those scopes, so the sweep counts
    them failed itself, the run finishes (summary written, lease released), never left running."""
    sim, settings = estate
    sqs.delete_queue(QueueUrl=queue.url)

    started = asyncio.run(sync_all(settings))

    assert started.status is RunStatus.PARTIAL and started.scopes_enqueued == 0
    status = asyncio.run(get_sync_status(settings)).to_dict()
    assert status["status"] == "error"  # the full run failed outright: no scope synced
    assert status["scopesFailed"] == scope_count(sim)
    assert status["fanoutRun"]["stale"] is False
    again = asyncio.run(sync_all(settings))  # the lease was released: no SYNC_IN_PROGRESS
    assert again.run_id != started.run_id


def test_fanout_auto_syncs_in_process_below_the_threshold(estate: Any) -> None:
    sim, settings = estate
    report = asyncio.run(sync_all(settings.with_changes(fanout="auto", fanout_threshold=10_000)))
    assert report.scopes_enqueued == 0
    assert report.status is RunStatus.SUCCESS and report.scopes_synced == scope_count(sim)


def test_fanout_delays_the_scope_of_a_running_recovery(sqs: Any, queue: WorkQueue, estate: Any) -> None:
    """The recovery's own DRS calls keep the account's quota: its scope's message waits."""
    from tests.integration.engine_support import put_raw
    from tests.integration.test_handlers_support import execution_item

    sim, settings = estate
    account = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    job = {"region": "us-east-1", "accountId": account, "jobID": "drsjob-running"}
    running = {**execution_item("exec-running", "plan-r", [job]), "status": "RUNNING"}
    asyncio.run(put_raw(settings, settings.tables.execution_history, [running]))

    report = asyncio.run(sync_all(settings))

    visible = [(s["accountId"], s["region"]) for b in received_bodies(sqs, queue) for s in b["scopes"]]
    assert len(visible) == report.scopes_enqueued - 1
    assert (account, "us-east-1") not in visible
    assert (account, "us-west-2") in visible  # the account's other scope is not held back


def test_fanout_second_delivery_of_a_message_gives_way_instead_of_syncing_again(
    sqs: Any, queue: WorkQueue, estate: Any
) -> None:
    """SQS delivers at least once: two copies of one group message at once. Where the first copy
    holds a scope's lease, the second gives way at once (the lease names their fan-out run),
    instead of waiting for it and syncing the scope again; each scope is synced and counted once."""
    sim, base = estate
    settings = base.with_changes(scope_lease_wait=20.0)
    asyncio.run(sync_all(settings))
    (message,) = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=1)["Messages"]
    scopes = json.loads(message["Body"])["scopes"]
    # The copies race through the same setup to the leases; each holds a lease for three calls, so
    # a slow call (600 ms) keeps the first copy's leases held well past the second's arrival even
    # when the machine is loaded (200 ms failed about one run in five with 3 test workers on 2 cores).
    sim.set_faults(latency_ms=600)
    sim.calls.reset()

    async def deliver_twice() -> list[Any]:
        copy = RefreshMessage(message["MessageId"], message["Body"])
        return list(await asyncio.gather(refresh(settings, [copy]), refresh(settings, [copy])))

    results = asyncio.run(deliver_twice())

    assert sim.calls.count("drs", "DescribeRecoveryInstances") == len(scopes)
    counted = asyncio.run(get_sync_status(settings)).to_dict()["fanoutRun"]["finished"]
    assert counted == len(scopes)
    assert any(result.failed_message_ids for result in results)  # the copy that gave way comes back


def test_fanout_sweep_that_fails_after_taking_the_lease_releases_it(estate: Any, monkeypatch: Any) -> None:
    """A sweep that fails once it holds the full-sync lease (here the run record cannot be
    written) gives the lease back: the next schedule runs instead of answering "already running"
    for ``stale_after_seconds``."""
    from syncengine.core.errors import AwsError
    from syncengine.tables.status import StatusStore

    _sim, settings = estate
    real = StatusStore.start_fanout_run

    async def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        raise AwsError("the status table refused the run record", code="InternalServerError")

    monkeypatch.setattr(StatusStore, "start_fanout_run", refuse)
    with pytest.raises(AwsError):
        asyncio.run(sync_all(settings))

    async def holder() -> Any:
        async with open_runtime(settings) as rt:
            return await rt.status.full_sync_holder()

    assert asyncio.run(holder()) is None
    monkeypatch.setattr(StatusStore, "start_fanout_run", real)
    assert asyncio.run(sync_all(settings)).scopes_enqueued > 0  # no SYNC_IN_PROGRESS


def test_fanout_run_of_several_parts_counts_every_scope_and_finishes(
    sqs: Any, queue: WorkQueue, estate: Any, monkeypatch: Any
) -> None:
    """Parts of two scopes (one message each here): each part counts its own scopes, the run
    record only the parts' totals; the last part finishes the run, every scope counted once."""
    import syncengine.sync.fanout_groups as fanout_module

    monkeypatch.setattr(fanout_module, "FANOUT_PART_SCOPES", 2)
    sim, settings = estate

    started = asyncio.run(sync_all(settings))
    again = work(sqs, queue)

    assert started.scopes_enqueued == scope_count(sim)
    assert all(not o.failed for o in again)
    status = asyncio.run(get_sync_status(settings)).to_dict()
    assert status["status"] == "healthy"
    assert status["fanoutRun"]["finished"] == scope_count(sim)
    assert status["fanoutRun"]["parts"] == scope_count(sim) // 2
    assert status["scopesSynced"] == scope_count(sim)


def test_fanout_part_whose_report_was_lost_is_reported_by_a_redelivery(estate: Any, monkeypatch: Any) -> None:
    """The worker that counted a part's last scope died before adding the part to the run record:
    the message comes back, its count is refused (counted already), and the part's finished
    counts go to the run record then, once; the run finishes."""
    from syncengine.core.errors import AwsError
    from syncengine.sync.fanout import finish_scope
    from syncengine.tables.status import StatusStore

    _sim, settings = estate
    run = "0123456789abcdef"
    first, last = (ScopeResult(Scope("111111111111", r), ScopeOutcome.SUCCESS) for r in REGIONS)
    real = StatusStore._report_part

    async def dies(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise AwsError("the worker's invocation ended here", code="Timeout")

    async def count() -> tuple[Any, Any]:
        async with open_runtime(settings) as rt:
            await rt.status.start_fanout_run(run, 2, "2026-01-01T00:00:00Z", parts={0: 2})
            await finish_scope(rt, (run,), first)
            monkeypatch.setattr(StatusStore, "_report_part", dies)
            with pytest.raises(AwsError):
                await finish_scope(rt, (run,), last)
            monkeypatch.setattr(StatusStore, "_report_part", real)
            unfinished = await rt.status.fanout_run(consistent=True)
            await finish_scope(rt, (run,), last)  # SQS delivers the message again
            await finish_scope(rt, (run,), last)  # and once more: nothing more to add
            return unfinished, await rt.status.fanout_run(consistent=True)

    unfinished, record = asyncio.run(count())
    assert (unfinished["remaining"], unfinished["finished"]) == (2, 2)  # the part's count shows
    assert (record["remaining"], record["finished"], record["scopesSynced"]) == (0, 2, 2)
    summary = asyncio.run(get_sync_status(settings)).to_dict()
    assert summary["scopesSynced"] == 2


def test_fanout_sweep_follows_terminate_jobs_to_instances_terminated(sqs: Any, queue: WorkQueue, estate: Any) -> None:
    """With fan-out on the full sync is the sweep: it, like an in-process full run, asks DRS about
    the terminate jobs it noted and sets ``instancesTerminated`` once they completed."""
    from syncengine.terminate.instances import terminate_execution_instances
    from tests.integration.test_handlers_support import execution_item, launch_jobs, put, scan

    sim, settings = estate
    in_process = settings.with_changes(fanout="off")
    account = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    job = launch_jobs(sim.estate, account)[0]
    asyncio.run(put(settings, settings.tables.execution_history, [execution_item("exec-f", "plan-f", [job])]))
    assert asyncio.run(sync_all(in_process)).scopes_failed == 0
    body = asyncio.run(terminate_execution_instances(in_process, "exec-f"))
    assert body["totalTerminated"] > 0

    report = asyncio.run(sync_all(settings))

    assert report.scopes_enqueued == scope_count(sim)
    (item,) = [
        i for i in asyncio.run(scan(settings, settings.tables.execution_history)) if i["executionId"] == "exec-f"
    ]
    assert item["instancesTerminated"] is True
