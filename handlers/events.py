"""What an incoming event is, and read-only views of the ones that are not API Gateway requests
(those are Powertools' own ``APIGatewayProxyEvent`` / ``APIGatewayProxyEventV2``)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.data_classes.common import DictWrapper

SCHEDULED_EVENT = "Scheduled Event"
EVENTS_SOURCE = "aws.events"


class EventKind(StrEnum):
    DIRECT = "direct"  # {"operation": ...}: the CLI/SDK, the schedule rule's Input, a self-invoke
    SCHEDULED = "scheduled"  # a native EventBridge "Scheduled Event"
    API_V1 = "api_v1"  # API Gateway REST API (payload format 1.0)
    API_V2 = "api_v2"  # API Gateway HTTP API (payload format 2.0)
    UNKNOWN = "unknown"


def classify_event(event: Any) -> EventKind:
    if not isinstance(event, Mapping):
        return EventKind.UNKNOWN
    if "operation" in event:
        return EventKind.DIRECT
    if event.get("source") == EVENTS_SOURCE and event.get("detail-type") == SCHEDULED_EVENT:
        return EventKind.SCHEDULED
    context = event.get("requestContext")
    if isinstance(context, Mapping):
        if event.get("version") == "2.0" and isinstance(context.get("http"), Mapping):
            return EventKind.API_V2
        if isinstance(event.get("httpMethod"), str) and isinstance(event.get("path"), str):
            return EventKind.API_V1
    return EventKind.UNKNOWN


def is_api(kind: EventKind) -> bool:
    return kind in (EventKind.API_V1, EventKind.API_V2)


class DirectInvocationEvent(DictWrapper):
    """``{"operation": ..., ...}``. Properties give raw values: the operations validate them."""

    @property
    def operation(self) -> Any:
        return self.get("operation")

    @property
    def account_id(self) -> Any:
        return self.get("accountId")

    @property
    def region(self) -> Any:
        return self.get("region")

    @property
    def plan_id(self) -> Any:
        return self.get("planId")

    @property
    def trigger(self) -> Any:
        """Who sent it when nobody waits for the answer: ``self-invoke`` (the API's background full
        sync), ``schedule`` (a schedule rule whose Input says so); absent for callers that read
        the answer."""
        return self.get("trigger")

    @property
    def execution_id(self) -> Any:
        return self.get("executionId")


class WaveCompletedEvent(DirectInvocationEvent):
    """``{"operation": "wave_completed", "executionId", "planId", "waveNumber", "wave"?}``."""

    @property
    def wave_number(self) -> Any:
        return self.get("waveNumber")

    @property
    def wave(self) -> Any:
        return self.get("wave")


class ScheduledEvent(EventBridgeEvent):
    """A native EventBridge schedule event (``source`` ``aws.events``)."""

    @property
    def rule_arn(self) -> str | None:
        resources = self.get("resources")
        return str(resources[0]) if isinstance(resources, list) and resources else None


def operation_name(event: DirectInvocationEvent) -> str:
    """The operation as text for messages and logs (junk is shown briefly, never trusted)."""
    operation = event.operation
    text = operation if isinstance(operation, str) else repr(operation)
    return text[:100]
