"""The refresh function: keeps the cache fresh between schedules from DRS and EC2 events.

Accepts an SQS batch (the hub's work queue; bodies are EventBridge events or scope messages) or
one EventBridge event / scope message invoked directly. For SQS it answers
``{"batchItemFailures": [{"itemIdentifier": messageId}]}`` with only the messages whose scope's
sync failed (the event source mapping needs ``ReportBatchItemFailures``); malformed messages are
logged and acknowledged. Parsing, coalescing and syncing are ``syncengine.refresh.batch``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes import SQSEvent

from handlers import dependencies
from handlers.dispatch import start_invocation
from syncengine.aws.clients import preload_service_models
from syncengine.core.logging import configure_logging, get_logger
from syncengine.core.resident import run_blocking
from syncengine.refresh.batch import RefreshMessage

configure_logging()
log = get_logger(__name__)
# In the init phase: the settings, and the DRS/EC2/STS models every batch's clients are built from.
preload_service_models(dependencies.current().settings)

SQS_EVENT_SOURCE = "aws:sqs"
DIRECT_MESSAGE_ID = "direct"


def is_sqs_batch(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, Mapping) else None
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, Mapping) and r.get("eventSource") == SQS_EVENT_SOURCE for r in records)
    )


def _sent_at_ms(attributes: Any) -> int | None:
    """The record's ``SentTimestamp`` (epoch ms); None when absent or not a number: a record
    without it (a hand-built event, a test's) is still refreshed, only never taken as covered by
    another sync's read."""
    try:
        return int(attributes.get("SentTimestamp"))
    except (AttributeError, TypeError, ValueError):
        return None


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    start_invocation(context)
    sqs = is_sqs_batch(event)
    if sqs:
        messages = [
            RefreshMessage(
                record.message_id,
                record.body,
                sent_at_ms=_sent_at_ms(record.get("attributes")),
                receipt_handle=record.receipt_handle,
                queue_arn=record.event_source_arn,
            )
            for record in SQSEvent(dict(event)).records
        ]
    else:
        messages = [RefreshMessage(DIRECT_MESSAGE_ID, event)]
    deps = dependencies.current()
    result = run_blocking(deps.engine.refresh, dependencies.deadline_from_lambda(deps.settings, context), messages)
    if sqs:
        return {"batchItemFailures": [{"itemIdentifier": mid} for mid in result.failed_message_ids]}
    return result.to_dict()
