"""handlers.refresh end to end: the simulator records the EventBridge events of what it changes,
the tests deliver them as real-shaped SQS batches (or directly), and the cache on DynamoDB (moto
and dynalite) follows within the one invocation. Targeted: DRS and EC2 are asked about the named
servers only, other records are never touched, unknown instances cost no AWS call."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from handlers import dependencies
from handlers.refresh import lambda_handler
from syncengine.core.config import SyncSettings
from syncengine.core.models import RunStatus, Scope
from syncengine.sync.engine import open_runtime, sync_all
from tests.events_loader import FakeLambdaContext, load_event
from tests.integration.engine_support import cache_items, engine_settings, put_raw, seed
from tests.integration.test_handlers_support import execution_item

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend

REGION = "us-east-1"
LAUNCH_RESULT = "DRS Source Server Launch Result"
EC2_STATE = "EC2 Instance State-change Notification"


@pytest.fixture
def sim(make_simulator: Any) -> Any:
    return make_simulator(accounts=3, regions=(REGION,), instances_per_scope=8, seed=23, max_servers_per_job=4)


@pytest.fixture
def synced(ddb: Any, sim: Any) -> Iterator[SyncSettings]:
    """Tables seeded from the estate and filled by one full sync; the handler pointed at them."""
    settings = engine_settings(ddb, sim, scope_lease_wait=0.5)

    async def prepare() -> None:
        await seed(settings, sim.estate)
        report = await sync_all(settings)
        assert report.status is RunStatus.SUCCESS

    asyncio.run(prepare())
    sim.events(drain=True)
    sim.calls.reset()
    dependencies.configure(settings=settings)
    yield settings
    dependencies.reset()


def targets(sim: Any) -> list[str]:
    return [a.account_id for a in sim.estate.accounts if not a.is_hub]


def live(sim: Any, account_id: str) -> dict[str, dict[str, Any]]:
    """sourceServerId -> the recovery instance DRS reports for it."""
    return {ri["sourceServerID"]: ri for ri in sim.estate.recovery_instances(account_id, REGION)}


def cache(settings: SyncSettings) -> dict[str, dict[str, Any]]:
    return asyncio.run(cache_items(settings))


def sqs_batch(*bodies: Any) -> dict[str, Any]:
    """An SQS batch shaped like tests/events/sqs_refresh_batch.json, message ids m0, m1, ..."""
    template = load_event("sqs_refresh_batch")["Records"][0]
    records = []
    for index, body in enumerate(bodies):
        text = body if isinstance(body, str) else json.dumps(body)
        records.append({**template, "messageId": f"m{index}", "body": text})
    return {"Records": records}


def of_type(events: list[dict[str, Any]], detail_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["detail-type"] == detail_type]


def deliver(*bodies: Any) -> list[str]:
    """One SQS batch through the handler; the ids of the messages it reports as failed."""
    answer = lambda_handler(sqs_batch(*bodies), FakeLambdaContext())
    return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]


def drs_calls(sim: Any, operation: str, account_id: str | None = None) -> int:
    return sim.calls.count(service="drs", operation=operation, account_id=account_id)


def unchanged_except(before: dict[str, dict], after: dict[str, dict], changed: set[str]) -> bool:
    return {k: v for k, v in before.items() if k not in changed} == {k: v for k, v in after.items() if k not in changed}


def test_refresh_launch_result_replaces_the_record_attributed_by_the_events_job(sim: Any, synced: SyncSettings) -> None:
    """A relaunched server: the new recovery instance, its execution found by the event's job id on
    the first refresh, DRS asked about that server only, no other record written."""
    account = targets(sim)[0]
    server = sorted(live(sim, account))[0]
    before = cache(synced)
    new_instance = sim.estate.relaunch(server)
    launch = of_type(sim.events(drain=True), LAUNCH_RESULT)[0]
    job = next(j for j in sim.estate.jobs(account, REGION) if j["jobID"] == launch["detail"]["job-id"])
    wave = {**job, "accountId": account, "region": REGION}
    asyncio.run(put_raw(synced, synced.tables.execution_history, [execution_item("exec-relaunch", "plan-r", [wave])]))
    sim.calls.reset()

    summary = lambda_handler(launch, FakeLambdaContext())

    after = cache(synced)
    assert after[server]["recoveryInstanceId"] == new_instance
    assert after[server]["attribution"] == "job"
    assert after[server]["sourceExecutionId"] == "exec-relaunch"
    report = summary["scopes"][0]["report"]
    assert (report["instancesUpdated"], report["instancesUnchanged"], report["instancesDeleted"]) == (1, 0, 0)
    assert drs_calls(sim, "DescribeRecoveryInstances") == 1
    assert unchanged_except(before, after, {server})


def test_refresh_ec2_state_change_updates_that_one_record(sim: Any, synced: SyncSettings) -> None:
    account = targets(sim)[0]
    server, instance = sorted(live(sim, account).items())[1]
    before = cache(synced)
    sim.estate.update_ec2(instance["ec2InstanceID"], state="stopped")
    events = sim.events(drain=True)

    assert deliver(*events) == []

    after = cache(synced)
    # EC2's lower-case state; DRS's own upper-case value follows it, kept beside it.
    assert (after[server]["ec2InstanceState"], after[server]["drsInstanceState"]) == ("stopped", "STOPPED")
    assert unchanged_except(before, after, {server})


def test_refresh_deletes_only_the_asked_about_record_of_a_terminated_instance(sim: Any, synced: SyncSettings) -> None:
    """Two instances terminated, only one event delivered: the other record waits for its own
    event (or the sweep); a targeted sync never deletes what it was not asked about."""
    account = targets(sim)[0]
    (first, first_ri), (second, second_ri) = sorted(live(sim, account).items())[:2]
    sim.estate.terminate(first_ri["recoveryInstanceID"])
    first_event = sim.events(drain=True)
    sim.estate.terminate(second_ri["recoveryInstanceID"])

    assert deliver(*first_event) == []

    after = cache(synced)
    assert first not in after
    assert second in after


def test_refresh_unknown_ec2_instance_makes_no_aws_call(sim: Any, synced: SyncSettings) -> None:
    event = load_event("eventbridge_ec2_state_change")
    event.update(account=targets(sim)[0], region=REGION)
    event["detail"]["instance-id"] = "i-0fedcba9876543210"

    summary = lambda_handler(event, FakeLambdaContext())

    assert summary["scopes"][0]["status"] == "NOTHING_TO_SYNC"
    assert sim.calls.count() == 0


def test_refresh_coalesces_a_batch_into_one_targeted_sync_per_scope(sim: Any, synced: SyncSettings) -> None:
    first, second = targets(sim)
    relaunched = {first: sorted(live(sim, first))[:3], second: sorted(live(sim, second))[:1]}
    new = {server: sim.estate.relaunch(server) for servers in relaunched.values() for server in servers}
    events = sim.events(drain=True)
    assert len(events) == 3 * len(new)  # old instance terminated, new one running, launch result

    assert deliver(*events) == []

    after = cache(synced)
    assert {server: after[server]["recoveryInstanceId"] for server in new} == new
    assert drs_calls(sim, "DescribeRecoveryInstances", first) == 1
    assert drs_calls(sim, "DescribeRecoveryInstances", second) == 1
    assert drs_calls(sim, "DescribeSourceServers") == 2


def test_refresh_batch_acknowledges_malformed_and_reports_only_the_failing_scope(
    sim: Any, synced: SyncSettings
) -> None:
    healthy, denied = targets(sim)
    server = sorted(live(sim, healthy))[0]
    new_instance = sim.estate.relaunch(server)
    launch = of_type(sim.events(drain=True), LAUNCH_RESULT)[0]
    sim.set_faults(access_denied_accounts=[denied])
    denied_server = sorted(live(sim, denied))[0]
    before = cache(synced)

    failed = deliver(
        "not json {",
        launch,
        {"accountId": denied, "region": REGION, "sourceServerIds": [denied_server]},
        {"source": "aws.s3", "detail-type": "Object Created"},
    )

    assert failed == ["m2"]
    after = cache(synced)
    assert after[server]["recoveryInstanceId"] == new_instance
    assert after[denied_server] == before[denied_server]


def test_refresh_takes_the_scope_lease_like_any_sync(sim: Any, synced: SyncSettings) -> None:
    """While another sync holds the scope's lease the refresh does not write; SQS retries it."""
    account = targets(sim)[0]
    server, instance = sorted(live(sim, account).items())[0]
    sim.estate.update_ec2(instance["ec2InstanceID"], state="stopped")
    events = sim.events(drain=True)

    async def hold_lease() -> None:
        async with open_runtime(synced) as rt:
            assert await rt.status.acquire_scope_lease(Scope(account, REGION), "another-sync", wait=0)

    asyncio.run(hold_lease())

    assert deliver(*events) == ["m0"]
    assert cache(synced)[server]["ec2InstanceState"] == "running"
    assert drs_calls(sim, "DescribeRecoveryInstances") == 0


