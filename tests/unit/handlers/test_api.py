"""handlers.api: resolvers built from routers map the engine's error tree and hide bugs."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.event_handler.api_gateway import Router

from handlers.api import build_api
from handlers.events import EventKind
from syncengine.core.errors import (
    AwsError,
    ExecutionNotFoundError,
    InvalidRequestError,
    SyncEngineError,
    SyncInProgressError,
)
from tests.events_loader import FakeLambdaContext, load_event, response_headers, response_json

router = Router()
RAISED: list[Exception] = []


@router.get("/drs/recovery-instance-sync/status")
def raising_route() -> dict:
    raise RAISED[0]


API = build_api(router)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        pytest.param(InvalidRequestError("accountId must be 12 digits."), 400, "INVALID_REQUEST", id="invalid"),
        pytest.param(ExecutionNotFoundError("Execution 'e' was not found."), 404, "EXECUTION_NOT_FOUND", id="404"),
        pytest.param(SyncInProgressError("A full sync is running."), 409, "SYNC_IN_PROGRESS", id="409"),
        pytest.param(AwsError("boom", code="InternalServerError"), 500, "INTERNAL_ERROR", id="aws"),
        pytest.param(SyncEngineError("odd"), 500, "INTERNAL_ERROR", id="engine"),
        pytest.param(ZeroDivisionError("division by zero at line 12"), 500, "INTERNAL_ERROR", id="bug"),
    ],
)
@pytest.mark.parametrize("kind", [EventKind.API_V1, EventKind.API_V2])
def test_api_error_handlers_map_the_error_tree(error: Exception, status: int, code: str, kind: EventKind) -> None:
    RAISED[:] = [error]
    name = "apigw_rest_status" if kind is EventKind.API_V1 else "apigw_http_status"

    response = API.resolve(kind, load_event(name), FakeLambdaContext())

    body = response_json(response)
    assert response["statusCode"] == status
    assert body["error"] == code and body["message"]
    assert "line 12" not in response["body"] and "Traceback" not in response["body"]
    assert response_headers(response)["content-type"] == "application/json"
    assert response_headers(response)["access-control-allow-origin"] == "*"


def test_api_sync_budget_holds_deadline_and_cleanup_together() -> None:
    """An API scoped sync's deadline plus its shielded cleanup fit API_BUDGET_SECONDS (API
    Gateway allows 29 s), and a shorter Lambda deadline still wins."""
    from handlers.operations import API_BUDGET_SECONDS, within_budget
    from syncengine.core.config import SyncSettings

    bounded = within_budget(SyncSettings(), API_BUDGET_SECONDS)
    assert bounded.deadline_seconds is not None
    assert bounded.deadline_seconds + bounded.cleanup_seconds <= API_BUDGET_SECONDS
    shorter = within_budget(SyncSettings(deadline_seconds=5.0), API_BUDGET_SECONDS)
    assert shorter.deadline_seconds == 5.0
