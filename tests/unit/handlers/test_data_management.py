"""handlers.data_management with a fake engine: every route, operation and error path."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from handlers import dependencies
from handlers.data_management import lambda_handler
from handlers.operations import RunFailedError
from syncengine.core.errors import (
    AwsError,
    ExecutionInProgressError,
    ExecutionNotFoundError,
    InvalidRequestError,
    RecoveryPlanNotFoundError,
    SyncInProgressError,
)
from syncengine.core.models import (
    HealthStatus,
    Scope,
    ScopeError,
    ScopeOutcome,
    ScopeResult,
    SyncReport,
    SyncStatus,
)
from tests.events_loader import (
    FakeEngine,
    FakeLambdaContext,
    event_names,
    load_event,
    response_headers,
    response_json,
    with_body,
    with_path_parameter,
)

API_EVENTS = event_names("apigw_")
PLAN_NOT_FOUND = "Recovery plan 'plan-001' was not found."


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    fake.install()
    yield fake
    dependencies.reset()


def invoke(event: object, context: FakeLambdaContext | None = None) -> dict:
    return lambda_handler(event, context or FakeLambdaContext())


# -- schedule and direct invocations --------------------------------------------------------------


@pytest.mark.parametrize("name", ["eventbridge_scheduled", "eventbridge_rule_input"])
def test_data_management_schedule_runs_full_sync(engine: FakeEngine, name: str) -> None:
    """The native Scheduled Event and the rule's Input both run a full sync and return the report."""
    result = invoke(load_event(name))

    assert engine.called("sync_all") == [
        {"settings": engine.called("sync_all")[0]["settings"], "account_id": None, "region": None}
    ]
    assert result["status"] == "SUCCESS"
    assert "statusCode" not in result


def test_data_management_scheduled_event_without_resources_still_syncs(engine: FakeEngine) -> None:
    """A hand-made schedule event (no ``resources``) is still a schedule, not a crash."""
    result = invoke({"source": "aws.events", "detail-type": "Scheduled Event"})

    assert result["status"] == "SUCCESS"
    assert len(engine.called("sync_all")) == 1


def test_data_management_scheduled_sync_skips_when_lease_held(engine: FakeEngine) -> None:
    """A full sync still running makes the scheduled run a clear skip, not a crash."""
    engine.errors["sync_all"] = SyncInProgressError("A full sync is already running.")

    result = invoke(load_event("eventbridge_scheduled"))

    assert result == {
        "error": "SYNC_IN_PROGRESS",
        "message": "A full sync is already running.",
        "status": "SKIPPED",
    }


def test_data_management_scheduled_sync_gets_lambda_deadline(engine: FakeEngine) -> None:
    """The run's deadline is the invocation's remaining time minus the safety margin."""
    invoke(load_event("eventbridge_scheduled"), FakeLambdaContext(remaining_ms=120_000))

    settings = engine.called("sync_all")[0]["settings"]
    assert settings.deadline_seconds == pytest.approx(120 - settings.lambda_deadline_margin)


BACKGROUND_EVENTS = [
    pytest.param({"source": "aws.events", "detail-type": "Scheduled Event"}, id="scheduled-event"),
    pytest.param({"operation": "sync_recovery_instances", "trigger": "schedule"}, id="rule-input-trigger"),
    pytest.param({"operation": "sync_recovery_instances", "trigger": "self-invoke"}, id="self-invoke"),
]


def setup_failed_report() -> SyncReport:
    error = ScopeError("", "", "ResourceNotFoundException", "Requested resource not found")
    return SyncReport.from_results([], duration_ms=5, run_id="run-1", extra_errors=(error,))


@pytest.mark.parametrize("event", BACKGROUND_EVENTS)
def test_data_management_background_run_with_unreadable_configuration_raises(engine: FakeEngine, event) -> None:
    """Nobody reads a scheduled or self-invoked run's answer: failing as a whole, it is a Lambda
    error (Errors metric, async retries, failure destination)."""
    engine.report = setup_failed_report()

    with pytest.raises(RunFailedError, match="ResourceNotFoundException"):
        invoke(event)


