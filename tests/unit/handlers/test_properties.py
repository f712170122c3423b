"""Hypothesis: whatever body, path parameter or direct event arrives, the handlers answer with
JSON and a 4xx at worst (never a 500, never a trace). The engine is a fake; validation is real."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import dependencies
from handlers.data_management import lambda_handler
from tests.events_loader import (
    FakeEngine,
    FakeLambdaContext,
    load_event,
    response_headers,
    response_json,
    with_body,
    with_path_parameter,
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
SCOPE_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "accountId": JSON_VALUES | st.from_regex(r"\A\d{10,14}\Z"),
        "region": JSON_VALUES | st.sampled_from(["us-east-1", "eu-west-1", "US-EAST-1", "us-east-1 ", ""]),
    },
)
BODIES = (
    st.none()
    | st.text(max_size=60)
    | JSON_VALUES.map(json.dumps)
    | SCOPE_FIELDS.map(json.dumps)
    | st.sampled_from(["{", "[1,", '{"accountId": "1"', "\ud800", "null", "NaN", "1e999"])
)
IDENTIFIERS = st.text(max_size=300) | st.sampled_from(["", " ", "\ud800", "a\x00b", "x" * 2000, "../../etc"])
DEEP = FakeLambdaContext()
ALLOWED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    fake.install()
    yield fake
    dependencies.reset()


def assert_clean_api_response(response: dict[str, Any], allowed: set[int]) -> dict[str, Any]:
    assert response["statusCode"] in allowed, response
    assert response_headers(response)["content-type"] == "application/json"
    assert "Traceback" not in response["body"]
    body = response_json(response)
    assert isinstance(body, dict)
    if response["statusCode"] >= 400:
        assert isinstance(body["error"], str) and isinstance(body["message"], str) and body["message"]
    return body


@ALLOWED
@given(body=BODIES, name=st.sampled_from(["apigw_rest_sync_full", "apigw_http_sync_full"]))
def test_api_sync_junk_body_never_500(engine: FakeEngine, body: str | None, name: str) -> None:
    response = lambda_handler(with_body(load_event(name), body), DEEP)

    assert_clean_api_response(response, {200, 202, 400})


@ALLOWED
@given(
    plan_id=IDENTIFIERS,
    name=st.sampled_from(["apigw_rest_check_existing", "apigw_http_check_existing"]),
)
def test_api_check_existing_junk_plan_id_never_500(engine: FakeEngine, plan_id: str, name: str) -> None:
    response = lambda_handler(with_path_parameter(load_event(name), "planId", plan_id), DEEP)

    assert_clean_api_response(response, {200, 400, 404})


@ALLOWED
@given(
    execution_id=IDENTIFIERS,
    name=st.sampled_from(["apigw_rest_terminate", "apigw_http_terminate"]),
)
def test_api_terminate_junk_execution_id_never_500(engine: FakeEngine, execution_id: str, name: str) -> None:
    response = lambda_handler(with_path_parameter(load_event(name), "executionId", execution_id), DEEP)

    assert_clean_api_response(response, {200, 400, 404})


@ALLOWED
@given(
    operation=st.sampled_from(
        [
            "sync_recovery_instances",
            "get_recovery_instance_sync_status",
            "check_existing_recovery_instances",
            "terminate_recovery_instances",
        ]
    )
    | JSON_VALUES,
    fields=st.dictionaries(
        st.sampled_from(["accountId", "region", "planId", "executionId"]) | st.text(max_size=8),
        JSON_VALUES,
        max_size=4,
    ),
)
def test_direct_junk_event_answers_a_dict(engine: FakeEngine, operation: Any, fields: dict[str, Any]) -> None:
    result = lambda_handler({**fields, "operation": operation}, DEEP)

    assert isinstance(result, dict)
    json.dumps(result)
    if "error" in result:
        assert result["error"] != "INTERNAL_ERROR"
        assert isinstance(result["message"], str) and result["message"]
