"""The SQS side of a refresh batch: its messages (id, body, when SQS received them, the receipt
handle and queue), the newest moment a scope's messages describe, and bringing the messages of a
scope busy with another sync back soon (``ChangeMessageVisibility``) instead of after the queue's
visibility timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncengine.core.errors import AwsError
from syncengine.core.logging import get_logger
from syncengine.core.retry import CallContext
from syncengine.refresh.events import ScopeWork

if TYPE_CHECKING:  # pragma: no cover
    from syncengine.runtime import Runtime

log = get_logger(__name__)


@dataclass(frozen=True)
class RefreshMessage:
    """One message of a batch: its id (SQS ``messageId``) and its body (JSON text or a mapping);
    for SQS also when it was sent (``SentTimestamp``, epoch ms), its receipt handle and its queue's
    ARN (to bring a busy scope's message back soon: ``ChangeMessageVisibility``)."""

    message_id: str
    body: Any
    sent_at_ms: int | None = None
    receipt_handle: str | None = None
    queue_arn: str | None = None


# An EventBridge ``time`` has second precision: the change happened within the second after it.
EVENT_TIME_RESOLUTION_MS = 1000


def newest_event_ms(work: ScopeWork, messages: dict[str, RefreshMessage]) -> int | None:
    """The latest moment any of the scope's messages may describe (epoch ms): an event's own time
    (plus its resolution), else when SQS received the message; None when one is not known."""
    newest = 0
    for mid in work.message_ids:
        event_ms = work.event_times.get(mid)
        moment = event_ms + EVENT_TIME_RESOLUTION_MS if event_ms is not None else None
        if moment is None:
            message = messages.get(mid)
            moment = message.sent_at_ms if message is not None else None
        if moment is None:
            return None
        newest = max(newest, moment)
    return newest


def queue_url_of(queue_arn: str) -> str | None:
    """``arn:<partition>:sqs:<region>:<account>:<name>`` -> the queue's URL (None if not one)."""
    parts = queue_arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        return None
    region, account, name = parts[3], parts[4], parts[5]
    return f"https://sqs.{region}.amazonaws.com/{account}/{name}"


async def retry_busy_soon(rt: Runtime, delays: dict[str, int], messages: dict[str, RefreshMessage]) -> None:
    """Bring the messages of busy scopes back in ``retry_after`` seconds instead of the queue's
    visibility timeout (minutes): ChangeMessageVisibility on the receipt handle this invocation
    holds. A message of several scopes comes back once, at the earliest. When it cannot (no SQS
    record, or the call fails: the role may lack sqs:ChangeMessageVisibility), the message is
    still reported in batchItemFailures and comes back after the visibility timeout."""
    for mid, seconds in delays.items():
        message = messages.get(mid)
        url = queue_url_of(message.queue_arn) if message is not None and message.queue_arn else None
        if message is None or url is None or not message.receipt_handle:
            log.info("refresh_busy_retry_at_visibility_timeout", message_id=mid, reason="not an SQS message")
            continue
        region = str(message.queue_arn).split(":")[3]
        context = CallContext("sqs:ChangeMessageVisibility", region=region)
        try:
            sqs = await rt.aws.client("sqs", region)
            await rt.aws.call(
                sqs,
                "change_message_visibility",
                context,
                QueueUrl=url,
                ReceiptHandle=message.receipt_handle,
                VisibilityTimeout=seconds,
            )
        except AwsError as exc:
            log.warning(
                "refresh_busy_retry_at_visibility_timeout",
                message_id=mid,
                error_type=exc.error_type,
                error=str(exc),
                note="the message comes back after the queue's visibility timeout instead",
            )
            continue
        log.info("refresh_busy_retry_soon", message_id=mid, retry_after_s=seconds)


__all__ = ["EVENT_TIME_RESOLUTION_MS", "RefreshMessage", "newest_event_ms", "queue_url_of", "retry_busy_soon"]