@pytest.mark.parametrize("event", BACKGROUND_EVENTS)
def test_data_management_background_run_that_crashes_raises(engine: FakeEngine, event) -> None:
    engine.errors["sync_all"] = RuntimeError("bug")

    with pytest.raises(RunFailedError):
        invoke(event)


@pytest.mark.parametrize("event", BACKGROUND_EVENTS)
def test_data_management_background_run_with_a_failed_scope_returns_the_report(engine: FakeEngine, event) -> None:
    """One failed scope is a PARTIAL run, not a failed invocation."""
    failed = ScopeResult(
        Scope("111122223333", "us-east-1"),
        ScopeOutcome.FAILED,
        error=ScopeError("111122223333", "us-east-1", "AccessDenied", "denied"),
    )
    engine.report = SyncReport.from_results([failed], duration_ms=5, run_id="run-1")

    assert invoke(event)["status"] == "FAILED"


def test_data_management_direct_full_sync_failure_keeps_the_contract_body(engine: FakeEngine) -> None:
    """A caller that reads the answer (no trigger) gets the report, as before."""
    engine.report = setup_failed_report()

    result = invoke({"operation": "sync_recovery_instances"})

    assert result["status"] == "FAILED" and result["errors"][0]["errorType"] == "ResourceNotFoundException"


def test_data_management_echoed_input_is_truncated(engine: FakeEngine) -> None:
    """A huge region string is refused with a 400 whose message quotes only a bounded piece."""
    result = invoke({"operation": "sync_recovery_instances", "region": "x" * 100_000})

    assert result["error"] == "INVALID_REQUEST"
    assert len(result["message"]) <= 500


def test_data_management_direct_scoped_sync_returns_report_unwrapped(engine: FakeEngine) -> None:
    result = invoke(load_event("direct_sync_scoped"))

    call = engine.called("sync_all")[0]
    assert (call["account_id"], call["region"]) == ("123456789012", "us-east-1")
    assert set(result) >= {
        "status",
        "instancesUpdated",
        "instancesUnchanged",
        "instancesDeleted",
        "scopesSynced",
        "scopesFailed",
        "durationMs",
        "errors",
    }


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"accountId": "12345"}, id="short-account"),
        pytest.param({"accountId": 123456789012}, id="numeric-account"),
        pytest.param({"accountId": "123456789012\n"}, id="trailing-newline"),
        pytest.param({"accountId": "".join(chr(0x0660 + int(d)) for d in "123456789012")}, id="arabic-digits"),
        pytest.param({"region": "mars-north-1"}, id="unknown-region"),
        pytest.param({"region": ["us-east-1"]}, id="list-region"),
    ],
)
def test_data_management_direct_sync_rejects_bad_scope(engine: FakeEngine, fields: dict) -> None:
    result = invoke({"operation": "sync_recovery_instances", **fields})

    assert result["error"] == "INVALID_REQUEST"
    assert result["message"]
    assert engine.called("sync_all") == []


def test_data_management_direct_status_returns_status_body(engine: FakeEngine) -> None:
    result = invoke(load_event("direct_status"))

    assert result["status"] == "healthy"
    assert "scopes" in result and "statusCode" not in result


def test_data_management_direct_check_existing_returns_route_body(engine: FakeEngine) -> None:
    result = invoke(load_event("direct_check_existing"))

    assert result == {
        "hasExistingInstances": False,
        "existingInstances": [],
        "instanceCount": 0,
        "planId": "plan-001",
    }


def test_data_management_direct_check_existing_unknown_plan(engine: FakeEngine) -> None:
    engine.errors["check_existing_instances"] = RecoveryPlanNotFoundError(PLAN_NOT_FOUND)

    result = invoke(load_event("direct_check_existing"))

    assert result["error"] == "RECOVERY_PLAN_NOT_FOUND"
    assert result["planId"] == "plan-001"


