"""The sync's health, judged from the last full run and every scope's status.

``healthy`` when every configured scope (NOT_ENABLED ones aside) succeeded within
``stale_after``; ``degraded`` when one failed its last attempt or is stale; ``error`` when the
last full run failed outright or nothing is configured; ``running`` while a full sync holds its
lease; ``no_sync_yet`` before the first full run. A fan-out run that stopped short of its total (its
messages lost or stuck) makes a healthy status ``degraded``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from syncengine.core.models import HealthStatus, RunStatus, ScopeOutcome, ScopeStatus, SyncStatus


def summarise_status(
    latest: dict[str, Any] | None,
    running: bool,
    scopes: list[ScopeStatus],
    *,
    stale_after: timedelta = timedelta(seconds=900),
    last_scoped: dict[str, Any] | None = None,
) -> SyncStatus:
    """The health (see the module docstring) and the last full run's fields."""
    watched = [s for s in scopes if s.status != ScopeOutcome.NOT_ENABLED.value]
    stale = sum(1 for s in watched if _stale(s, stale_after))
    failed = any(s.status == ScopeOutcome.FAILED.value for s in watched)
    if latest is None:
        health = HealthStatus.RUNNING if running else HealthStatus.NO_SYNC_YET
        return SyncStatus(status=health, scopes=tuple(scopes), stale_scopes=stale, last_scoped_sync=last_scoped)
    run_status = latest.get("status")
    if running:
        health = HealthStatus.RUNNING
    elif run_status == RunStatus.FAILED.value or not watched:
        # A full run that failed outright, or nothing (enabled) configured to sync at all.
        health = HealthStatus.ERROR
    elif failed or stale:
        health = HealthStatus.DEGRADED
    else:
        health = HealthStatus.HEALTHY
    return SyncStatus(
        status=health,
        last_sync_time=latest.get("lastSyncTime"),
        instances_updated=int(latest.get("instancesUpdated", 0)),
        instances_unchanged=int(latest.get("instancesUnchanged", 0)),
        instances_deleted=int(latest.get("instancesDeleted", 0)),
        scopes_synced=int(latest.get("scopesSynced", 0)),
        scopes_failed=int(latest.get("scopesFailed", 0)),
        duration_ms=int(latest.get("durationMs", 0)),
        errors=tuple(latest.get("errors") or ()),
        scopes=tuple(scopes),
        last_run_status=run_status,
        stale_scopes=stale,
        last_scoped_sync=last_scoped,
    )


def with_fanout_run(
    status: SyncStatus, record: dict[str, Any] | None, latest_started_at: str | None = None
) -> SyncStatus:
    """The fan-out run beside the status; one that stopped short of its total (messages lost or
    stuck) and no longer holds the lease makes a healthy status degraded, never healthy. A
    fan-out run that a later full run (``latest_started_at``) superseded says nothing any more."""
    if record is None:
        return status
    if latest_started_at and latest_started_at > str(record.get("startedAt") or ""):
        return status
    total, finished = int(record.get("total", 0)), int(record.get("finished", 0))
    run = {"runId": record.get("runId"), "scopes": total, "finished": finished, "startedAt": record.get("startedAt")}
    if "parts" in record:
        run["parts"] = int(record["parts"])
    unfinished = finished < total and status.status is not HealthStatus.RUNNING
    health = HealthStatus.DEGRADED if unfinished and status.status is HealthStatus.HEALTHY else status.status
    return replace(status, status=health, fanout_run={**run, "stale": unfinished})


def _stale(scope: ScopeStatus, stale_after: timedelta) -> bool:
    """No success at all, or none within ``stale_after``."""
    return not scope.last_success_time or _older_than(scope.last_success_time, stale_after)


def _older_than(iso: str, age: timedelta) -> bool:
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return True
    return datetime.now(UTC) - moment > age
