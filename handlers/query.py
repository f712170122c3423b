"""The read-only query function: check existing instances, the terminate preview and the sync
status, as API routes
(REST v1 and HTTP v2) and as direct operations. Its IAM role has no write action on any table,
so it serves only ``read_router`` and never syncs or terminates."""

from __future__ import annotations

from typing import Any

from handlers import dependencies, operations, routes
from handlers.api import build_api
from handlers.dispatch import DirectOperation, handle
from handlers.events import DirectInvocationEvent
from handlers.operations import Outcome
from syncengine.core.logging import configure_logging, get_logger

configure_logging()
log = get_logger(__name__)
dependencies.current()
API = build_api(routes.read_router)


def sync_status(_event: DirectInvocationEvent, _context: Any) -> Outcome:
    return operations.sync_status(dependencies.current())


def check_existing(event: DirectInvocationEvent, _context: Any) -> Outcome:
    return operations.check_existing(dependencies.current(), event.plan_id)


def execution_recovery_instances(event: DirectInvocationEvent, _context: Any) -> Outcome:
    return operations.execution_recovery_instances(dependencies.current(), event.execution_id)


OPERATIONS: dict[str, DirectOperation] = {
    "get_recovery_instance_sync_status": sync_status,
    "check_existing_recovery_instances": check_existing,
    "get_execution_recovery_instances": execution_recovery_instances,
}


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return handle(event, context, api=API, operations=OPERATIONS)