def test_data_management_direct_terminate_returns_route_body(engine: FakeEngine) -> None:
    result = invoke(load_event("direct_terminate"))

    assert engine.called("terminate_execution_instances")[0]["execution_id"] == "exec-00001"
    assert result["noInstancesFound"] is True
    assert result["totalFound"] == 0


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(load_event("direct_unknown_operation"), id="unknown-name"),
        pytest.param({"operation": None}, id="null"),
        pytest.param({"operation": ["sync_recovery_instances"]}, id="list"),
        pytest.param({"operation": "wave_completed"}, id="other-functions-operation"),
    ],
)
def test_data_management_unknown_operation_is_invalid_operation(engine: FakeEngine, event: dict) -> None:
    result = invoke(event)

    assert result["error"] == "INVALID_OPERATION"
    assert "sync_recovery_instances" in result["message"]
    assert engine.calls == []


@pytest.mark.parametrize(
    "event",
    [
        pytest.param([], id="list"),
        pytest.param("sync", id="string"),
        pytest.param(None, id="none"),
        pytest.param({}, id="empty"),
        pytest.param({"Records": [{"eventSource": "aws:sqs"}]}, id="sqs"),
        pytest.param({"source": "aws.events", "detail-type": "AWS API Call"}, id="other-event"),
        pytest.param({"httpMethod": "GET", "requestContext": "x", "path": "/"}, id="broken-api-shape"),
    ],
)
def test_data_management_unmatched_event_gets_clear_error(engine: FakeEngine, event: object) -> None:
    result = invoke(event)

    assert result["error"] == "INVALID_EVENT"
    assert "operation" in result["message"]
    assert engine.calls == []


def test_data_management_clears_log_context_per_invocation(engine: FakeEngine) -> None:
    """A reused container must not carry the previous invocation's log context."""
    structlog.contextvars.bind_contextvars(plan_id="from-a-previous-invocation")

    invoke(load_event("direct_status"), FakeLambdaContext(aws_request_id="req-2"))

    context = structlog.contextvars.get_contextvars()
    assert "plan_id" not in context
    assert context["request_id"] == "req-2"


# -- API Gateway ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["apigw_rest_sync_scoped", "apigw_http_sync_scoped"])
def test_api_scoped_sync_runs_now(engine: FakeEngine, name: str) -> None:
    response = invoke(load_event(name))

    assert response["statusCode"] == 200
    assert response_json(response)["status"] == "SUCCESS"
    call = engine.called("sync_all")[0]
    assert (call["account_id"], call["region"]) == ("123456789012", "us-east-1")
    assert engine.invocations == []


def test_api_sync_base64_body_is_decoded(engine: FakeEngine) -> None:
    response = invoke(load_event("apigw_rest_sync_base64"))

    assert response["statusCode"] == 200
    assert engine.called("sync_all")[0]["region"] == "us-east-1"


@pytest.mark.parametrize("name", ["apigw_rest_sync_full", "apigw_http_sync_full"])
def test_api_full_sync_starts_asynchronously(engine: FakeEngine, name: str) -> None:
    """Past API Gateway's 29 s: the function invokes itself (Event) and answers 202 at once."""
    context = FakeLambdaContext()

    response = invoke(load_event(name), context)

    assert response["statusCode"] == 202
    assert response_json(response)["status"] == "STARTED"
    assert engine.invocations == [
        (context.invoked_function_arn, {"operation": "sync_recovery_instances", "trigger": "self-invoke"})
    ]
    assert engine.called("sync_all") == []


@pytest.mark.parametrize("body", [None, "", "  ", "{}", '{"accountId": null, "region": null}'])
def test_api_sync_without_scope_is_full(engine: FakeEngine, body: str | None) -> None:
    response = invoke(with_body(load_event("apigw_rest_sync_full"), body))

    assert response["statusCode"] == 202


def test_api_full_sync_while_lease_held_is_409(engine: FakeEngine) -> None:
    engine.status = SyncStatus(HealthStatus.RUNNING)

    response = invoke(load_event("apigw_rest_sync_full"))

    assert response["statusCode"] == 409
    assert response_json(response)["error"] == "SYNC_IN_PROGRESS"
    assert engine.invocations == []