def test_refresh_failback_event_finds_its_server_through_the_cache(sim: Any, synced: SyncSettings) -> None:
    account = targets(sim)[0]
    server, instance = sorted(live(sim, account).items())[2]
    sim.estate.update_ec2(instance["ec2InstanceID"], name="failed-back")
    sim.events(drain=True)
    event = load_event("eventbridge_drs_failback_state_change")
    event.update(account=account, region=REGION)
    event["resources"] = [f"arn:aws:drs:{REGION}:{account}:recovery-instance/{instance['recoveryInstanceID']}"]

    summary = lambda_handler(event, FakeLambdaContext())

    assert summary["scopes"][0]["serverIds"] == [server]
    assert cache(synced)[server]["name"] == "failed-back"


def test_refresh_failback_event_in_the_ri_form_is_accepted_and_mapped(sim: Any, synced: SyncSettings) -> None:
    """AWS's sample failback event names ``recovery-instance/ri-...``: acknowledged, never
    rejected; the cache maps the ``i-`` form of the same suffix to its server."""
    account = targets(sim)[0]
    server, instance = sorted(live(sim, account).items())[3]
    sim.estate.update_ec2(instance["ec2InstanceID"], name="failed-back-ri")
    sim.events(drain=True)
    event = load_event("eventbridge_drs_failback_state_change_ri")
    event.update(account=account, region=REGION)
    suffix = instance["recoveryInstanceID"].removeprefix("i-")
    event["resources"] = [f"arn:aws:drs:{REGION}:{account}:recovery-instance/ri-{suffix}"]

    summary = lambda_handler(event, FakeLambdaContext())

    assert summary["rejectedMessages"] == 0
    assert summary["scopes"][0]["serverIds"] == [server]
    assert cache(synced)[server]["name"] == "failed-back-ri"


