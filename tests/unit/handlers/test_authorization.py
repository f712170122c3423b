"""Who may terminate (handlers/authorization.py): the terminate route and its preview need the
configured Cognito group, or an IAM-signed request; every other route stays as it is. Also the
custom domain's base path and Cache-Control on every API response."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from handlers import authorization, dependencies, routes
from handlers.api import Api, build_api
from handlers.events import EventKind
from tests.events_loader import FakeEngine, FakeLambdaContext, load_event, response_headers, response_json

GROUP = authorization.DEFAULT_TERMINATE_ALLOWED_GROUP
IAM_USER = "arn:aws:sts::111122223333:assumed-role/orchestration-frontend/session"


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    fake.install()
    yield fake
    dependencies.reset()


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.delenv(authorization.ENV_API_BASE_PATH, raising=False)
    monkeypatch.delenv(authorization.ENV_TERMINATE_ALLOWED_GROUP, raising=False)
    return build_api(routes.read_router, routes.write_router)


def _rest_terminate(groups: str | None) -> dict[str, Any]:
    event = copy.deepcopy(load_event("apigw_rest_terminate"))
    claims = event["requestContext"]["authorizer"]["claims"]
    claims.pop("cognito:groups", None)
    if groups is not None:
        claims["cognito:groups"] = groups
    return event


def _iam_signed(event: dict[str, Any]) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["requestContext"].pop("authorizer", None)
    event["requestContext"]["identity"]["userArn"] = IAM_USER
    return event


def _as_preview(event: dict[str, Any]) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["httpMethod"] = "GET"
    event["path"] = event["path"].replace("terminate-instances", "recovery-instances")
    event["resource"] = event["resource"].replace("terminate-instances", "recovery-instances")
    event["body"] = None
    return event


def _resolve(api: Api, event: dict[str, Any], kind: EventKind = EventKind.API_V1) -> dict[str, Any]:
    return api.resolve(kind, event, FakeLambdaContext())


@pytest.mark.parametrize("groups", [None, "", "Operators", "Operators,Viewers", "[Operators Viewers]"])
def test_authorization_terminate_outside_the_group_is_forbidden(
    api: Api, engine: FakeEngine, groups: str | None
) -> None:
    response = _resolve(api, _rest_terminate(groups))
    assert response["statusCode"] == 403
    body = response_json(response)
    assert body["error"] == "FORBIDDEN"
    assert GROUP in body["message"]
    assert engine.called("terminate_execution_instances") == []


@pytest.mark.parametrize("groups", [GROUP, f"Operators,{GROUP}", f"[Viewers {GROUP}]"])
def test_authorization_terminate_in_the_group_reaches_the_engine(api: Api, engine: FakeEngine, groups: str) -> None:
    response = _resolve(api, _rest_terminate(groups))
    assert response["statusCode"] == 200
    assert engine.called("terminate_execution_instances")[0]["execution_id"] == "exec-00001"


def test_authorization_configured_group_replaces_the_default(
    api: Api, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(authorization.ENV_TERMINATE_ALLOWED_GROUP, "DrAdmins")
    assert _resolve(api, _rest_terminate(GROUP))["statusCode"] == 403
    assert _resolve(api, _rest_terminate("DrAdmins"))["statusCode"] == 200


def test_authorization_http_api_jwt_groups_are_read(api: Api, engine: FakeEngine) -> None:
    event = copy.deepcopy(load_event("apigw_http_terminate"))
    event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = "[Viewers]"
    assert _resolve(api, event, EventKind.API_V2)["statusCode"] == 403
    event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = f"[Viewers {GROUP}]"
    assert _resolve(api, event, EventKind.API_V2)["statusCode"] == 200


def test_authorization_iam_signed_request_is_allowed(api: Api, engine: FakeEngine) -> None:
    """With IAM auth, API Gateway evaluated the caller's policy for this very method."""
    response = _resolve(api, _iam_signed(load_event("apigw_rest_terminate")))
    assert response["statusCode"] == 200


def test_authorization_unauthenticated_request_is_forbidden(api: Api, engine: FakeEngine) -> None:
    """A method reached with AuthorizationType NONE carries neither claims nor an IAM caller."""
    event = copy.deepcopy(load_event("apigw_rest_terminate"))
    event["requestContext"].pop("authorizer")
    response = _resolve(api, event)
    assert response["statusCode"] == 403
    assert response_json(response)["error"] == "FORBIDDEN"
    assert engine.called("terminate_execution_instances") == []


def test_authorization_preview_needs_the_group_too(api: Api, engine: FakeEngine) -> None:
    assert _resolve(api, _as_preview(_rest_terminate("Viewers")))["statusCode"] == 403
    assert _resolve(api, _as_preview(_rest_terminate(GROUP)))["statusCode"] == 200


