"""Who may terminate: the terminate route and its preview need more than "authenticated".

API Gateway authenticates every route (IAM or a Cognito authoriser); this module decides, from
what API Gateway put in ``requestContext`` (a caller cannot forge it), whether the caller may
use the two routes that lead to terminating instances, matched by path whatever router serves
them:

- ``POST /executions/{executionId}/terminate-instances``
- ``GET /executions/{executionId}/recovery-instances`` (the preview)

Cognito (claims in ``requestContext.authorizer.claims``, or ``.jwt.claims`` for HTTP APIs):
the caller's ``cognito:groups`` must hold the configured group (``TERMINATE_ALLOWED_GROUP``), or
a group the orchestration's RBAC gives the permission (lambda/shared/rbac_middleware.py of
``johnjcousens/aws-elasticdrs-orchestrator``: ``TERMINATE_INSTANCES`` for terminate,
``VIEW_EXECUTIONS`` for the preview, as its ENDPOINT_PERMISSIONS require them).
IAM (a signed request: ``requestContext.identity.userArn``, or ``.authorizer.iam.userArn``):
API Gateway has already evaluated the caller's IAM policy for exactly this method ARN, so the
dedicated policy statement (docs/INTEGRATION.md) is the check. Neither: the method was reached
without authentication (a misconfigured API), so it is refused. Every refusal is
``403 {"error": "FORBIDDEN", "message": ...}``.

Also here, because the check needs the path as the routes see it: the custom domain's base path
(``API_BASE_PATH``), which the resolvers strip too. The middleware that applies the check to
every request of a resolver is ``handlers.api.guard_terminate_routes``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

ENV_TERMINATE_ALLOWED_GROUP = "TERMINATE_ALLOWED_GROUP"
ENV_API_BASE_PATH = "API_BASE_PATH"
DEFAULT_TERMINATE_ALLOWED_GROUP = "RecoveryInstanceTerminators"
FORBIDDEN = "FORBIDDEN"
# The terminate route and its preview, after the base path is stripped. Matched at the end of
# the path, so a prefix the resolvers were not told about (a stage in an HTTP API's raw path)
# cannot take a request around the check.
TERMINATE_PATHS = re.compile(r"/executions/[^/]+/(?:terminate-instances|recovery-instances)/?$")
GROUPS_CLAIM = "cognito:groups"
PREVIEW_PATH = re.compile(r"/recovery-instances/?$")

# The orchestration's RBAC (lambda/shared/rbac_middleware.py, get_user_roles and
# ROLE_PERMISSIONS at commit 8857e560): the Cognito groups whose role holds TERMINATE_INSTANCES
# (DRSOrchestrationAdmin, DRSRecoveryManager and their aliases) ...
RBAC_TERMINATE_GROUPS = frozenset(
    {
        "DRSOrchestrationAdmin",
        "DRSRecoveryManager",
        "aws:admin",
        "aws:admin-limited",
        "DRS-Administrator",
        "DRS-Infrastructure-Admin",
    }
)
# ... and those whose role holds VIEW_EXECUTIONS (every role it defines).
RBAC_VIEW_EXECUTIONS_GROUPS = RBAC_TERMINATE_GROUPS | frozenset(
    {
        "DRSPlanManager",
        "DRSOperator",
        "DRSReadOnly",
        "DRSAuditor",
        "aws:power-user",
        "aws:operator",
        "aws:read-only",
        "DRS-Recovery-Plan-Manager",
        "DRS-Operator",
        "DRS-Read-Only",
        "DRS-Auditor",
    }
)


def base_path(environ: Mapping[str, str] | None = None) -> str:
    """The custom domain's base path ("/drs-api"), normalised; "" when the API has none."""
    value = (os.environ if environ is None else environ).get(ENV_API_BASE_PATH, "").strip().strip("/")
    return f"/{value}" if value else ""


def strip_base_path(path: str, prefix: str) -> str:
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        return path[len(prefix) :] or "/"
    return path


def allowed_group(environ: Mapping[str, str] | None = None) -> str:
    value = (os.environ if environ is None else environ).get(ENV_TERMINATE_ALLOWED_GROUP)
    return DEFAULT_TERMINATE_ALLOWED_GROUP if value is None else value.strip()


def is_terminate_path(path: str) -> bool:
    return TERMINATE_PATHS.search(path) is not None


def _mapping(node: Any, *keys: str) -> Mapping[str, Any]:
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def parse_groups(value: Any) -> frozenset[str]:
    """``cognito:groups`` as API Gateway passes it: a list, "a,b" (REST) or "[a b]" (HTTP)."""
    if isinstance(value, list):
        return frozenset(str(item) for item in value)
    if not isinstance(value, str):
        return frozenset()
    return frozenset(part for part in re.split(r"[,\s]+", value.strip().strip("[]")) if part)


def refusal(raw_event: Mapping[str, Any], group: str, path: str = "") -> str | None:
    """Why this caller may not use a terminate route (``path``: which one); None when it may."""
    context = _mapping(raw_event, "requestContext")
    claims = _mapping(context, "authorizer", "claims") or _mapping(context, "authorizer", "jwt", "claims")
    if claims:
        rbac = RBAC_VIEW_EXECUTIONS_GROUPS if PREVIEW_PATH.search(path) else RBAC_TERMINATE_GROUPS
        allowed = rbac | ({group} if group else set())
        if allowed & parse_groups(claims.get(GROUPS_CLAIM)):
            return None
        needed = "VIEW_EXECUTIONS" if rbac is RBAC_VIEW_EXECUTIONS_GROUPS else "TERMINATE_INSTANCES"
        return (
            f"Terminating recovery instances needs membership of the group {group or '(none configured)'!r} "
            f"or of a group whose orchestration role has the {needed} permission."
        )
    iam_user = _mapping(context, "identity").get("userArn") or _mapping(context, "authorizer", "iam").get("userArn")
    if isinstance(iam_user, str) and iam_user:
        return None
    return "Terminating recovery instances needs an authenticated caller (IAM or Cognito)."
