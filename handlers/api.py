"""API Gateway plumbing shared by the handlers: REST (v1) and HTTP (v2) resolvers built from
the same routers, CORS, JSON responses, and error handlers that never let a trace out."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    CORSConfig,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver, Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from handlers import authorization
from handlers.events import EventKind
from handlers.operations import INTERNAL_ERROR, INTERNAL_MESSAGE, Outcome, error_outcome, failure
from syncengine.core.errors import SyncEngineError
from syncengine.core.logging import get_logger

log = get_logger(__name__)

ENV_CORS_ALLOW_ORIGIN = "CORS_ALLOW_ORIGIN"
ALLOW_ORIGIN = os.environ.get(ENV_CORS_ALLOW_ORIGIN) or "*"
CORS = CORSConfig(
    allow_origin=ALLOW_ORIGIN,
    allow_headers=["Content-Type", "Authorization", "X-Amz-Date", "X-Api-Key", "X-Amz-Security-Token"],
    max_age=300,
)
# Powertools adds CORS headers only when the request carries an Origin header; the contract wants
# them on every response, so each response starts with these. Inventory and status change with
# every sync: no browser or proxy may keep a copy (no-store).
BASE_HEADERS = {"Access-Control-Allow-Origin": ALLOW_ORIGIN, "Cache-Control": "no-store"}


def json_response(outcome: Outcome) -> Response:
    return Response(
        status_code=outcome.status_code,
        content_type=content_types.APPLICATION_JSON,
        body=outcome.body,
        headers=dict(BASE_HEADERS),
    )


def raw_response(outcome: Outcome) -> dict[str, Any]:
    """An API Gateway response built without a resolver (for events a resolver cannot read)."""
    return {
        "statusCode": outcome.status_code,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **BASE_HEADERS},
        "body": json.dumps(outcome.body),
        "isBase64Encoded": False,
    }


def _describe_request(app: ApiGatewayResolver) -> str:
    try:
        return f"{app.current_event.http_method} {app.current_event.path}"[:200]
    except Exception:  # a malformed event: say nothing specific rather than fail again
        return "this request"


def install_error_handlers(app: ApiGatewayResolver) -> None:
    @app.not_found
    def route_not_found(_exc: NotFoundError) -> Response:
        return json_response(error_outcome(404, "NOT_FOUND", f"No route matches {_describe_request(app)}."))

    @app.exception_handler(SyncEngineError)
    def engine_error(exc: SyncEngineError) -> Response:
        # Routes map their own errors (with their ids); this keeps any other one in the contract.
        return json_response(failure(exc, code=INTERNAL_ERROR, action="The request"))

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response:
        # A bug: the trace goes to the log, the caller gets a sentence.
        log.exception("api_unhandled_error", error_type=type(exc).__name__)
        return json_response(error_outcome(500, INTERNAL_ERROR, INTERNAL_MESSAGE))


def guard_terminate_routes(app: ApiGatewayResolver, next_middleware: Callable[..., Response]) -> Response:
    """Resolver middleware: the terminate route and its preview only for the allowed callers
    (handlers/authorization.py), whichever router serves them."""
    path = authorization.strip_base_path(app.current_event.path, authorization.base_path())
    if authorization.is_terminate_path(path):
        reason = authorization.refusal(app.current_event.raw_event, authorization.allowed_group(), path)
        if reason is not None:
            log.warning("terminate_forbidden", path=path[:200])
            return json_response(error_outcome(403, authorization.FORBIDDEN, reason))
    return next_middleware(app)


@dataclass(frozen=True)
class Api:
    """One resolver per payload format, sharing the routes."""

    rest: APIGatewayRestResolver
    http: APIGatewayHttpResolver

    def resolve(self, kind: EventKind, event: dict[str, Any], context: Any) -> dict[str, Any]:
        resolver = self.http if kind is EventKind.API_V2 else self.rest
        return resolver.resolve(event, context)


def build_api(*routers: Router) -> Api:
    # A custom domain's base path mapping ("/drs-api") arrives in the path; routes match without it.
    base_path = authorization.base_path()
    prefixes: list[str | re.Pattern[str]] | None = [base_path] if base_path else None
    rest = APIGatewayRestResolver(cors=CORS, strip_prefixes=prefixes)
    http = APIGatewayHttpResolver(cors=CORS, strip_prefixes=prefixes)
    for app in (rest, http):
        for router in routers:
            app.include_router(router)
        app.use(middlewares=[guard_terminate_routes])
        install_error_handlers(app)
    return Api(rest=rest, http=http)
