"""handlers.query: the read-only routes and operations, and nothing that writes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from handlers import dependencies
from handlers.query import lambda_handler
from tests.events_loader import FakeEngine, FakeLambdaContext, load_event, response_headers, response_json


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    fake.install()
    yield fake
    dependencies.reset()


@pytest.mark.parametrize(
    "name",
    [
        "apigw_rest_status",
        "apigw_http_status",
        "apigw_rest_check_existing",
        "apigw_http_check_existing",
        "apigw_rest_execution_recovery_instances",
        "apigw_http_execution_recovery_instances",
    ],
)
def test_query_serves_read_routes(engine: FakeEngine, name: str) -> None:
    response = lambda_handler(load_event(name), FakeLambdaContext())

    assert response["statusCode"] == 200
    assert response_headers(response)["content-type"] == "application/json"


@pytest.mark.parametrize(
    "name", ["apigw_rest_sync_full", "apigw_rest_sync_scoped", "apigw_rest_terminate", "apigw_http_terminate"]
)
def test_query_does_not_serve_write_routes(engine: FakeEngine, name: str) -> None:
    """The query function's role cannot write: sync and terminate routes are not found here."""
    response = lambda_handler(load_event(name), FakeLambdaContext())

    assert response["statusCode"] == 404
    assert response_json(response)["error"] == "NOT_FOUND"
    assert engine.calls == [] and engine.invocations == []


def test_query_direct_status_returns_status_body(engine: FakeEngine) -> None:
    result = lambda_handler(load_event("direct_status"), FakeLambdaContext())

    assert result["status"] == "healthy"


def test_query_direct_check_existing_returns_route_body(engine: FakeEngine) -> None:
    result = lambda_handler(load_event("direct_check_existing"), FakeLambdaContext())

    assert result["planId"] == "plan-001"
    assert result["hasExistingInstances"] is False


def test_query_direct_preview_returns_route_body(engine: FakeEngine) -> None:
    result = lambda_handler(load_event("direct_get_execution_recovery_instances"), FakeLambdaContext())

    assert result["executionId"] == "exec-00001"
    assert engine.called("get_execution_recovery_instances") != []


@pytest.mark.parametrize("name", ["direct_sync_scoped", "direct_terminate", "eventbridge_rule_input"])
def test_query_rejects_write_operations(engine: FakeEngine, name: str) -> None:
    result = lambda_handler(load_event(name), FakeLambdaContext())

    assert result["error"] == "INVALID_OPERATION"
    assert engine.calls == []


def test_query_does_not_run_the_schedule(engine: FakeEngine) -> None:
    result = lambda_handler(load_event("eventbridge_scheduled"), FakeLambdaContext())

    assert result["error"] == "INVALID_EVENT"
    assert "EventBridge" not in result["message"]
    assert engine.calls == []
