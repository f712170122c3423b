"""One entry for every event a handler receives: API Gateway (v1/v2) through the resolvers,
direct invocations through an operation table, EventBridge schedules through a callback.
Whatever arrives, the caller gets a JSON answer, never a trace."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from handlers.api import Api, raw_response
from handlers.events import (
    DirectInvocationEvent,
    EventKind,
    ScheduledEvent,
    classify_event,
    is_api,
    operation_name,
)
from handlers.operations import INTERNAL_ERROR, INTERNAL_MESSAGE, Outcome, RunFailedError, error_outcome
from syncengine.core.logging import get_logger, structlog

log = get_logger(__name__)

DirectOperation = Callable[[DirectInvocationEvent, Any], Outcome]
ScheduleHandler = Callable[[ScheduledEvent, Any], Outcome]

INVALID_OPERATION = "INVALID_OPERATION"
INVALID_EVENT = "INVALID_EVENT"


def start_invocation(context: Any) -> None:
    """Forget the previous invocation's log context (containers are reused)."""
    structlog.contextvars.clear_contextvars()
    request_id = getattr(context, "aws_request_id", None)
    if isinstance(request_id, str):
        structlog.contextvars.bind_contextvars(request_id=request_id)


def run_direct(event: Mapping[str, Any], context: Any, operations: Mapping[str, DirectOperation]) -> Outcome:
    invocation = DirectInvocationEvent(dict(event))
    operation = invocation.operation
    handler = operations.get(operation) if isinstance(operation, str) else None
    if handler is None:
        name = operation_name(invocation)
        expected = ", ".join(sorted(operations))
        message = f"Unknown operation {name!r}; expected one of: {expected}."
        return error_outcome(400, INVALID_OPERATION, message, operation=name)
    structlog.contextvars.bind_contextvars(operation=operation)
    return handler(invocation, context)


def handle(
    event: Any,
    context: Any,
    *,
    api: Api | None,
    operations: Mapping[str, DirectOperation],
    on_schedule: ScheduleHandler | None = None,
) -> dict[str, Any]:
    start_invocation(context)
    kind = classify_event(event)
    try:
        if is_api(kind) and api is not None:
            response = api.resolve(kind, event, context)
            log.info("api_request_handled", kind=kind.value, status_code=response.get("statusCode"))
            return response
        if kind is EventKind.DIRECT:
            outcome = run_direct(event, context, operations)
        elif kind is EventKind.SCHEDULED and on_schedule is not None:
            outcome = on_schedule(ScheduledEvent(dict(event)), context)
        else:
            outcome = error_outcome(
                400,
                INVALID_EVENT,
                "This function does not handle this event: expected "
                + ("an API Gateway request, " if api is not None else "")
                + ("an EventBridge schedule, " if on_schedule is not None else "")
                + "or a direct invocation with an 'operation'.",
            )
        log.info("event_handled", kind=kind.value, error=outcome.body.get("error"))
        return outcome.body
    except RunFailedError:
        # A background run that failed as a whole: a Lambda error on purpose (see operations).
        raise
    except Exception as exc:
        # Only a bug gets here; the trace goes to the log.
        log.exception("handler_failed", kind=kind.value, error_type=type(exc).__name__)
        outcome = error_outcome(500, INTERNAL_ERROR, INTERNAL_MESSAGE)
        return raw_response(outcome) if is_api(kind) else outcome.body