def test_api_full_sync_invoke_failure_is_500_without_trace(engine: FakeEngine) -> None:
    engine.errors["invoke_self"] = AwsError("denied", code="AccessDeniedException", operation="lambda:Invoke")

    response = invoke(load_event("apigw_rest_sync_full"))

    body = response_json(response)
    assert response["statusCode"] == 500
    assert body["error"] == "SYNC_START_FAILED"
    assert "Traceback" not in response["body"]


def test_api_full_sync_without_function_name_is_500(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)

    response = invoke(load_event("apigw_rest_sync_full"), FakeLambdaContext(invoked_function_arn=""))

    assert response["statusCode"] == 500
    assert response_json(response)["error"] == "SYNC_START_FAILED"


@pytest.mark.parametrize(
    "name",
    [
        "apigw_rest_sync_malformed_json",
        "apigw_rest_sync_bad_account",
        "apigw_rest_sync_unknown_region",
        "apigw_rest_sync_wrong_type",
        "apigw_rest_sync_not_object",
    ],
)
def test_api_sync_bad_request_is_400_with_sentence(engine: FakeEngine, name: str) -> None:
    response = invoke(load_event(name))

    body = response_json(response)
    assert response["statusCode"] == 400
    assert body["error"] == "INVALID_REQUEST"
    assert body["message"].endswith(".")
    assert engine.calls == []


def test_api_sync_invalid_base64_is_400(engine: FakeEngine) -> None:
    event = load_event("apigw_rest_sync_base64")
    event["body"] = "not base64!"

    response = invoke(event)

    assert response["statusCode"] == 400


@pytest.mark.parametrize("name", ["apigw_rest_status", "apigw_http_status"])
def test_api_status_route_returns_status(engine: FakeEngine, name: str) -> None:
    response = invoke(load_event(name))

    assert response["statusCode"] == 200
    assert response_json(response)["status"] == "healthy"


def test_api_status_failure_is_500(engine: FakeEngine) -> None:
    engine.errors["get_sync_status"] = AwsError("table missing", code="ResourceNotFoundException")

    response = invoke(load_event("apigw_rest_status"))

    assert response["statusCode"] == 500
    assert response_json(response)["error"] == "STATUS_FAILED"


@pytest.mark.parametrize("name", ["apigw_rest_check_existing", "apigw_http_check_existing"])
def test_api_check_existing_returns_body(engine: FakeEngine, name: str) -> None:
    engine.check_body = {
        "hasExistingInstances": True,
        "instanceCount": 1,
        "planId": "plan-001",
        "existingInstances": [{"sourceServerId": "s-1"}],
    }

    response = invoke(load_event(name))

    assert response["statusCode"] == 200
    assert response_json(response) == engine.check_body
    assert engine.called("check_existing_instances")[0]["plan_id"] == "plan-001"


def test_api_check_existing_uses_decoded_path_parameter(engine: FakeEngine) -> None:
    event = with_path_parameter(load_event("apigw_rest_check_existing"), "planId", "plan 1/\u00e9")

    invoke(event)

    assert engine.called("check_existing_instances")[0]["plan_id"] == "plan 1/\u00e9"


def test_api_check_existing_unknown_plan_is_404(engine: FakeEngine) -> None:
    engine.errors["check_existing_instances"] = RecoveryPlanNotFoundError(PLAN_NOT_FOUND)

    response = invoke(load_event("apigw_rest_check_existing"))

    assert response["statusCode"] == 404
    assert response_json(response) == {
        "error": "RECOVERY_PLAN_NOT_FOUND",
        "message": PLAN_NOT_FOUND,
        "planId": "plan-001",
    }


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(AwsError("throttled", code="ProvisionedThroughputExceededException"), id="aws"),
        pytest.param(RuntimeError("bug with /secret/path in it"), id="bug"),
    ],
)
def test_api_check_existing_failure_is_500_check_failed(engine: FakeEngine, error: Exception) -> None:
    engine.errors["check_existing_instances"] = error

    response = invoke(load_event("apigw_rest_check_existing"))

    body = response_json(response)
    assert response["statusCode"] == 500
    assert (body["error"], body["planId"]) == ("CHECK_FAILED", "plan-001")
    assert "Traceback" not in response["body"] and "/secret/path" not in response["body"]


