"""handlers.execution: the wave-completion sync never raises and counts every failure."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from handlers import dependencies
from handlers.execution import WAVE_SYNC_BUDGET_SECONDS, lambda_handler, sync_recovery_instances_after_wave
from syncengine.core.config import SyncSettings
from syncengine.core.errors import AccessDeniedError, ExecutionNotFoundError
from syncengine.core.models import RunStatus, Scope, ScopeError, SyncReport
from syncengine.refresh.waves import WaveSyncResult, WaveTarget
from tests.events_loader import FakeEngine, FakeLambdaContext, load_event

WAVE = {
    "waveNumber": 2,
    "region": "us-east-1",
    "accountId": "123456789012",
    "protectionGroupId": "pg-1",
    "serverStatuses": [{"sourceServerId": "s-1234567890abcdef0", "launchStatus": "LAUNCHED"}],
}


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    # Metrics on, so the tests can read the WaveSyncErrors line from stdout.
    fake.install(SyncSettings(emit_metrics=True))
    yield fake
    dependencies.reset()


def wave_sync_errors(stdout: str) -> list[int]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]
    return [sum(line["WaveSyncErrors"]) for line in lines if "WaveSyncErrors" in line]


def synced_result(*, failed: bool = False) -> WaveSyncResult:
    scope = Scope("123456789012", "us-east-1")
    errors = (ScopeError(scope.account_id, scope.region, "ThrottlingException", "slow down"),) if failed else ()
    report = SyncReport(
        status=RunStatus.FAILED if failed else RunStatus.SUCCESS,
        instances_updated=0 if failed else 1,
        instances_unchanged=0,
        instances_deleted=0,
        scopes_synced=0 if failed else 1,
        scopes_failed=1 if failed else 0,
        duration_ms=10,
        errors=errors,
    )
    return WaveSyncResult("exec-1", "plan-1", 2, (WaveTarget(scope, ("s-1234567890abcdef0",)),), (report,))


def test_wave_sync_passes_the_wave_to_the_engine(engine: FakeEngine) -> None:
    engine.wave_result = synced_result()

    result = sync_recovery_instances_after_wave("exec-1", "plan-1", WAVE)

    call = engine.called("sync_wave")[0]
    assert (call["execution_id"], call["plan_id"], call["wave"], call["wave_number"]) == (
        "exec-1",
        "plan-1",
        WAVE,
        2,
    )
    assert result["status"] == "SYNCED"
    assert result["scopes"] == [{"accountId": "123456789012", "region": "us-east-1", "serverCount": 1}]


def test_wave_sync_success_counts_zero_errors(engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    engine.wave_result = synced_result()

    sync_recovery_instances_after_wave("exec-1", "plan-1", WAVE)

    assert wave_sync_errors(capsys.readouterr().out) == [0]


def test_wave_sync_failed_scope_is_counted_not_raised(engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    engine.wave_result = synced_result(failed=True)

    result = sync_recovery_instances_after_wave("exec-1", "plan-1", WAVE)

    assert result["status"] == "FAILED"
    assert result["errors"][0]["errorType"] == "ThrottlingException"
    assert wave_sync_errors(capsys.readouterr().out) == [1]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        pytest.param(AccessDeniedError("cannot assume role", code="AccessDenied"), "ACCESS_DENIED", id="aws"),
        pytest.param(ExecutionNotFoundError("Execution 'exec-1' was not found."), "EXECUTION_NOT_FOUND", id="no-exec"),
        pytest.param(RuntimeError("a bug"), "INTERNAL_ERROR", id="bug"),
    ],
)
def test_wave_sync_engine_error_never_raises(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str], error: Exception, code: str
) -> None:
    engine.errors["sync_wave"] = error

    result = sync_recovery_instances_after_wave("exec-1", "plan-1", WAVE)

    assert (result["status"], result["error"]) == ("FAILED", code)
    assert "Traceback" not in json.dumps(result)
    assert wave_sync_errors(capsys.readouterr().out) == [1]


def test_wave_sync_is_bounded_in_time(engine: FakeEngine) -> None:
    """The wave must not wait on a slow region: the run's deadline is at most the budget."""
    sync_recovery_instances_after_wave("exec-1", "plan-1", WAVE, context=FakeLambdaContext(remaining_ms=900_000))

    settings = engine.called("sync_wave")[0]["settings"]
    assert settings.deadline_seconds <= WAVE_SYNC_BUDGET_SECONDS


def test_wave_completed_event_syncs_that_wave(engine: FakeEngine) -> None:
    result = lambda_handler(load_event("wave_completed"), FakeLambdaContext())

    call = engine.called("sync_wave")[0]
    assert (call["execution_id"], call["plan_id"], call["wave_number"]) == ("exec-00001", "plan-001", 1)
    assert result["status"] == "SKIPPED"


def test_wave_completed_event_with_wave_dict_passes_it(engine: FakeEngine) -> None:
    event = {**load_event("wave_completed"), "wave": WAVE, "waveNumber": 2}

    lambda_handler(event, FakeLambdaContext())

    assert engine.called("sync_wave")[0]["wave"] == WAVE


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(load_event("direct_status"), id="other-operation"),
        pytest.param(load_event("eventbridge_scheduled"), id="schedule"),
        pytest.param([], id="list"),
        pytest.param(None, id="none"),
    ],
)
def test_wave_handler_ignores_other_events(engine: FakeEngine, event: object) -> None:
    result = lambda_handler(event, FakeLambdaContext())

    assert (result["status"], result["error"]) == ("IGNORED", "INVALID_OPERATION")
    assert engine.calls == []


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({"operation": "wave_completed"}, id="no-fields"),
        pytest.param({"operation": "wave_completed", "executionId": 7, "waveNumber": "x"}, id="wrong-types"),
        pytest.param({"operation": "wave_completed", "executionId": "e", "wave": "not-a-dict"}, id="wave-string"),
    ],
)
def test_wave_handler_junk_fields_never_raise(engine: FakeEngine, event: dict) -> None:
    result = lambda_handler(event, FakeLambdaContext())

    assert isinstance(result, dict) and "status" in result
