"""The status's health from the scopes: failed, stale and NOT_ENABLED scopes; the lease lifetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import anyio.lowlevel
import pytest

from syncengine.core.config import LEASE_MARGIN_SECONDS, SyncSettings
from syncengine.core.models import Scope, ScopeOutcome, ScopeResult, ScopeStatus, SyncReport, utc_now_iso
from syncengine.runtime import lease_seconds
from syncengine.tables.health import summarise_status

WINDOW = timedelta(seconds=900)
FULL = {"status": "SUCCESS", "lastSyncTime": utc_now_iso(), "scopesSynced": 2}


def ago(seconds: float) -> str:
    return utc_now_iso(datetime.now(UTC) - timedelta(seconds=seconds))


def scope(region: str, status: str = "SUCCESS", success_age: float | None = 10.0) -> ScopeStatus:
    success = None if success_age is None else ago(success_age)
    return ScopeStatus("111122223333", region, status, last_success_time=success)


def health(*scopes: ScopeStatus, latest: dict | None = None) -> tuple[str, int]:
    status = summarise_status(FULL if latest is None else latest, False, list(scopes), stale_after=WINDOW)
    return status.status.value, status.stale_scopes


def test_summarise_status_fresh_scopes_are_healthy() -> None:
    assert health(scope("us-east-1"), scope("eu-west-1")) == ("healthy", 0)


def test_summarise_status_not_enabled_scope_leaves_health_alone() -> None:
    """NOT_ENABLED has no success ever and is neither failed nor stale."""
    assert health(scope("us-east-1"), scope("af-south-1", "NOT_ENABLED", None)) == ("healthy", 0)


def test_summarise_status_failed_last_attempt_degrades() -> None:
    assert health(scope("us-east-1"), scope("eu-west-1", "FAILED", 30.0)) == ("degraded", 0)


@pytest.mark.parametrize("age", [pytest.param(901.0, id="old-success"), pytest.param(None, id="never")])
def test_summarise_status_stale_scope_degrades_and_is_counted(age: float | None) -> None:
    assert health(scope("us-east-1"), scope("eu-west-1", "SKIPPED", age)) == ("degraded", 1)


def test_summarise_status_zero_configured_scopes_is_error() -> None:
    assert health()[0] == "error"
    assert health(scope("af-south-1", "NOT_ENABLED", None))[0] == "error"


def test_summarise_status_run_fields_come_from_the_full_run_only() -> None:
    scoped = {"runId": "scoped-1", "status": "SUCCESS", "lastSyncTime": utc_now_iso()}
    status = summarise_status(FULL, False, [scope("us-east-1")], stale_after=WINDOW, last_scoped=scoped)
    body = status.to_dict()
    assert body["lastSyncTime"] == FULL["lastSyncTime"] and body["scopesSynced"] == 2
    assert body["lastScopedSync"] == scoped and body["staleScopes"] == 0


def test_sync_report_not_enabled_is_neither_synced_nor_failed() -> None:
    results = [
        ScopeResult(Scope("111122223333", "us-east-1"), ScopeOutcome.SUCCESS),
        ScopeResult(Scope("111122223333", "af-south-1"), ScopeOutcome.NOT_ENABLED),
    ]
    report = SyncReport.from_results(results, duration_ms=1)
    assert (report.status.value, report.scopes_synced, report.scopes_failed) == ("SUCCESS", 1, 0)
    assert report.to_dict()["scopesNotEnabled"] == 1


async def test_lease_seconds_ends_at_the_enclosing_deadline_plus_the_margin() -> None:
    settings = SyncSettings(lease_seconds=900.0)
    with anyio.move_on_after(60):
        await anyio.lowlevel.checkpoint()
        deadline = anyio.current_effective_deadline()
        before = deadline - anyio.current_time()
        seconds = lease_seconds(settings)
        after = deadline - anyio.current_time()
    # The time left on the enclosing deadline when the lease was taken (no wall-clock tolerance).
    assert after <= seconds - LEASE_MARGIN_SECONDS <= before <= 60


async def test_lease_seconds_without_a_deadline_is_the_configured_lifetime() -> None:
    assert lease_seconds(SyncSettings(lease_seconds=900.0), None) == 900.0
    assert lease_seconds(SyncSettings(), 120.0) == 120.0 + LEASE_MARGIN_SECONDS


def test_settings_read_the_stale_window_from_the_environment() -> None:
    assert SyncSettings.from_env({}).stale_after_seconds == 900.0
    assert SyncSettings.from_env({"SYNC_STALE_AFTER_SECONDS": "600"}).stale_after_seconds == 600.0
