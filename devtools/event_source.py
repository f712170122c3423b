"""A local SQS event source mapping: what Lambda's poller does with the work queue, on moto's SQS.

moto can attach a Lambda to a queue, but its trigger ignores ``batchItemFailures`` and deletes
nothing selectively, so the refresh path's partial batch responses would go untested. This poller
does what the event source mapping does
(https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html):

1. receive up to ``batch_size`` messages, gathering for at most ``batch_window_s`` (SQS returns
   at most 10 per ReceiveMessage call), long polling as Lambda's pollers do
   (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html: "Lambda uses long
   polling to poll a queue until it becomes active"): ``idle_wait_s`` while the queue is empty,
   the window's whole seconds left while gathering;
2. invoke the handler with the SQS event shape (``Records`` with ``messageId``,
   ``receiptHandle``, ``body``, ``attributes``, ``eventSource: aws:sqs``, ``eventSourceARN``);
3. with ``ReportBatchItemFailures``: delete every message except those the answer lists in
   ``batchItemFailures``; an answer that raises, or lists an identifier that is empty or not of
   the batch, fails the whole batch (nothing deleted);
4. leave failed messages alone: they return after the queue's visibility timeout.
The max receive count is the queue's: ``create_work_queue`` gives it the redrive policy of the
CloudFormation work queue, and SQS (moto implements it the same way) moves a message received
that many times to the dead-letter queue on the next receive; the mapping never does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]

SQS_EVENT_SOURCE = "aws:sqs"
MAX_MESSAGES_PER_RECEIVE = 10  # SQS's limit per ReceiveMessage call
MAX_WAIT_TIME_S = 20  # SQS's limit of WaitTimeSeconds (whole seconds)
DEFAULT_BATCH_SIZE = 10
DEFAULT_BATCH_WINDOW_S = 0.2


@dataclass(frozen=True)
class WorkQueue:
    """A work queue and its dead-letter queue, as ``create_work_queue`` made them."""

    url: str
    arn: str
    dead_letter_url: str
    dead_letter_arn: str
    region: str


def create_work_queue(sqs: Any, name: str, *, visibility_timeout_s: int = 30, max_receive_count: int = 3) -> WorkQueue:
    """The work queue with a dead-letter queue and the redrive policy of cfn/lambda-stack.yaml."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = _arn(sqs, dlq_url)
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
    url = sqs.create_queue(
        QueueName=name,
        Attributes={"VisibilityTimeout": str(visibility_timeout_s), "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    return WorkQueue(url, _arn(sqs, url), dlq_url, dlq_arn, sqs.meta.region_name)


def _arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def sqs_record(message: Mapping[str, Any], queue: WorkQueue) -> dict[str, Any]:
    """One received message in the shape Lambda hands a function (the ``Records`` item)."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {
            name: {_lower_first(k): v for k, v in value.items()}
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": SQS_EVENT_SOURCE,
        "eventSourceARN": queue.arn,
        "awsRegion": queue.region,
    }


def _lower_first(key: str) -> str:
    return key[:1].lower() + key[1:]


@dataclass(frozen=True)
class BatchOutcome:
    """One invocation: the batch's message ids, the ones deleted, the ones left to the timeout."""

    message_ids: tuple[str, ...]
    deleted: tuple[str, ...]
    failed: tuple[str, ...]
    error: str | None = None


def failed_identifiers(answer: Any, message_ids: tuple[str, ...]) -> tuple[str, ...]:
    """The messages an answer reports as failed; every message when the answer is not a valid
    partial batch response (Lambda then treats the whole batch as failed)."""
    if not isinstance(answer, Mapping) or "batchItemFailures" not in answer:
        return ()
    failures = answer["batchItemFailures"]
    if failures is None:
        return ()
    if not isinstance(failures, list):
        return message_ids
    ids = [f.get("itemIdentifier") if isinstance(f, Mapping) else None for f in failures]
    if any(not isinstance(i, str) or i not in message_ids for i in ids):
        return message_ids
    return tuple(mid for mid in message_ids if mid in ids)


class EventSourcePoller:
    """Polls one queue and invokes ``handler`` with SQS batches, as an event source mapping with
    ``ReportBatchItemFailures`` does."""

    def __init__(
        self,
        sqs: Any,
        queue: WorkQueue,
        handler: Handler,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_window_s: float = DEFAULT_BATCH_WINDOW_S,
        idle_wait_s: int = 0,
        context: Any = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not 0 <= idle_wait_s <= MAX_WAIT_TIME_S:
            raise ValueError(f"idle_wait_s must be 0 to {MAX_WAIT_TIME_S}")
        self.sqs, self.queue, self.handler = sqs, queue, handler
        self.batch_size, self.batch_window_s, self.context = batch_size, batch_window_s, context
        self.idle_wait_s = idle_wait_s

    def receive_batch(self) -> list[dict[str, Any]]:
        """Up to ``batch_size`` messages, gathered for at most ``batch_window_s`` from the first
        one received (an empty queue answers after ``idle_wait_s``: nothing to invoke)."""
        messages: list[dict[str, Any]] = []
        deadline = float("inf")
        while len(messages) < self.batch_size:
            wait = self.idle_wait_s if not messages else int(max(0.0, deadline - time.monotonic()))
            answer = self.sqs.receive_message(
                QueueUrl=self.queue.url,
                MaxNumberOfMessages=min(MAX_MESSAGES_PER_RECEIVE, self.batch_size - len(messages)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=min(wait, MAX_WAIT_TIME_S),
            )
            received = answer.get("Messages") or []
            if not messages and not received:
                break
            if not messages:
                deadline = time.monotonic() + self.batch_window_s
            messages += received
            if time.monotonic() >= deadline:
                break
            if not received:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return messages

    def invoke(self, messages: list[dict[str, Any]]) -> BatchOutcome:
        """Invoke the handler with one batch; delete what succeeded."""
        records = [sqs_record(m, self.queue) for m in messages]
        ids = tuple(r["messageId"] for r in records)
        try:
            failed = failed_identifiers(self.handler({"Records": records}, self.context), ids)
            error = None
        except Exception as exc:  # the function failed: Lambda retries the whole batch
            failed, error = ids, f"{type(exc).__name__}: {exc}"
        done = [r for r in records if r["messageId"] not in failed]
        for start in range(0, len(done), MAX_MESSAGES_PER_RECEIVE):
            chunk = done[start : start + MAX_MESSAGES_PER_RECEIVE]
            entries = [{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)]
            self.sqs.delete_message_batch(QueueUrl=self.queue.url, Entries=entries)
        return BatchOutcome(ids, tuple(r["messageId"] for r in done), failed, error)

    def poll_once(self) -> BatchOutcome | None:
        """One receive-invoke-delete round; None when the queue had nothing visible."""
        messages = self.receive_batch()
        return self.invoke(messages) if messages else None

    def run_until_idle(self, *, idle_s: float = 0.0, timeout_s: float = 60.0) -> list[BatchOutcome]:
        """Poll until nothing arrived for ``idle_s`` (or ``timeout_s`` passed); every batch's outcome."""
        outcomes: list[BatchOutcome] = []
        stop_at = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < stop_at:
            outcome = self.poll_once()
            if outcome is not None:
                outcomes.append(outcome)
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= idle_s:
                break
        return outcomes


__all__ = [
    "BatchOutcome",
    "EventSourcePoller",
    "WorkQueue",
    "create_work_queue",
    "failed_identifiers",
    "sqs_record",
]