def test_refresh_event_of_an_unconfigured_account_is_acknowledged(sim: Any, synced: SyncSettings) -> None:
    event = load_event("eventbridge_drs_launch_result")  # account 111122223333 is no target

    assert deliver(event) == []
    assert drs_calls(sim, "DescribeRecoveryInstances") == 0


def test_refresh_scope_message_without_ids_syncs_the_whole_scope(sim: Any, synced: SyncSettings) -> None:
    account = targets(sim)[0]
    launched = set(sim.estate.launch(account, REGION, 2))

    assert deliver({"accountId": account, "region": REGION, "reason": "manual"}) == []

    assert launched <= {item["recoveryInstanceId"] for item in cache(synced).values()}


def test_refresh_wave_launch_events_bring_the_wave_into_the_cache_attributed_by_job(
    sim: Any, synced: SyncSettings
) -> None:
    """The whole path of a drill wave: DRS launches, the orchestration has recorded the wave's job,
    the launch events arrive, and the first refresh caches every server with its execution."""
    account = targets(sim)[1]
    launched = set(sim.estate.launch(account, REGION, 3))
    job = next(
        {**j, "accountId": account, "region": REGION}
        for j in sim.estate.jobs(account, REGION)
        if {p.get("recoveryInstanceID") for p in j["participatingServers"]} == launched
    )
    asyncio.run(put_raw(synced, synced.tables.execution_history, [execution_item("exec-wave", "plan-w", [job])]))
    events = sim.events(drain=True)

    assert deliver(*of_type(events, LAUNCH_RESULT)) == []

    records = {i["recoveryInstanceId"]: i for i in cache(synced).values() if i["recoveryInstanceId"] in launched}
    assert set(records) == launched
    assert {(r["sourceExecutionId"], r["attribution"]) for r in records.values()} == {("exec-wave", "job")}


# -- a scope busy with another sync ----------------------------------------------------------------


def hold_scope_lease(settings: SyncSettings, scope: Scope, *, whole_scope: bool) -> None:
    """What a sweep's scope sync does first: take the scope's lease (here held on and on)."""

    async def hold() -> None:
        async with open_runtime(settings) as rt:
            assert await rt.status.acquire_scope_lease(scope, "sweep-run", wait=0, whole_scope=whole_scope)

    asyncio.run(hold())


