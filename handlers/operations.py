"""The operations behind every entry point, shared by the API routes and direct invocations so
both give the same bodies. Each parses its input, calls one engine function (which validates it)
and shapes an ``Outcome`` (HTTP status + body); direct invocations return the body alone.

Error bodies are ``{"error": CODE, "message": sentence, ...}``. An engine error maps by its class
through ``CLIENT_ERRORS`` (400 / 404 / 409); anything else becomes the operation's 500 code with a generic sentence, and
the exception goes to the log, never to the caller.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handlers.dependencies import Dependencies, deadline_from_lambda
from syncengine.core.config import SyncSettings
from syncengine.core.errors import (
    AwsError,
    ExecutionInProgressError,
    InvalidRequestError,
    NotFoundError,
    SyncEngineError,
    SyncInProgressError,
)
from syncengine.core.logging import get_logger
from syncengine.core.models import HealthStatus
from syncengine.core.resident import run_blocking
from syncengine.terminate.rules import TerminateOptions, parse_terminate_body

log = get_logger(__name__)

SYNC_OPERATION = "sync_recovery_instances"
STATUS_PATH = "/drs/recovery-instance-sync/status"
INVALID_REQUEST = "INVALID_REQUEST"
SYNC_IN_PROGRESS = "SYNC_IN_PROGRESS"
EXECUTION_IN_PROGRESS = "EXECUTION_IN_PROGRESS"
# API Gateway gives a route 29 s; synchronous API work stops starting new calls after this.
API_BUDGET_SECONDS = 25.0
# Of an API sync's budget, what its shielded cleanup may take after the deadline.
API_CLEANUP_SECONDS = 4.0
INTERNAL_ERROR = "INTERNAL_ERROR"
INTERNAL_MESSAGE = "An unexpected error occurred; the details are in the function's logs."


# Invocations nobody reads the answer of: a run of theirs that fails as a whole must be a Lambda
# error (the Errors metric, the async retries and the failure destination see it).
SELF_INVOKE_TRIGGER = "self-invoke"
BACKGROUND_TRIGGERS = frozenset({"schedule", SELF_INVOKE_TRIGGER})


class RunFailedError(Exception):
    """A scheduled or self-invoked sync failed as a whole (a crash, an unreadable configuration).
    Raised out of the handler on purpose; one failed scope is not this (the report says so)."""


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict[str, Any]


# Messages may quote the caller's input back ("got '...'"): an error body stays small whatever
# was sent.
MAX_MESSAGE_LENGTH = 500


def error_outcome(status_code: int, code: str, message: str, **extra: Any) -> Outcome:
    if len(message) > MAX_MESSAGE_LENGTH:
        message = message[: MAX_MESSAGE_LENGTH - 1] + "…"
    return Outcome(status_code, {"error": code, "message": message, **extra})


# The one table from an engine error to the caller's answer: (error class, HTTP status, error
# code; None: the error's own ``error_code``). First match wins; the rest are the operation's 500.
CLIENT_ERRORS: tuple[tuple[type[SyncEngineError], int, str | None], ...] = (
    (InvalidRequestError, 400, INVALID_REQUEST),
    (NotFoundError, 404, None),
    (ExecutionInProgressError, 409, EXECUTION_IN_PROGRESS),
    (SyncInProgressError, 409, SYNC_IN_PROGRESS),
)


def failure(exc: Exception, *, code: str, action: str, **extra: Any) -> Outcome:
    """An exception from the engine as an error outcome; unknown ones are logged with their trace."""
    for error_type, status_code, error_code in CLIENT_ERRORS:
        if isinstance(exc, error_type):
            if isinstance(exc, ExecutionInProgressError):
                extra = {**extra, "executionId": exc.execution_id, "executionStatus": exc.execution_status}
            return error_outcome(status_code, error_code or exc.error_code, str(exc), **extra)
    if isinstance(exc, AwsError):
        log.error(f"{code.lower()}", error_type=exc.error_type, error=str(exc), operation=exc.operation)
        return error_outcome(500, code, f"{action} failed: AWS answered {exc.error_type}.", **extra)
    if isinstance(exc, SyncEngineError):
        log.error(f"{code.lower()}", error_type=exc.error_code, error=str(exc))
        return error_outcome(500, code, f"{action} failed ({exc.error_code}).", **extra)
    log.exception(f"{code.lower()}")
    return error_outcome(500, code, f"{action} failed unexpectedly; the details are in the function's logs.", **extra)


# -- input ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncRequest:
    account_id: str | None = None
    region: str | None = None

    @property
    def full(self) -> bool:
        return self.account_id is None and self.region is None


def parse_sync_request(data: Any) -> SyncRequest:
    """``{"accountId"?, "region"?}`` (null means absent; other fields are ignored)."""
    if data is None:
        return SyncRequest()
    if not isinstance(data, Mapping):
        raise InvalidRequestError('The request body must be a JSON object such as {"accountId": "..."}.')
    # Validated once, by the engine (syncengine.sync.engine.sync_all): a bad value is its 400.
    return SyncRequest(account_id=data.get("accountId"), region=data.get("region"))


def parse_json_body(body: Any, *, base64_encoded: bool = False) -> Any:
    """An API request body as JSON; None when there is none. Raises ``InvalidRequestError``."""
    if body is None:
        return None
    if not isinstance(body, str):
        raise InvalidRequestError("The request body must be JSON text.")
    if base64_encoded:
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequestError("The request body is not valid base64-encoded UTF-8.") from exc
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestError("The request body is not valid JSON.") from exc


# -- sync -----------------------------------------------------------------------------------------


def within_budget(settings: SyncSettings, budget_seconds: float | None) -> SyncSettings:
    """Settings whose whole run fits ``budget_seconds`` (None: unchanged): the deadline (which
    counts the runtime's setup too, ``syncengine.sync.engine``) plus the shielded cleanup after it
    (``API_CLEANUP_SECONDS``: status writes, lease releases), so an API request answers within
    API Gateway's 29 s."""
    if budget_seconds is None:
        return settings
    cleanup = min(API_CLEANUP_SECONDS, budget_seconds / 4)
    work = budget_seconds - cleanup
    current = settings.deadline_seconds
    return settings.with_changes(
        deadline_seconds=min(current, work) if current else work,
        cleanup_seconds=min(settings.cleanup_seconds, cleanup),
    )


def run_sync(deps: Dependencies, request: SyncRequest, context: Any, *, budget_seconds: float | None = None) -> Outcome:
    """Sync now (the schedule, a direct invocation, a scoped API request): 200 with the report.

    A full sync that finds the lease held is skipped, not failed: the schedule fires every five
    minutes and a long run may still hold it. ``budget_seconds`` bounds an API request's run
    (unfinished scopes are reported ``DeadlineExceeded``, the report ``PARTIAL``).
    """
    settings = within_budget(deadline_from_lambda(deps.settings, context), budget_seconds)
    try:
        report = run_blocking(deps.engine.sync_all, settings, account_id=request.account_id, region=request.region)
    except SyncInProgressError as exc:
        log.info("sync_skipped", reason=SYNC_IN_PROGRESS)
        return error_outcome(409, SYNC_IN_PROGRESS, str(exc), status="SKIPPED")
    except Exception as exc:
        return failure(exc, code="SYNC_FAILED", action="The sync")
    return Outcome(200, report.to_dict())


def run_background_sync(deps: Dependencies, context: Any) -> Outcome:
    """A full sync for the schedule or the self-invoke. A held lease is a skip, as for
    ``run_sync``; a run that failed as a whole raises ``RunFailedError``."""
    settings = deadline_from_lambda(deps.settings, context)
    try:
        report = run_blocking(deps.engine.sync_all, settings)
    except SyncInProgressError as exc:
        log.info("sync_skipped", reason=SYNC_IN_PROGRESS)
        return error_outcome(409, SYNC_IN_PROGRESS, str(exc), status="SKIPPED")
    except Exception as exc:
        log.exception("background_sync_crashed", error_type=type(exc).__name__)
        raise RunFailedError(f"The sync crashed: {type(exc).__name__}.") from exc
    if report.run_errors:
        first = report.run_errors[0]
        log.error("background_sync_failed", error_type=first.error_type, error=first.message)
        raise RunFailedError(f"The sync failed as a whole: {first.error_type}: {first.message[:300]}")
    return Outcome(200, report.to_dict())


def start_sync(deps: Dependencies, request: SyncRequest, context: Any) -> Outcome:
    """The API's on-demand sync: scoped runs now; full starts asynchronously (202), because API
    Gateway gives up after 29 seconds and a full sync may take minutes."""
    if not request.full:
        return run_sync(deps, request, context, budget_seconds=API_BUDGET_SECONDS)
    try:
        status = run_blocking(deps.engine.get_sync_status, deps.settings)
    except Exception as exc:
        return failure(exc, code="SYNC_START_FAILED", action="Starting the sync")
    if status.status is HealthStatus.RUNNING:
        return error_outcome(409, SYNC_IN_PROGRESS, "A full sync is already running; try again when it finishes.")
    function = getattr(context, "invoked_function_arn", None) or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    if not function:
        log.error("sync_start_failed", reason="no function ARN in the invocation context")
        return error_outcome(500, "SYNC_START_FAILED", "Starting the sync failed: this function's name is unknown.")
    try:
        run_blocking(
            deps.invoke_self, function, {"operation": SYNC_OPERATION, "trigger": SELF_INVOKE_TRIGGER}, deps.settings
        )
    except Exception as exc:
        return failure(exc, code="SYNC_START_FAILED", action="Starting the sync")
    log.info("sync_started", function=function)
    return Outcome(
        202,
        {
            "status": "STARTED",
            "message": f"A full sync started in the background; follow it at GET {STATUS_PATH}.",
            "statusPath": STATUS_PATH,
        },
    )


def sync_status(deps: Dependencies) -> Outcome:
    try:
        status = run_blocking(deps.engine.get_sync_status, deps.settings)
    except Exception as exc:
        return failure(exc, code="STATUS_FAILED", action="Reading the sync status")
    return Outcome(200, status.to_dict())


# -- cache queries and terminate ------------------------------------------------------------------


def _echo(value: Any) -> Any:
    """An id as echoed in an error body: strings kept (bounded), anything else dropped."""
    return value[:256] if isinstance(value, str) else None


def check_existing(deps: Dependencies, plan_id: Any) -> Outcome:
    try:
        body = run_blocking(deps.engine.check_existing_instances, deps.settings, plan_id)
    except Exception as exc:
        return failure(exc, code="CHECK_FAILED", action="Checking existing instances", planId=_echo(plan_id))
    return Outcome(200, body)


def execution_recovery_instances(deps: Dependencies, execution_id: Any) -> Outcome:
    """The terminate preview (cache only)."""
    try:
        body = run_blocking(
            deps.engine.get_execution_recovery_instances,
            deps.settings,
            execution_id,
        )
    except Exception as exc:
        return failure(
            exc, code="PREVIEW_FAILED", action="Listing the execution's instances", executionId=_echo(execution_id)
        )
    return Outcome(200, body)


def terminate_options(
    deps: Dependencies,
    data: Any,
    context: Any,
    *,
    requested_by: str | None,
    api: bool,
    ignored: frozenset[str] = frozenset(),
) -> TerminateOptions:
    """The terminate request's options: its body (validated), who asked, and the time budget
    (API: 25 s; a direct invocation: the Lambda's remaining time). Raises ``InvalidRequestError``."""
    include_non_drill = parse_terminate_body(data, ignored=ignored)
    budget = deadline_from_lambda(deps.settings, context).deadline_seconds
    if api:
        budget = min(budget, API_BUDGET_SECONDS) if budget is not None else API_BUDGET_SECONDS
    return TerminateOptions(include_non_drill=include_non_drill, requested_by=requested_by, budget_seconds=budget)


def terminate_instances(deps: Dependencies, execution_id: Any, options: TerminateOptions | None = None) -> Outcome:
    try:
        body = run_blocking(
            deps.engine.terminate_execution_instances,
            deps.settings,
            execution_id,
            options or TerminateOptions(),
        )
    except Exception as exc:
        return failure(exc, code="TERMINATE_FAILED", action="Terminating instances", executionId=_echo(execution_id))
    return Outcome(200, body)