def test_api_check_existing_too_long_plan_id_is_400(engine: FakeEngine) -> None:
    event = with_path_parameter(load_event("apigw_rest_check_existing"), "planId", "p" * 300)

    response = invoke(event)

    assert response["statusCode"] == 400
    assert engine.called("check_existing_instances") == []


@pytest.mark.parametrize("name", ["apigw_rest_terminate", "apigw_http_terminate"])
def test_api_terminate_returns_body(engine: FakeEngine, name: str) -> None:
    response = invoke(load_event(name))

    assert response["statusCode"] == 200
    assert response_json(response)["executionId"] == "exec-00001"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        pytest.param(
            ExecutionNotFoundError("Execution 'exec-00001' was not found."),
            404,
            "EXECUTION_NOT_FOUND",
            id="unknown-execution",
        ),
        pytest.param(
            InvalidRequestError("Execution 'exec-00001' has no waves."), 400, "INVALID_REQUEST", id="no-waves"
        ),
        pytest.param(AwsError("boom", code="InternalServerError"), 500, "TERMINATE_FAILED", id="aws"),
        pytest.param(KeyError("bug"), 500, "TERMINATE_FAILED", id="bug"),
    ],
)
def test_api_terminate_errors_map_to_status(engine: FakeEngine, error: Exception, status: int, code: str) -> None:
    engine.errors["terminate_execution_instances"] = error

    response = invoke(load_event("apigw_rest_terminate"))

    body = response_json(response)
    assert response["statusCode"] == status
    assert body["error"] == code
    assert body["message"]
    assert body["executionId"] == "exec-00001"


def test_api_unknown_route_is_404_json(engine: FakeEngine) -> None:
    response = invoke(load_event("apigw_rest_unknown_route"))

    assert response["statusCode"] == 404
    assert response_json(response)["error"] == "NOT_FOUND"


def test_api_wrong_method_is_404_json(engine: FakeEngine) -> None:
    event = load_event("apigw_rest_status")
    event["httpMethod"] = "DELETE"

    response = invoke(event)

    assert response["statusCode"] == 404
    assert engine.calls == []


@pytest.mark.parametrize("name", API_EVENTS)
def test_api_every_response_is_json_with_cors(engine: FakeEngine, name: str) -> None:
    """Content-Type and CORS on every API response, success or error, with or without Origin."""
    response = invoke(load_event(name))

    headers = response_headers(response)
    assert headers["content-type"] == "application/json"
    assert headers["access-control-allow-origin"] == "*"
    assert isinstance(json.loads(response["body"]), dict)


def test_api_event_a_resolver_cannot_read_is_500_json(engine: FakeEngine) -> None:
    """A broken event past classification still gets a JSON answer, not a crash."""
    event = load_event("apigw_http_status")
    event["requestContext"]["http"] = {"method": 5}

    response = invoke(event)

    assert response["statusCode"] == 500
    assert response_headers(response)["content-type"] == "application/json"
    assert response_json(response)["error"] == "INTERNAL_ERROR"


# -- terminate options, 409, caller identity, budget, preview -----------------------------------------


def test_api_terminate_active_execution_is_409_with_its_status(engine: FakeEngine) -> None:
    engine.errors["terminate_execution_instances"] = ExecutionInProgressError(
        "Execution 'exec-00001' is still RUNNING.", execution_id="exec-00001", execution_status="RUNNING"
    )

    response = invoke(load_event("apigw_rest_terminate"))

    body = response_json(response)
    assert response["statusCode"] == 409
    assert (body["error"], body["executionId"], body["executionStatus"]) == (
        "EXECUTION_IN_PROGRESS",
        "exec-00001",
        "RUNNING",
    )
    assert body["message"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"includeNonDrill": "yes"}, id="string-flag"),
        pytest.param({"force": True}, id="unknown-key"),
        pytest.param([True], id="not-an-object"),
        pytest.param("{not json", id="malformed"),
    ],
)
def test_api_terminate_bad_body_is_400_and_touches_nothing(engine: FakeEngine, body: object) -> None:
    response = invoke(with_body(load_event("apigw_rest_terminate"), body))

    assert response["statusCode"] == 400
    assert response_json(response)["error"] == "INVALID_REQUEST"
    assert response_json(response)["message"].endswith(".")
    assert engine.called("terminate_execution_instances") == []


