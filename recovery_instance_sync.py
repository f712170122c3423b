"""The DRS orchestration's shared module, as a drop-in: plain synchronous functions over the engine.

The orchestration (public repository ``johnjcousens/aws-elasticdrs-orchestrator``) calls this
feature through ``lambda/shared/recovery_instance_sync.py``; its data-management handler imports
``sync_all_recovery_instances`` and ``get_recovery_instance_sync_status`` from there. This module
keeps those functions' names, signatures and answers, and adds the cache's three reads and
writes its handlers route to (check-existing, the terminate preview, terminate). Shipped in the
wheel, the Lambda package and a Lambda layer (``scripts/deploy.sh`` builds it); see
``docs/INTEGRATION.md`` for the changes to make in the orchestration, and ``API-CONTRACT.md``
("The orchestration's shared module") for the answers.

Configuration is the orchestration's own environment: ``RECOVERY_INSTANCES_CACHE_TABLE``,
``TARGET_ACCOUNTS_TABLE``, ``EXECUTION_HISTORY_TABLE``, ``RECOVERY_PLANS_TABLE``,
``PROTECTION_GROUPS_TABLE``, ``DRS_REGION_STATUS_TABLE``, ``PROJECT_NAME``, ``ENVIRONMENT``, plus
this project's ``RECOVERY_INSTANCE_SYNC_STATUS_TABLE`` and ``EXECUTION_INDEX_TABLE`` (README,
Configuration). Read once per process.

Errors its handlers answer with a status raise ``RecoveryInstanceSyncError`` subclasses carrying
``status_code`` and ``body`` (``{"error": CODE, "message": sentence, ...}``), so a handler
answers ``response(exc.status_code, exc.body)``::

    RecoveryInstanceSyncError                 500 (and the base of all)
    ├── RecoveryInstanceSyncValidationError   400 INVALID_REQUEST
    ├── RecoveryInstanceSyncNotFoundError     404 RECOVERY_PLAN_NOT_FOUND / EXECUTION_NOT_FOUND
    ├── RecoveryInstanceSyncConflictError     409 EXECUTION_IN_PROGRESS / SYNC_IN_PROGRESS
    └── RecoveryInstanceSyncTimeoutError      504 SYNC_TIMEOUT
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers import dependencies, operations
from handlers.operations import API_BUDGET_SECONDS, Outcome, SyncRequest
from syncengine.core.logging import get_logger
from syncengine.core.resident import run_blocking
from syncengine.terminate.rules import TerminateOptions

log = get_logger(__name__)

__all__ = [
    "RecoveryInstanceSyncConflictError",
    "RecoveryInstanceSyncError",
    "RecoveryInstanceSyncNotFoundError",
    "RecoveryInstanceSyncTimeoutError",
    "RecoveryInstanceSyncValidationError",
    "check_existing_recovery_instances",
    "enrich_with_ec2_details",
    "find_source_execution",
    "get_recovery_instance_sync_status",
    "get_recovery_instances",
    "get_recovery_instances_for_region",
    "sync_all_recovery_instances",
    "sync_recovery_instances_for_account",
    "terminate_recovery_instances",
]


class RecoveryInstanceSyncError(Exception):
    """Base of the module's errors: ``status_code`` and ``body`` are the orchestration's answer."""

    status_code = 500
    error_code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, status_code: int | None = None, body: Mapping[str, Any] | None = None):
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code
        self.body: dict[str, Any] = dict(body) if body else {"error": self.error_code, "message": message}


class RecoveryInstanceSyncValidationError(RecoveryInstanceSyncError):
    """Bad input (400)."""

    status_code = 400
    error_code = "INVALID_REQUEST"


class RecoveryInstanceSyncNotFoundError(RecoveryInstanceSyncError):
    """The recovery plan or execution does not exist (404)."""

    status_code = 404
    error_code = "NOT_FOUND"


class RecoveryInstanceSyncConflictError(RecoveryInstanceSyncError):
    """The execution still runs, or a full sync holds the lease (409)."""

    status_code = 409
    error_code = "CONFLICT"


class RecoveryInstanceSyncTimeoutError(RecoveryInstanceSyncError):
    """The run's deadline passed before it could sync anything (504)."""

    status_code = 504
    error_code = "SYNC_TIMEOUT"


_BY_STATUS: dict[int, type[RecoveryInstanceSyncError]] = {
    400: RecoveryInstanceSyncValidationError,
    404: RecoveryInstanceSyncNotFoundError,
    409: RecoveryInstanceSyncConflictError,
}


