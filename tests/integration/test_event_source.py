"""devtools.event_source on moto's SQS (server mode): the local poller does what Lambda's SQS
event source mapping does. Receive in batches, invoke with the SQS event shape, delete what
succeeded, leave reported failures to the visibility timeout, a failed invocation deletes nothing,
and the queue's redrive policy moves a message received too often to the dead-letter queue. The
last test drives the refresh function with the simulator's own events through the queue."""

from __future__ import annotations

import asyncio
import json
import threading
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
from syncengine.core.models import RunStatus
from syncengine.sync.engine import sync_all
from tests.events_loader import FakeLambdaContext
from tests.integration.engine_support import cache_items, engine_settings, seed

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend

REGION = "us-east-1"
VISIBILITY_S = 1


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
def queue(sqs: Any) -> WorkQueue:
    name = f"work-{uuid.uuid4().hex[:8]}"
    return create_work_queue(sqs, name, visibility_timeout_s=VISIBILITY_S, max_receive_count=2)


class Recorder:
    """A handler that records each batch and fails the messages whose body says so."""

    def __init__(self, raise_error: bool = False) -> None:
        self.batches: list[dict[str, Any]] = []
        self.raise_error = raise_error

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.batches.append(event)
        if self.raise_error:
            raise RuntimeError("handler crashed")
        failed = [r["messageId"] for r in event["Records"] if json.loads(r["body"]).get("fail")]
        return {"batchItemFailures": [{"itemIdentifier": mid} for mid in failed]}


def send(sqs: Any, queue: WorkQueue, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(body))


def depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_event_source_invokes_with_the_sqs_event_shape(sqs: Any, queue: WorkQueue) -> None:
    handler = Recorder()
    send(sqs, queue, {"n": 1})

    EventSourcePoller(sqs, queue, handler).poll_once()

    (record,) = handler.batches[0]["Records"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue.arn
    assert record["awsRegion"] == REGION
    assert json.loads(record["body"]) == {"n": 1}
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["receiptHandle"] and record["messageId"]


def test_event_source_batches_up_to_the_batch_size(sqs: Any, queue: WorkQueue) -> None:
    handler = Recorder()
    send(sqs, queue, *({"n": n} for n in range(15)))

    outcomes = EventSourcePoller(sqs, queue, handler, batch_size=12, batch_window_s=0.5).run_until_idle()

    assert sorted(len(o.message_ids) for o in outcomes) == [3, 12]


def test_event_source_long_polls_a_message_sent_while_it_waits(sqs: Any, queue: WorkQueue) -> None:
    """With ``idle_wait_s`` the receive waits on the empty queue (SQS long polling) and returns
    the message sent meanwhile, instead of answering empty at once."""
    handler = Recorder()
    poller = EventSourcePoller(sqs, queue, handler, idle_wait_s=5)
    sender = threading.Timer(0.5, send, args=(sqs, queue, {"n": 1}))
    sender.start()
    try:
        outcome = poller.poll_once()
    finally:
        sender.join()

    assert outcome is not None and len(outcome.deleted) == 1


def test_event_source_refuses_a_long_poll_longer_than_sqs_allows(sqs: Any, queue: WorkQueue) -> None:
    with pytest.raises(ValueError, match="idle_wait_s"):
        EventSourcePoller(sqs, queue, Recorder(), idle_wait_s=21)


def test_event_source_deletes_a_batch_that_succeeded(sqs: Any, queue: WorkQueue) -> None:
    send(sqs, queue, {"n": 1}, {"n": 2})

    EventSourcePoller(sqs, queue, Recorder()).run_until_idle()

    assert depth(sqs, queue.url) == 0


def test_event_source_keeps_only_the_reported_failures(sqs: Any, queue: WorkQueue) -> None:
    send(sqs, queue, {"n": 1}, {"n": 2, "fail": True})
    poller = EventSourcePoller(sqs, queue, Recorder())

    outcome = poller.poll_once()

    assert outcome is not None and len(outcome.deleted) == 1 and len(outcome.failed) == 1
    assert depth(sqs, queue.url) == 1
    assert poller.poll_once() is None  # invisible until the visibility timeout passes
    time.sleep(VISIBILITY_S + 0.2)
    again = poller.poll_once()
    assert again is not None and again.failed == outcome.failed


def test_event_source_deletes_nothing_when_the_function_fails(sqs: Any, queue: WorkQueue) -> None:
    send(sqs, queue, {"n": 1}, {"n": 2})

    outcome = EventSourcePoller(sqs, queue, Recorder(raise_error=True)).poll_once()

    assert outcome is not None and outcome.deleted == () and len(outcome.failed) == 2
    assert outcome.error == "RuntimeError: handler crashed"
    assert depth(sqs, queue.url) == 2


def test_event_source_moves_a_message_past_its_max_receive_count_to_the_dead_letter_queue(
    sqs: Any, queue: WorkQueue
) -> None:
    send(sqs, queue, {"fail": True})
    poller = EventSourcePoller(sqs, queue, Recorder())

    received = []
    for _ in range(3):
        outcome = poller.poll_once()
        received.append(outcome is not None)
        time.sleep(VISIBILITY_S + 0.2)

    assert received == [True, True, False]  # max receive count 2: the third receive redrives it
    assert depth(sqs, queue.url) == 0
    assert depth(sqs, queue.dead_letter_url) == 1


# ---------------------------------------------------------------------------------------------
# The refresh function through the queue


@pytest.fixture
def synced(ddb: Any, make_simulator: Any) -> Iterator[tuple[Any, SyncSettings]]:
    sim = make_simulator(accounts=2, regions=(REGION,), instances_per_scope=4, seed=5)
    settings = engine_settings(ddb, sim, scope_lease_wait=0.5)

    async def prepare() -> None:
        await seed(settings, sim.estate)
        assert (await sync_all(settings)).status is RunStatus.SUCCESS

    asyncio.run(prepare())
    sim.events(drain=True)
    dependencies.configure(settings=settings)
    yield sim, settings
    dependencies.reset()


def test_event_source_refreshes_the_cache_from_a_queued_ec2_event(
    sqs: Any, queue: WorkQueue, synced: tuple[Any, SyncSettings]
) -> None:
    sim, settings = synced
    account = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    ri = sorted(sim.estate.recovery_instances(account, REGION), key=lambda r: r["sourceServerID"])[0]
    sim.estate.update_ec2(ri["ec2InstanceID"], state="stopped")
    send(sqs, queue, *sim.events(drain=True))

    outcomes = EventSourcePoller(sqs, queue, lambda_handler, context=FakeLambdaContext()).run_until_idle()

    assert [o.failed for o in outcomes] == [()]
    assert depth(sqs, queue.url) == 0
    record = asyncio.run(cache_items(settings))[ri["sourceServerID"]]
    assert record["ec2InstanceState"] == "stopped"
