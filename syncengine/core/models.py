"""Value objects of the engine: scopes, records, per-scope results, run reports and status.

All frozen: a result is a snapshot, never a handle to mutate. ``to_dict()`` gives the exact
shapes of ``API-CONTRACT.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


def utc_now_iso(now: datetime | None = None) -> str:
    """ISO-8601 UTC with millisecond precision ending in ``Z`` (the cache's time format)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, order=True)
class Scope:
    """One account in one region: the unit of discovery, failure and reconciliation."""

    account_id: str
    region: str

    @property
    def key(self) -> str:
        return f"{self.account_id}#{self.region}"

    @classmethod
    def from_key(cls, key: str) -> Scope:
        account_id, _, region = key.partition("#")
        return cls(account_id, region)


class Attribution(StrEnum):
    """How the cache knows which execution launched a recovery instance (API-CONTRACT.md)."""

    # The recovery instance's DRS jobID is the jobId of one of the execution's waves.
    JOB = "job"
    # Its id is in a wave's serverStatuses[].recoveryInstanceId.
    RECOVERY_INSTANCE = "recoveryInstance"
    # Only that a wave of the execution planned the server: for display, never a reason to terminate.
    INFERRED = "inferred"


@dataclass(frozen=True)
class RecoveryInstanceRecord:
    """One cached recovery instance: the newest one of its source server.

    Python names here; ``syncengine.tables.cache`` owns the mapping to the camelCase DynamoDB item.
    ``None`` means unknown, and unknown values are omitted from the item, never written as "".
    """

    source_server_id: str
    recovery_instance_id: str
    account_id: str
    region: str
    ec2_instance_id: str
    # EC2's lower-case state name of the recovery instance (``running``, ``stopped``, ...), as the
    # orchestration's design defines ``ec2InstanceState`` and its Recovery Plans page compares it
    # (frontend/src/pages/RecoveryPlansPage.tsx: ``=== 'running'``); where EC2 gave no answer,
    # DRS's value lower-cased (``not_found``).
    ec2_instance_state: str
    source_server_name: str | None = None
    name: str | None = None
    private_ip: str | None = None
    public_ip: str | None = None
    instance_type: str | None = None
    launch_time: str | None = None
    job_id: str | None = None
    is_drill: bool | None = None
    point_in_time_snapshot_date_time: str | None = None
    origin_environment: str | None = None
    source_execution_id: str | None = None
    source_plan_name: str | None = None
    # How source_execution_id was found (an ``Attribution`` value); None when it was not.
    attribution: str | None = None
    replication_staging_account_id: str | None = None
    source_vpc_id: str | None = None
    source_subnet_id: str | None = None
    source_security_group_ids: tuple[str, ...] = ()
    source_instance_profile: str | None = None
    source_server_tags: tuple[tuple[str, str], ...] = ()
    # DRS's own upper-case value (RUNNING, STOPPED, NOT_FOUND, ...), kept apart from EC2's name.
    drs_instance_state: str | None = None
    # When DRS was asked (epoch milliseconds): orders competing observations of one server.
    observed_at: int = 0

    @property
    def scope(self) -> Scope:
        return Scope(self.account_id, self.region)


@dataclass(frozen=True)
class AccountTarget:
    """An account to sync, as read from the target-accounts table."""

    account_id: str
    account_name: str = ""
    # None means "use the caller's own credentials" (the current account).
    role_arn: str | None = None
    external_id: str | None = None
    regions: tuple[str, ...] = ()
    # ``regions`` is where DRS was found in use (syncengine.tables.region_discovery), which may be
    # none at all: then an empty ``regions`` means no scope, not the configured default.
    regions_found: bool = False
    is_current_account: bool = False
    # Why the item cannot be synced as written (a malformed ``regions``): its scopes fail with
    # this message, and none of its scopes is reconciled away while it stands.
    config_error: str | None = None


class ScopeOutcome(StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    # The deadline or a busy scope lease kept the scope from running; its cache is untouched.
    SKIPPED = "SKIPPED"
    # The region is an opt-in region the account has not enabled: nothing to sync, nothing failed.
    NOT_ENABLED = "NOT_ENABLED"


class RunStatus(StrEnum):
    SUCCESS = "SUCCESS"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"


@dataclass(frozen=True)
class ScopeError:
    account_id: str
    region: str
    error_type: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {
            "accountId": self.account_id,
            "region": self.region,
            "errorType": self.error_type,
            "message": self.message,
        }


@dataclass(frozen=True)
class ScopeResult:
    scope: Scope
    outcome: ScopeOutcome
    instances_found: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    duration_ms: int = 0
    error: ScopeError | None = None
    # True when this success reconciled the whole scope (not a targeted sync of some servers):
    # every record of the scope still cached afterwards was confirmed by it.
    reconciled: bool = False
    # True for a sync of some servers only (a wave or an event refresh): it says nothing about the
    # rest of the scope, so it never stands for the scope's own status, freshness or count.
    targeted: bool = False
    # A whole-scope success: when the execution index was read for its attribution (epoch seconds;
    # the next sync attributes again only what changed since, ``executions.Recheck``).
    attributed_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is ScopeOutcome.SUCCESS

    @property
    def not_enabled(self) -> bool:
        return self.outcome is ScopeOutcome.NOT_ENABLED


@dataclass(frozen=True)
class SyncReport:
    """What one run did. ``to_dict()`` is the contract's report body."""

    status: RunStatus
    instances_updated: int
    instances_unchanged: int
    instances_deleted: int
    scopes_synced: int
    scopes_failed: int
    duration_ms: int
    errors: tuple[ScopeError, ...] = ()
    started_at: str = ""
    finished_at: str = ""
    run_id: str = ""
    scopes: tuple[ScopeResult, ...] = field(default=(), repr=False, compare=False)
    scopes_not_enabled: int = 0
    # Scopes no longer configured whose records and status a full sync deleted.
    scopes_removed: int = 0
    # Errors of the run itself, not of a scope (configuration or execution history unreadable,
    # deadline before any scope): the run failed as a whole.
    run_errors: tuple[ScopeError, ...] = field(default=(), compare=False)
    # A fan-out run (syncengine.sync.fanout): scope messages enqueued for the workers.
    scopes_enqueued: int = 0

    @classmethod
    def from_results(
        cls,
        results: list[ScopeResult] | tuple[ScopeResult, ...],
        *,
        duration_ms: int,
        started_at: str = "",
        finished_at: str = "",
        run_id: str = "",
        extra_errors: tuple[ScopeError, ...] = (),
    ) -> SyncReport:
        synced = sum(1 for r in results if r.ok)
        not_enabled = sum(1 for r in results if r.not_enabled)
        failed = len(results) - synced - not_enabled
        errors = tuple(r.error for r in results if r.error is not None) + extra_errors
        if failed == 0 and not extra_errors:
            status = RunStatus.SUCCESS
        elif synced == 0:
            status = RunStatus.FAILED
        else:
            status = RunStatus.PARTIAL
        return cls(
            status=status,
            instances_updated=sum(r.updated for r in results),
            instances_unchanged=sum(r.unchanged for r in results),
            instances_deleted=sum(r.deleted for r in results),
            scopes_synced=synced,
            scopes_failed=failed,
            duration_ms=duration_ms,
            errors=errors,
            started_at=started_at,
            finished_at=finished_at,
            run_id=run_id,
            scopes=tuple(results),
            scopes_not_enabled=not_enabled,
            run_errors=tuple(extra_errors),
        )

    @property
    def instances_found(self) -> int:
        return sum(r.instances_found for r in self.scopes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "instancesUpdated": self.instances_updated,
            "instancesUnchanged": self.instances_unchanged,
            "instancesDeleted": self.instances_deleted,
            "scopesSynced": self.scopes_synced,
            "scopesFailed": self.scopes_failed,
            "scopesNotEnabled": self.scopes_not_enabled,
            "scopesRemoved": self.scopes_removed,
            "durationMs": self.duration_ms,
            "errors": [e.to_dict() for e in self.errors],
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "runId": self.run_id,
            **({"scopesEnqueued": self.scopes_enqueued} if self.scopes_enqueued else {}),
        }


@dataclass(frozen=True)
class ScopeStatus:
    account_id: str
    region: str
    status: str
    last_success_time: str | None = None
    last_attempt_time: str | None = None
    instance_count: int = 0
    last_error: str | None = None
    # The last sync of some of its servers only (a wave, an event refresh): shown, never judged.
    last_targeted_time: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "accountId": self.account_id,
            "region": self.region,
            "lastSuccessTime": self.last_success_time,
            "status": self.status,
            "instanceCount": self.instance_count,
        }
        if self.last_attempt_time:
            body["lastAttemptTime"] = self.last_attempt_time
        if self.last_error:
            body["lastError"] = self.last_error
        if self.last_targeted_time:
            body["lastTargetedTime"] = self.last_targeted_time
        return body


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    ERROR = "error"
    RUNNING = "running"
    NO_SYNC_YET = "no_sync_yet"


@dataclass(frozen=True)
class SyncStatus:
    status: HealthStatus
    last_sync_time: str | None = None
    instances_updated: int = 0
    instances_unchanged: int = 0
    instances_deleted: int = 0
    scopes_synced: int = 0
    scopes_failed: int = 0
    duration_ms: int = 0
    errors: tuple[Mapping[str, Any], ...] = ()
    scopes: tuple[ScopeStatus, ...] = ()
    last_run_status: str | None = None
    # Configured scopes (NOT_ENABLED ones aside) without a success within the stale window.
    stale_scopes: int = 0
    # The newest scoped, wave or event-driven run's report (never part of the run fields above).
    last_scoped_sync: Mapping[str, Any] | None = None
    # The current or last fan-out run (syncengine.sync.fanout): scopes, finished, stale.
    fanout_run: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status.value,
            "lastSyncTime": self.last_sync_time,
            "instancesUpdated": self.instances_updated,
            "instancesUnchanged": self.instances_unchanged,
            "instancesDeleted": self.instances_deleted,
            "scopesSynced": self.scopes_synced,
            "scopesFailed": self.scopes_failed,
            "durationMs": self.duration_ms,
            "errors": [dict(e) for e in self.errors],
            "scopes": [s.to_dict() for s in self.scopes],
            "staleScopes": self.stale_scopes,
            "lastScopedSync": dict(self.last_scoped_sync) if self.last_scoped_sync else None,
        }
        if self.last_run_status:
            body["lastRunStatus"] = self.last_run_status
        if self.fanout_run:
            body["fanoutRun"] = dict(self.fanout_run)
        return body
