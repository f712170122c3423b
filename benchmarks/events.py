"""API Gateway REST (v1 proxy) events and a Lambda context, shaped as API Gateway and Lambda send
them, for driving ``handlers.data_management.lambda_handler`` in-process."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from handlers.authorization import DEFAULT_TERMINATE_ALLOWED_GROUP

API_HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"


def rest_event(method: str, resource: str, path_parameters: dict[str, str], body: str | None = None) -> dict[str, Any]:
    path = resource
    for name, value in path_parameters.items():
        path = path.replace("{" + name + "}", value)
    headers = {"Accept": "application/json", "Host": API_HOST, "X-Forwarded-Proto": "https"}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": dict(path_parameters),
        "stageVariables": None,
        "requestContext": {
            "resourceId": "bench1",
            "resourcePath": resource,
            "httpMethod": method,
            "path": "/prod" + path,
            "accountId": "111122223333",
            "protocol": "HTTP/1.1",
            "stage": "prod",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "203.0.113.10", "userAgent": "benchmarks"},
            "domainName": API_HOST,
            "apiId": "a1b2c3d4e5",
        },
        "body": body,
        "isBase64Encoded": False,
    }


def check_existing_event(plan_id: str) -> dict[str, Any]:
    return rest_event("GET", "/recovery-plans/{planId}/check-existing-instances", {"planId": plan_id})


def terminate_event(execution_id: str) -> dict[str, Any]:
    # The simulated estate mixes drills and real recoveries; the benchmark terminates all 100.
    event = rest_event(
        "POST",
        "/executions/{executionId}/terminate-instances",
        {"executionId": execution_id},
        body='{"includeNonDrill": true}',
    )
    # A Cognito user of the group allowed to terminate (handlers/authorization.py): the route
    # answers 403 to anyone else.
    event["requestContext"]["authorizer"] = {
        "claims": {"sub": "bench-operator", "cognito:groups": DEFAULT_TERMINATE_ALLOWED_GROUP}
    }
    return event


@dataclass
class LambdaContext:
    """What the handlers read of a Lambda context."""

    function_name: str = "drs-orchestration-data-management-bench"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:111122223333:function:drs-orchestration-data-management-bench"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 1024
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
