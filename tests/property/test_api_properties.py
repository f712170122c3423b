"""Junk API input never yields a 500, with the real engine behind the data-management handler.

``tests/unit/handlers/test_properties.py`` proves the handler's own parsing against a fake
engine. Here nothing is faked but the self-invoke: random bodies, path parameters and direct
events go through the handler into the engine, a real DynamoDB server and the simulated estate,
so an id that passes validation but breaks a DynamoDB key, an account id the validator lets
through, or an engine error that escapes would all show up as a 500.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.tables import create_tables, delete_tables
from handlers import dependencies
from handlers.data_management import lambda_handler
from syncengine.core.config import SyncSettings
from syncengine.sync.engine import sync_all
from tests.events_loader import FakeLambdaContext, load_event, response_json, with_body, with_path_parameter
from tests.fixtures.dynamodb import TEST_REGION, DynamoDBTables, unique_table_names
from tests.integration.engine_support import engine_settings, seed
from tests.property.conftest import SERVER_EXAMPLES

# Cheap examples (one handler call each): several times the server-property budget.
API_EXAMPLES = SERVER_EXAMPLES * 8
CONTEXT = FakeLambdaContext()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
# Strings a validator might wave through: valid-looking, nearly valid, and hostile.
# Arabic-Indic and full-width digits are written as escapes: \d matches them in a str pattern.
ARABIC_INDIC_ACCOUNT = "".join(chr(0x0660 + int(d)) for d in "123456789012")
FULL_WIDTH_ACCOUNT = "".join(chr(0xFF10 + int(d)) for d in "123456789012")
nearly_accounts = st.sampled_from(
    [
        "123456789012",
        "123456789012\n",
        " 123456789012",
        "12345678901",
        "1234567890123",
        ARABIC_INDIC_ACCOUNT,
        FULL_WIDTH_ACCOUNT,
        "12345678901a",
        "000000000000",
        "-12345678901",
        "1.2345678901e11",
    ]
)
nearly_regions = st.sampled_from(
    [
        "us-east-1",
        "eu-west-1",
        "us-east-1\n",
        "US-EAST-1",
        "us-east-1 ",
        "moon-1",
        "",
        "us-gov-west-1",
        "cn-north-1",
        "us-east-1/../x",
        "*",
    ]
)
identifiers = (
    st.text(min_size=1, max_size=300)
    | st.text(alphabet=st.characters(min_codepoint=0x10000, max_codepoint=0x1FFFF), min_size=200, max_size=256)
    | st.sampled_from(["plan-1", "exec-1", "../../x", "%2F", "a/b", "' OR 1=1 --", "#pk", ":v", "${x}", " x "])
)


@pytest.fixture
def real_engine(backend: tuple[str, str], make_simulator: Any) -> Iterator[dict[str, Any]]:
    """The handler wired to the real engine: a small estate, seeded tables, one sync done."""
    endpoint, name = backend
    sim = make_simulator(accounts=2, regions=("us-east-1", "eu-west-1"), instances_per_scope=4, seed=61)
    tables = DynamoDBTables(endpoint_url=endpoint, backend=name, tables=unique_table_names())
    settings_ = engine_settings(tables, sim, scope_lease_wait=10.0)
    invocations: list[tuple[str, dict[str, Any]]] = []

    async def invoke_self(function: str, payload: Mapping[str, Any], _settings: SyncSettings) -> None:
        invocations.append((function, dict(payload)))

    async def setup() -> None:
        await create_tables(tables.tables, endpoint_url=endpoint, region=TEST_REGION)
        await seed(settings_, sim.estate)
        await sync_all(settings_)

    asyncio.run(setup())
    dependencies.configure(settings=settings_, invoke_self=invoke_self)
    try:
        yield {"sim": sim, "settings": settings_, "invocations": invocations}
    finally:
        dependencies.reset()
        asyncio.run(delete_tables(tables.tables, endpoint_url=endpoint, region=TEST_REGION))


def assert_not_a_500(response: dict[str, Any]) -> dict[str, Any]:
    assert response["statusCode"] < 500, response
    body = response_json(response)
    assert isinstance(body, dict)
    assert "Traceback" not in response["body"]
    if response["statusCode"] >= 400:
        assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str)
    return body


@settings(max_examples=API_EXAMPLES)
@given(
    body=st.none()
    | st.text(max_size=40)
    | json_values.map(json.dumps)
    | st.fixed_dictionaries(
        {}, optional={"accountId": nearly_accounts | json_values, "region": nearly_regions | json_values}
    ).map(json.dumps),
    name=st.sampled_from(["apigw_rest_sync_scoped", "apigw_http_sync_scoped"]),
)
def test_sync_route_with_junk_bodies_never_answers_500(real_engine, body, name) -> None:
    """POST /drs/recovery-instance-sync with any body: 200 (a real scoped sync), 202, 400 or 409."""
    response = lambda_handler(with_body(load_event(name), body), CONTEXT)

    result = assert_not_a_500(response)
    assert response["statusCode"] in {200, 202, 400, 409}
    if response["statusCode"] == 200:
        assert result["status"] in {"SUCCESS", "PARTIAL", "FAILED"}


@settings(max_examples=API_EXAMPLES)
@given(
    value=identifiers,
    route=st.sampled_from(
        [
            ("apigw_rest_check_existing", "planId"),
            ("apigw_http_check_existing", "planId"),
            ("apigw_rest_terminate", "executionId"),
            ("apigw_http_terminate", "executionId"),
        ]
    ),
)
def test_id_routes_with_junk_path_parameters_never_answer_500(real_engine, value, route) -> None:
    """Check-existing and terminate with any plan/execution id reach DynamoDB (or are refused)
    without a 500: the id is a bound key value, never part of an expression."""
    name, parameter = route
    response = lambda_handler(with_path_parameter(load_event(name), parameter, value), CONTEXT)

    assert_not_a_500(response)
    assert response["statusCode"] in {200, 400, 404}


@settings(max_examples=API_EXAMPLES)
@given(
    operation=st.sampled_from(
        [
            "sync_recovery_instances",
            "get_recovery_instance_sync_status",
            "check_existing_recovery_instances",
            "terminate_recovery_instances",
        ]
    )
    | json_values,
    fields=st.fixed_dictionaries(
        {},
        optional={
            "accountId": nearly_accounts | json_values,
            "region": nearly_regions | json_values,
            "planId": identifiers | json_values,
            "executionId": identifiers | json_values,
        },
    ),
)
def test_direct_invocations_with_junk_fields_never_fail_internally(real_engine, operation, fields) -> None:
    """Direct invocations answer a dict; any error is the caller's (no INTERNAL_ERROR, no *_FAILED)."""
    result = lambda_handler({**fields, "operation": operation}, CONTEXT)

    assert isinstance(result, dict)
    json.dumps(result)
    error = result.get("error")
    assert error is None or (error != "INTERNAL_ERROR" and not error.endswith("_FAILED")), result