def _body(outcome: Outcome) -> dict[str, Any]:
    """The 200 body of an operation, else its error raised as the matching subclass."""
    if outcome.status_code < 400:
        return outcome.body
    error_type = _BY_STATUS.get(outcome.status_code, RecoveryInstanceSyncError)
    raise error_type(str(outcome.body.get("message", "")), status_code=outcome.status_code, body=outcome.body)


def _error_lines(errors: Any) -> list[str]:
    """The report's structured errors as the seed's list of sentences."""
    lines = []
    for error in errors or []:
        where = "/".join(part for part in (error.get("accountId"), error.get("region")) if part)
        lines.append(f"{where + ': ' if where else ''}{error.get('errorType')}: {error.get('message')}")
    return lines


def _seed_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """Our report with the seed's keys: ``errors`` as sentences (the structured ones stay under
    ``errorDetails``) and ``regionsScanned`` (account/regions synced or failed)."""
    return {
        **report,
        "regionsScanned": int(report.get("scopesSynced", 0)) + int(report.get("scopesFailed", 0)),
        "errors": _error_lines(report.get("errors")),
        "errorDetails": list(report.get("errors") or []),
    }


def _require_timely(report: Mapping[str, Any]) -> None:
    """A run its deadline cut short before any scope: the caller's time was too short."""
    errors = report.get("errors") or []
    if errors and not report.get("scopesSynced") and all(e.get("errorType") == "DeadlineExceeded" for e in errors):
        message = "The sync's deadline passed before any account/region was synced."
        raise RecoveryInstanceSyncTimeoutError(message, body={"error": "SYNC_TIMEOUT", "message": message})


# -- the seed's six functions ----------------------------------------------------------------------


def sync_all_recovery_instances(*, context: Any = None) -> dict[str, Any]:
    """A full sync of every target account and region (the orchestration's 5-minute rule).

    ``{"instancesUpdated", "regionsScanned", "errors": [str], ...our report}``. A full sync that
    finds another one running is skipped, not failed: ``"status": "SKIPPED"``. ``context``: the
    Lambda context, whose remaining time bounds the run (optional)."""
    outcome = operations.run_sync(dependencies.current(), SyncRequest(), context)
    if outcome.status_code == 409:
        return {
            "status": "SKIPPED",
            "message": outcome.body.get("message"),
            "instancesUpdated": 0,
            "regionsScanned": 0,
            "errors": [],
        }
    report = _body(outcome)
    _require_timely(report)
    return _seed_report(report)


def sync_recovery_instances_for_account(
    account_id: str, region: str, account_context: Mapping[str, Any] | None = None, *, context: Any = None
) -> dict[str, Any]:
    """Sync one account/region (a wave's): ``{"instancesUpdated", "errors": [str], ...our report}``.

    ``account_context`` (the orchestration's ``accountContext`` or a target-accounts item) says
    how to reach the account, so the scope need not be configured. Sync failures are reported in
    ``errors``, never raised; bad input raises ``RecoveryInstanceSyncValidationError``."""
    from syncengine.sync.engine import sync_scope

    deps = dependencies.current()
    settings = dependencies.deadline_from_lambda(deps.settings, context)
    account = _account(account_context)
    try:
        report = run_blocking(sync_scope, settings, account_id, region, account=account)
    except Exception as exc:
        outcome = operations.failure(exc, code="SYNC_FAILED", action="The sync")
        if outcome.status_code == 400:
            _body(outcome)
        return {"instancesUpdated": 0, "errors": [str(outcome.body.get("message"))]}
    return _seed_report(report.to_dict())