def test_authorization_read_routes_stay_open_to_any_signed_in_user(api: Api, engine: FakeEngine) -> None:
    response = _resolve(api, load_event("apigw_rest_status"))
    assert response["statusCode"] == 200


@pytest.mark.parametrize("name", ["apigw_rest_status", "apigw_rest_check_existing", "apigw_rest_unknown_route"])
def test_authorization_every_response_is_no_store(api: Api, engine: FakeEngine, name: str) -> None:
    response = _resolve(api, load_event(name))
    assert response_headers(response)["cache-control"] == "no-store"


def test_authorization_forbidden_response_is_no_store_with_cors(api: Api, engine: FakeEngine) -> None:
    headers = response_headers(_resolve(api, _rest_terminate(None)))
    assert headers["cache-control"] == "no-store"
    assert headers["access-control-allow-origin"] == "*"


def test_api_base_path_is_stripped(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a custom domain mapped at /drs-api, the path arrives with that prefix."""
    monkeypatch.setenv(authorization.ENV_API_BASE_PATH, "/drs-api/")
    api = build_api(routes.read_router, routes.write_router)
    event = copy.deepcopy(load_event("apigw_rest_status"))
    event["path"] = "/drs-api" + event["path"]
    assert _resolve(api, event)["statusCode"] == 200


def test_api_base_path_terminate_is_still_guarded(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(authorization.ENV_API_BASE_PATH, "drs-api")
    api = build_api(routes.read_router, routes.write_router)
    event = _rest_terminate("Viewers")
    event["path"] = "/drs-api" + event["path"]
    assert _resolve(api, event)["statusCode"] == 403
    assert engine.called("terminate_execution_instances") == []


@pytest.mark.parametrize(
    ("value", "groups"),
    [
        pytest.param("a,b", {"a", "b"}, id="rest-comma"),
        pytest.param("[a b]", {"a", "b"}, id="http-brackets"),
        pytest.param(["a", "b"], {"a", "b"}, id="list"),
        pytest.param("a", {"a"}, id="single"),
        pytest.param(None, set(), id="absent"),
        pytest.param(7, set(), id="junk"),
    ],
)
def test_authorization_parse_groups(value: Any, groups: set[str]) -> None:
    assert authorization.parse_groups(value) == groups


@pytest.mark.parametrize(
    ("path", "protected"),
    [
        ("/executions/e-1/terminate-instances", True),
        ("/executions/e-1/recovery-instances", True),
        ("/executions/e-1/recovery-instances/", True),
        ("/recovery-plans/p-1/check-existing-instances", False),
        ("/drs/recovery-instance-sync", False),
        ("/executions/e-1/terminate-instances/extra", False),
        ("/prod/executions/e-1/terminate-instances", True),
    ],
)
def test_authorization_paths_matched(path: str, protected: bool) -> None:
    assert authorization.is_terminate_path(path) is protected


@pytest.mark.parametrize(
    ("groups", "terminate", "preview"),
    [
        pytest.param("DRSOrchestrationAdmin", 200, 200, id="admin"),
        pytest.param("DRSRecoveryManager", 200, 200, id="recovery-manager"),
        pytest.param("aws:admin-limited", 200, 200, id="alias"),
        pytest.param("DRSReadOnly", 403, 200, id="read-only-previews"),
        pytest.param("[DRSOperator DRSPlanManager]", 403, 200, id="operator"),
        pytest.param("Viewers", 403, 403, id="unknown-group"),
    ],
)
def test_authorization_follows_the_orchestrations_rbac(
    api: Api, engine: FakeEngine, groups: str, terminate: int, preview: int
) -> None:
    """Its roles decide as its ENDPOINT_PERMISSIONS do (lambda/shared/rbac_middleware.py):
    TERMINATE_INSTANCES for terminate, VIEW_EXECUTIONS for the preview."""
    assert _resolve(api, _rest_terminate(groups))["statusCode"] == terminate
    assert _resolve(api, _as_preview(_rest_terminate(groups)))["statusCode"] == preview


def test_routes_accept_the_orchestrations_id_path_parameter(api: Api, engine: FakeEngine) -> None:
    """Its API names the execution resource ``{id}``: the decoded parameter is read under it."""
    event = _rest_terminate(GROUP)
    event["pathParameters"] = {"id": "exec 1"}
    event["path"] = event["path"].replace("exec-00001", "exec%201")
    assert _resolve(api, event)["statusCode"] == 200
    assert [c["execution_id"] for c in engine.called("terminate_execution_instances")] == ["exec 1"]
