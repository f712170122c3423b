"""The sync after a wave completes: the wave's account and region, the wave's servers only.

It never raises and never fails the wave: the wave already reached COMPLETED, and a stale cache
for a few minutes (until the next scheduled sync) is better than a failed recovery. Every
failure is logged and counted (``WaveSyncErrors``), and the run is bounded in time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers import dependencies
from handlers.dispatch import start_invocation
from handlers.events import WaveCompletedEvent
from syncengine.core import metrics as m
from syncengine.core.errors import SyncEngineError
from syncengine.core.logging import configure_logging, get_logger
from syncengine.core.resident import run_blocking

configure_logging()
log = get_logger(__name__)
dependencies.current()

WAVE_COMPLETED = "wave_completed"
# A wave sync covers a handful of servers in one scope: seconds. The bound keeps a throttled
# region from holding the caller for long.
WAVE_SYNC_BUDGET_SECONDS = 120.0


def _count_errors(errors: int, **properties: Any) -> None:
    settings = dependencies.current().settings
    emitter = m.MetricsEmitter(
        enabled=settings.emit_metrics, namespace=settings.metrics_namespace, environment=settings.environment
    )
    emitter.emit({m.WAVE_SYNC_ERRORS: errors}, **properties)


def sync_recovery_instances_after_wave(
    execution_id: Any, plan_id: Any, wave: Any, *, context: Any = None
) -> dict[str, Any]:
    """Sync what ``wave`` launched; returns what it did. Never raises (errors are counted).

    ``wave``: ``waveNumber``, ``region``, ``accountId``?, ``protectionGroupId(s)``,
    ``serverStatuses`` / ``serverIds``; whatever it lacks comes from the execution item and the
    protection groups.
    """
    wave_map = wave if isinstance(wave, Mapping) else {}
    wave_number = wave_map.get("waveNumber")
    summary: dict[str, Any] = {"executionId": execution_id, "planId": plan_id, "waveNumber": wave_number}
    try:
        deps = dependencies.current()
        budget = min(deps.settings.deadline_seconds or WAVE_SYNC_BUDGET_SECONDS, WAVE_SYNC_BUDGET_SECONDS)
        settings = dependencies.deadline_from_lambda(deps.settings.with_changes(deadline_seconds=budget), context)
        result = run_blocking(
            deps.engine.sync_wave,
            settings,
            execution_id,
            plan_id if isinstance(plan_id, str) and plan_id else None,
            wave=wave_map or None,
            wave_number=wave_number,
        )
        summary = result.to_dict()
        errors = 0 if summary["status"] in ("SYNCED", "SKIPPED") else 1
        log.info("wave_sync_finished", **{k: summary[k] for k in ("status", "executionId", "waveNumber")})
    except SyncEngineError as exc:
        errors = 1
        summary.update(status="FAILED", error=exc.error_code, message=str(exc))
        log.warning("wave_sync_failed", error_type=exc.error_code, error=str(exc))
    except Exception as exc:
        errors = 1
        summary.update(
            status="FAILED", error="INTERNAL_ERROR", message="The wave sync failed; details are in the logs."
        )
        log.exception("wave_sync_failed", error_type=type(exc).__name__)
    try:
        _count_errors(errors, executionId=str(execution_id)[:256])
    except Exception:  # counting must not turn into the failure it counts
        log.exception("wave_sync_metric_failed")
    return summary


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """``{"operation": "wave_completed", "executionId", "planId", "waveNumber", "wave"?}``."""
    start_invocation(context)
    if not isinstance(event, Mapping) or event.get("operation") != WAVE_COMPLETED:
        operation = event.get("operation") if isinstance(event, Mapping) else None
        log.warning("wave_event_ignored", operation=str(operation)[:100])
        return {
            "status": "IGNORED",
            "error": "INVALID_OPERATION",
            "message": f"This function handles only {{'operation': '{WAVE_COMPLETED}'}} events.",
        }
    completed = WaveCompletedEvent(dict(event))
    wave = completed.wave if isinstance(completed.wave, Mapping) else {}
    if completed.wave_number is not None:
        wave = {**wave, "waveNumber": completed.wave_number}
    return sync_recovery_instances_after_wave(completed.execution_id, completed.plan_id, wave, context=context)
