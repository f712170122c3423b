"""The five API routes, on two routers: ``read_router`` (status, check-existing, the terminate
preview; also served by the read-only query handler) and ``write_router`` (on-demand sync,
terminate)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from handlers import dependencies, operations
from handlers.api import json_response
from syncengine.core.errors import InvalidRequestError

read_router = Router()
write_router = Router()


def _raw_event(router: Router) -> Mapping[str, Any]:
    return router.current_event.raw_event


def path_parameter(router: Router, name: str, matched: str) -> str:
    """API Gateway's decoded path parameter when it sent one (under our name, or ``id``: the
    orchestration's API names both its plan and execution resources ``{id}``,
    cfn/apigateway/resources-stack.yaml), else the route's match decoded."""
    params = _raw_event(router).get("pathParameters")
    if isinstance(params, Mapping):
        for key in (name, "id"):
            if isinstance(params.get(key), str):
                return str(params[key])
    return unquote(matched)


@read_router.get("/drs/recovery-instance-sync/status")
def get_sync_status() -> Response:
    return json_response(operations.sync_status(dependencies.current()))


@read_router.get("/recovery-plans/<planId>/check-existing-instances")
def check_existing_instances(planId: str) -> Response:
    plan_id = path_parameter(read_router, "planId", planId)
    return json_response(operations.check_existing(dependencies.current(), plan_id))


@read_router.get("/executions/<executionId>/recovery-instances")
def execution_recovery_instances(executionId: str) -> Response:
    execution_id = path_parameter(read_router, "executionId", executionId)
    return json_response(operations.execution_recovery_instances(dependencies.current(), execution_id))


def _lookup(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def caller_identity(event: Mapping[str, Any]) -> str | None:
    """Who asked, as API Gateway passed it: the IAM user/role ARN (IAM authorization) or the
    Cognito ``sub`` (user pool authorizer), for REST (v1) and HTTP (v2) events."""
    context = event.get("requestContext")
    for path in (
        ("identity", "userArn"),  # REST, IAM authorization
        ("authorizer", "claims", "sub"),  # REST, Cognito user pool authorizer
        ("authorizer", "iam", "userArn"),  # HTTP, IAM authorization
        ("authorizer", "jwt", "claims", "sub"),  # HTTP, JWT (Cognito) authorizer
    ):
        value = _lookup(context, *path)
        if isinstance(value, str) and value:
            return value[:2048]
    return None


@write_router.post("/drs/recovery-instance-sync")
def start_sync() -> Response:
    event = _raw_event(write_router)
    try:
        encoded = bool(event.get("isBase64Encoded"))
        data = operations.parse_json_body(event.get("body"), base64_encoded=encoded)
        request = operations.parse_sync_request(data)
    except InvalidRequestError as exc:
        return json_response(operations.error_outcome(400, operations.INVALID_REQUEST, str(exc)))
    return json_response(operations.start_sync(dependencies.current(), request, write_router.lambda_context))


@write_router.post("/executions/<executionId>/terminate-instances")
def terminate_instances(executionId: str) -> Response:
    execution_id = path_parameter(write_router, "executionId", executionId)
    event = _raw_event(write_router)
    deps = dependencies.current()
    try:
        data = operations.parse_json_body(event.get("body"), base64_encoded=bool(event.get("isBase64Encoded")))
        options = operations.terminate_options(
            deps, data, write_router.lambda_context, requested_by=caller_identity(event), api=True
        )
    except InvalidRequestError as exc:
        return json_response(
            operations.error_outcome(400, operations.INVALID_REQUEST, str(exc), executionId=execution_id[:256])
        )
    return json_response(operations.terminate_instances(deps, execution_id, options))
