"""syncengine.sync.run: a run's report and metrics, however it ended."""

from __future__ import annotations

from syncengine.core import metrics as m
from syncengine.core.models import AccountTarget, Scope, ScopeOutcome, ScopeResult
from syncengine.sync.run import RunRequest, RunState, _report, deadline_skipped_report

A = Scope("123456789012", "us-east-1")
B = Scope("123456789012", "eu-west-1")


def _state(*scopes: Scope) -> RunState:
    state = RunState(RunRequest(full=True))
    state.planned = [(scope, AccountTarget(account_id=scope.account_id)) for scope in scopes]
    return state


def test_run_report_lists_unstarted_scopes_as_skipped_by_the_deadline() -> None:
    state = _state(A, B)
    state.results[A] = ScopeResult(A, ScopeOutcome.SUCCESS)
    report = _report(state)
    assert [r.outcome for r in report.scopes] == [ScopeOutcome.SUCCESS, ScopeOutcome.SKIPPED]
    assert report.scopes[1].error is not None
    assert report.scopes[1].error.error_type == "DeadlineExceeded"


def test_run_report_counts_removed_scopes_records_as_deleted() -> None:
    state = _state(A)
    state.results[A] = ScopeResult(A, ScopeOutcome.SUCCESS, deleted=2)
    state.removed.scopes, state.removed.records = 1, 5
    report = _report(state)
    assert (report.scopes_removed, report.instances_deleted) == (1, 7)


def test_run_error_names_the_requested_scope() -> None:
    state = RunState(RunRequest(full=False, account_id="123456789012", region="us-east-1"))
    state.run_error("AccessDenied", "no")
    assert (state.errors[0].account_id, state.errors[0].region) == ("123456789012", "us-east-1")


def test_run_deadline_skipped_report_touches_nothing() -> None:
    report = deadline_skipped_report(A, "no time left")
    assert [r.outcome for r in report.scopes] == [ScopeOutcome.SKIPPED]
    assert report.instances_updated == report.instances_deleted == 0


def test_run_metrics_names_are_known() -> None:
    """Every metric the run emits is one the monitoring stack knows (metrics.UNITS)."""
    from syncengine.sync.run import _run_metrics

    class _Stats:
        throttle_retries = 0
        dynamodb_throttles = 0

    class _Rt:
        stats = _Stats()

    report = _report(_state())
    emitted = _run_metrics(_Rt(), report, full=True)  # type: ignore[arg-type]
    assert set(emitted) <= m.METRIC_NAMES
    assert m.FULL_SYNC_HEARTBEAT not in emitted  # nothing synced: no heartbeat