def get_recovery_instances_for_region(
    account_id: str, region: str, account_context: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The account/region's recovery instances, fresh from DRS and EC2: the scope is synced (so
    the cache is current too) and its cached records returned (``sourceServerId``,
    ``recoveryInstanceId``, ``ec2InstanceId``, ``ec2InstanceState``, ``launchTime``, ``region``,
    ``accountId``, ...). Raises ``RecoveryInstanceSyncError`` when the scope failed."""
    from syncengine.sync.engine import sync_and_read_scope

    deps = dependencies.current()
    account = _account(account_context)
    try:
        report, records = run_blocking(sync_and_read_scope, deps.settings, account_id, region, account=account)
    except Exception as exc:
        _body(operations.failure(exc, code="SYNC_FAILED", action="Reading the region's recovery instances"))
        raise  # pragma: no cover (failure() answers 4xx or 500, and _body raises either)
    if report.scopes_failed:
        raise RecoveryInstanceSyncError("; ".join(_error_lines(report.to_dict()["errors"])))
    return records


def enrich_with_ec2_details(
    ec2_instance_id: str, region: str, account_id: str, account_context: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """EC2's ``Name`` tag, ``PrivateIpAddress``, ``PublicIpAddress``, ``InstanceType`` and
    ``LaunchTime`` of one instance. Like the seed, it never raises: an instance EC2 cannot
    describe gets ``{"Name": "Recovery instance <id>", "InstanceType": "unknown"}``."""
    from syncengine.sync.engine import describe_ec2_instance

    fallback = {"Name": f"Recovery instance {ec2_instance_id}", "InstanceType": "unknown"}
    deps = dependencies.current()
    try:
        details = run_blocking(
            describe_ec2_instance,
            deps.settings,
            ec2_instance_id,
            region,
            account_id,
            account=_account(account_context),
        )
    except Exception as exc:
        log.warning("enrich_with_ec2_details_failed", error_type=type(exc).__name__, error=str(exc)[:300])
        return fallback
    return details or fallback


def find_source_execution(source_server_id: str, launch_time: str | None = None) -> dict[str, Any]:
    """The execution that launched the server's cached recovery instance: ``{"executionId",
    "planName", "attribution"}`` (``attribution``: ``job``, ``recoveryInstance`` or ``inferred``;
    API-CONTRACT.md), or ``{}``. Read from the cache, which the sync attributes through its
    execution index (no scan of the history). ``launch_time`` is accepted for the seed's
    signature; the cache holds the server's newest recovery instance."""
    from syncengine.reads import get_cached_records

    deps = dependencies.current()
    try:
        records = run_blocking(get_cached_records, deps.settings, [str(source_server_id)])
    except Exception as exc:
        # The seed answers {} whatever went wrong; the reason goes to the log.
        log.warning("find_source_execution_failed", error_type=type(exc).__name__, error=str(exc)[:300])
        return {}
    record = records[0] if records else {}
    if not record.get("sourceExecutionId"):
        return {}
    return {
        "executionId": record["sourceExecutionId"],
        "planName": record.get("sourcePlanName"),
        "attribution": record.get("attribution"),
    }


def get_recovery_instance_sync_status() -> dict[str, Any]:
    """``{"lastSyncTime", "instancesUpdated", "errors": [str], "status", ...our status}``
    (``status``: healthy, degraded, error, running or no_sync_yet), from the status table."""
    status = _body(operations.sync_status(dependencies.current()))
    return {**status, "errors": _error_lines(status.get("errors")), "errorDetails": list(status.get("errors") or [])}


# -- the cache's reads and terminate -----------------------------------------------------------------


def check_existing_recovery_instances(plan_id: str) -> dict[str, Any]:
    """Which servers of the plan already have a recovery instance (cache only): the body of
    ``GET /recovery-plans/{id}/check-existing-instances``. 404 ``RECOVERY_PLAN_NOT_FOUND``."""
    return _body(operations.check_existing(dependencies.current(), plan_id))


def get_recovery_instances(execution_id: str) -> dict[str, Any]:
    """The terminate preview (cache only): the body of ``GET /executions/{id}/recovery-instances``,
    ``instances`` holding exactly what ``terminate_recovery_instances`` would end. 404
    ``EXECUTION_NOT_FOUND``."""
    return _body(operations.execution_recovery_instances(dependencies.current(), execution_id))


def terminate_recovery_instances(
    execution_id: str, include_non_drill: bool = False, *, requested_by: str | None = None
) -> dict[str, Any]:
    """Terminate the recovery instances the execution provably launched, found in the cache:
    the body of ``POST /executions/{id}/terminate-instances``. Bounded to 25 s as an API request
    (``"incomplete": true`` then; call again for the rest). 404 ``EXECUTION_NOT_FOUND``, 409
    ``EXECUTION_IN_PROGRESS``, 400 for an execution without waves. Authorization is the caller's:
    the orchestration checks its ``TERMINATE_INSTANCES`` permission first."""
    if not isinstance(include_non_drill, bool):
        message = "include_non_drill must be true or false."
        raise RecoveryInstanceSyncValidationError(message)
    options = TerminateOptions(
        include_non_drill=include_non_drill, requested_by=requested_by, budget_seconds=API_BUDGET_SECONDS
    )
    return _body(operations.terminate_instances(dependencies.current(), execution_id, options))


# -- engine calls ----------------------------------------------------------------------------------


def _account(account_context: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if account_context is None:
        return None
    if not isinstance(account_context, Mapping):
        raise RecoveryInstanceSyncValidationError("account_context must be a mapping such as {'accountId': ...}.")
    return account_context