@pytest.mark.parametrize(
    ("name", "caller", "include_non_drill"),
    [
        pytest.param("apigw_rest_terminate", "7d5c9a8e-0000-4000-8000-000000000001", False, id="rest-cognito"),
        pytest.param(
            "apigw_http_terminate_include_non_drill",
            "arn:aws:sts::111122223333:assumed-role/DrOperator/operator",
            True,
            id="http-iam",
        ),
        pytest.param("apigw_http_terminate", "7d5c9a8e-0000-4000-8000-000000000001", False, id="http-cognito"),
    ],
)
def test_api_terminate_passes_options_caller_and_the_25s_budget(
    engine: FakeEngine, name: str, caller: str | None, include_non_drill: bool
) -> None:
    invoke(load_event(name))

    (call,) = engine.called("terminate_execution_instances")
    options = call["options"]
    assert options.requested_by == caller
    assert options.include_non_drill is include_non_drill
    assert options.budget_seconds == 25.0


def test_direct_terminate_passes_the_flag_and_keeps_the_lambdas_remaining_time(engine: FakeEngine) -> None:
    invoke(load_event("direct_terminate_include_non_drill"), FakeLambdaContext(remaining_ms=600_000))

    (call,) = engine.called("terminate_execution_instances")
    assert call["options"].include_non_drill is True
    assert call["options"].requested_by is None
    assert call["options"].budget_seconds > 25.0


def test_direct_terminate_refuses_an_unknown_key(engine: FakeEngine) -> None:
    result = invoke({**load_event("direct_terminate"), "includeNonDril": True})

    assert result["error"] == "INVALID_REQUEST"
    assert engine.called("terminate_execution_instances") == []


def test_api_scoped_sync_runs_within_the_25s_budget(engine: FakeEngine) -> None:
    invoke(load_event("apigw_rest_sync_scoped"), FakeLambdaContext(remaining_ms=900_000))

    (call,) = engine.called("sync_all")
    settings = call["settings"]
    # The whole request fits the budget: setup and run by the deadline, then the shielded cleanup.
    assert settings.deadline_seconds + settings.cleanup_seconds == 25.0
    assert settings.deadline_seconds >= 20.0


def test_direct_scoped_sync_keeps_the_lambdas_remaining_time(engine: FakeEngine) -> None:
    invoke(load_event("direct_sync_scoped"), FakeLambdaContext(remaining_ms=900_000))

    (call,) = engine.called("sync_all")
    assert call["settings"].deadline_seconds > 25.0


@pytest.mark.parametrize("name", ["apigw_rest_execution_recovery_instances", "apigw_http_execution_recovery_instances"])
def test_api_preview_returns_the_engines_body(engine: FakeEngine, name: str) -> None:
    response = invoke(load_event(name))

    assert response["statusCode"] == 200
    assert response_json(response)["executionId"] == "exec-00001"
    assert [c["execution_id"] for c in engine.called("get_execution_recovery_instances")] == ["exec-00001"]
    assert engine.called("terminate_execution_instances") == []


def test_api_preview_unknown_execution_is_404(engine: FakeEngine) -> None:
    engine.errors["get_execution_recovery_instances"] = ExecutionNotFoundError("Execution 'x' was not found.")

    response = invoke(load_event("apigw_rest_execution_recovery_instances"))

    assert response["statusCode"] == 404
    assert response_json(response)["error"] == "EXECUTION_NOT_FOUND"


def test_direct_preview_returns_the_route_body(engine: FakeEngine) -> None:
    result = invoke(load_event("direct_get_execution_recovery_instances"))

    assert result["executionId"] == "exec-00001" and result["totalInstances"] == 0
