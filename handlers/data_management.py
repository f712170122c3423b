"""The data-management function: the 5-minute schedule, every direct operation, and the five
API Gateway routes (REST v1 and HTTP v2 events).

| event                                              | action                                    |
|----------------------------------------------------|-------------------------------------------|
| ``{"operation": "sync_recovery_instances"}``       | full sync (the schedule rule's Input, the |
|   (+ ``accountId`` / ``region``, ``trigger``)      |   self-invoke), or scoped; the report     |
| native ``aws.events`` "Scheduled Event"            | full sync                                 |
| ``{"operation": "get_recovery_instance_sync_status"}`` | status                                |
| ``{"operation": "check_existing_recovery_instances", "planId"}`` | the route's body            |
| ``{"operation": "terminate_recovery_instances", "executionId", "includeNonDrill"?}`` | the route's body |
| ``{"operation": "get_execution_recovery_instances", "executionId"}`` | the preview route's body  |
| ``POST /drs/recovery-instance-sync``               | scoped: 200 report; full: 202, async      |
| ``GET /drs/recovery-instance-sync/status``         | status                                    |
| ``GET /recovery-plans/{planId}/check-existing-instances`` | cache query                        |
| ``GET /executions/{executionId}/recovery-instances`` | terminate preview (cache only)          |
| ``POST /executions/{executionId}/terminate-instances`` | terminate via the cache               |

A scheduled (native event, or ``"trigger": "schedule"``) or self-invoked (``"trigger":
"self-invoke"``) full sync that fails as a whole raises: Lambda records an error, so the Errors
metric, the async retries and the failure destination see it. Every other caller gets its body.
"""

from __future__ import annotations

from typing import Any

from handlers import dependencies, operations, routes
from handlers.api import build_api
from handlers.dispatch import DirectOperation, handle
from handlers.events import DirectInvocationEvent, ScheduledEvent
from handlers.operations import INVALID_REQUEST, Outcome, error_outcome
from syncengine.aws.clients import preload_service_models
from syncengine.core.errors import InvalidRequestError
from syncengine.core.logging import configure_logging, get_logger

configure_logging()
log = get_logger(__name__)
# Once per container, in the init phase: settings from the environment, the resolvers with their
# routes, and the DRS/EC2/STS models the schedule's syncs build their clients from (as the refresh
# function does).
preload_service_models(dependencies.current().settings)
API = build_api(routes.read_router, routes.write_router)


def sync_now(event: DirectInvocationEvent, context: Any) -> Outcome:
    try:
        request = operations.parse_sync_request(event)
    except InvalidRequestError as exc:
        return error_outcome(400, INVALID_REQUEST, str(exc))
    if request.full and event.trigger in operations.BACKGROUND_TRIGGERS:
        return operations.run_background_sync(dependencies.current(), context)
    return operations.run_sync(dependencies.current(), request, context)


def sync_status(_event: DirectInvocationEvent, _context: Any) -> Outcome:
    return operations.sync_status(dependencies.current())


def check_existing(event: DirectInvocationEvent, _context: Any) -> Outcome:
    return operations.check_existing(dependencies.current(), event.plan_id)


def execution_recovery_instances(event: DirectInvocationEvent, _context: Any) -> Outcome:
    return operations.execution_recovery_instances(dependencies.current(), event.execution_id)


# The direct event's own keys; any other key must be a terminate option.
DIRECT_TERMINATE_KEYS = frozenset({"operation", "executionId"})


def terminate(event: DirectInvocationEvent, context: Any) -> Outcome:
    deps = dependencies.current()
    try:
        options = operations.terminate_options(
            deps, event.raw_event, context, requested_by=None, api=False, ignored=DIRECT_TERMINATE_KEYS
        )
    except InvalidRequestError as exc:
        return error_outcome(400, INVALID_REQUEST, str(exc))
    return operations.terminate_instances(deps, event.execution_id, options)


def scheduled_sync(event: ScheduledEvent, context: Any) -> Outcome:
    log.info("scheduled_sync", rule=event.rule_arn, time=event.get("time"))
    return operations.run_background_sync(dependencies.current(), context)


OPERATIONS: dict[str, DirectOperation] = {
    operations.SYNC_OPERATION: sync_now,
    "get_recovery_instance_sync_status": sync_status,
    "check_existing_recovery_instances": check_existing,
    "get_execution_recovery_instances": execution_recovery_instances,
    "terminate_recovery_instances": terminate,
}


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(event, context, api=API, operations=OPERATIONS, on_schedule=scheduled_sync)