def emitted_sync_errors(capsys: Any) -> list[int]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"SyncErrors"' in line]
    return [sum(line["SyncErrors"]) for line in lines]


def test_refresh_busy_with_a_sweep_that_read_after_the_event_is_satisfied(
    sim: Any, synced: SyncSettings, capsys: Any
) -> None:
    """The sweep took the scope's lease after the event happened: its fresh read covers the
    event. Acknowledged at once (no retry, no DRS call, no SyncErrors), never a failed scope."""
    dependencies.configure(settings=synced.with_changes(emit_metrics=True))
    account = targets(sim)[0]
    _server, instance = sorted(live(sim, account).items())[0]
    sim.estate.update_ec2(instance["ec2InstanceID"], state="stopped")
    (event,) = sim.events(drain=True)
    event["time"] = "2020-01-01T00:00:00Z"  # long before the sweep's lease
    hold_scope_lease(synced, Scope(account, REGION), whole_scope=True)
    capsys.readouterr()

    answer = lambda_handler(sqs_batch(event), FakeLambdaContext())

    assert answer["batchItemFailures"] == []
    assert drs_calls(sim, "DescribeRecoveryInstances") == 0
    assert sum(emitted_sync_errors(capsys)) == 0


def test_refresh_busy_with_a_sync_that_read_before_the_event_comes_back_soon(
    sim: Any, synced: SyncSettings, moto_endpoint: str, capsys: Any
) -> None:
    """The holder read the scope before the event (or syncs only some servers): the message is
    not a failure (no SyncErrors) and comes back in ``busy_retry_seconds`` (SQS
    ChangeMessageVisibility), not after the queue's 10-minute visibility timeout."""
    import boto3

    from devtools.event_source import create_work_queue

    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)
    queue = create_work_queue(sqs, f"busy-{uuid.uuid4().hex[:8]}", visibility_timeout_s=600)
    settings = synced.with_changes(
        emit_metrics=True, busy_retry_seconds=1, endpoint_urls=(*synced.endpoint_urls, ("sqs", moto_endpoint))
    )
    dependencies.configure(settings=settings)
    account = targets(sim)[0]
    hold_scope_lease(settings, Scope(account, REGION), whole_scope=True)  # before the event
    _server, instance = sorted(live(sim, account).items())[0]
    sim.estate.update_ec2(instance["ec2InstanceID"], state="stopped")
    (event,) = sim.events(drain=True)
    sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(event))
    (message,) = sqs.receive_message(QueueUrl=queue.url, AttributeNames=["All"])["Messages"]
    record = {
        **load_event("sqs_refresh_batch")["Records"][0],
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "eventSourceARN": queue.arn,
    }
    record["attributes"] = {**record["attributes"], "SentTimestamp": message["Attributes"]["SentTimestamp"]}
    capsys.readouterr()

    answer = lambda_handler({"Records": [record]}, FakeLambdaContext())

    assert answer["batchItemFailures"] == [{"itemIdentifier": message["MessageId"]}]
    assert sum(emitted_sync_errors(capsys)) == 0
    time.sleep(1.5)
    again = sqs.receive_message(QueueUrl=queue.url, WaitTimeSeconds=2).get("Messages") or []
    assert [m["MessageId"] for m in again] == [message["MessageId"]]


def test_refresh_batch_deadline_bounds_the_work_before_the_scopes_syncs(
    sim: Any, synced: SyncSettings, monkeypatch: Any
) -> None:
    """The batch's deadline covers its own reads before the per-scope runs (here the target
    accounts, stuck): the refresh answers in time, the scope failed (its message comes back),
    nothing written."""
    import anyio

    from syncengine.refresh import batch as refresh_module
    from syncengine.refresh.batch import RefreshMessage, RefreshStatus, refresh

    async def stuck(*args: Any, **kwargs: Any) -> Any:
        await anyio.sleep(60)

    monkeypatch.setattr(refresh_module, "load_targets", stuck)
    account = targets(sim)[0]
    message = RefreshMessage("m0", {"accountId": account, "region": REGION, "reason": "manual"})

    async def bounded() -> Any:
        with anyio.fail_after(6):
            return await refresh(synced.with_changes(deadline_seconds=2.0), [message])

    started = time.monotonic()
    result = asyncio.run(bounded())

    assert time.monotonic() - started < 4
    assert [s.status for s in result.scopes] == [RefreshStatus.FAILED]
    assert result.failed_message_ids == ["m0"]
