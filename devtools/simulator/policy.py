"""Session policies, as IAM evaluates them for an assumed-role session: the session's effective
permissions are the intersection of its role's policies and the inline ``Policy`` its AssumeRole
passed (https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session).
The simulator's roles allow everything, so the session policy alone decides here: an action it
does not allow is denied as AWS denies it, an explicit Deny wins. Actions match with IAM's
wildcards, case-insensitively; resources are not modelled. A statement conditioned on
``aws:ViaAWSService`` true never matches a call the client makes itself (every call the
simulator serves is one)."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

from .errors import AwsError

# STS's limits on an inline session policy (API_AssumeRole: Policy, 1..2048 characters).
MAX_POLICY_CHARS = 2048


def parse_policy(text: str) -> dict[str, Any]:
    """The policy document of an AssumeRole's ``Policy``; STS's errors for what it refuses."""
    if len(text) > MAX_POLICY_CHARS:
        raise AwsError("PackedPolicyTooLarge", "The policy document exceeds the maximum size.", 400)
    try:
        document = json.loads(text)
    except ValueError:
        raise AwsError("MalformedPolicyDocument", "The policy is not valid JSON.", 400) from None
    statements = document.get("Statement") if isinstance(document, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not all(isinstance(s, dict) for s in statements):
        raise AwsError("MalformedPolicyDocument", "The policy has no valid Statement.", 400)
    return {**document, "Statement": statements}


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [v for v in value or () if isinstance(v, str)]


def _direct_call_matches(statement: dict[str, Any]) -> bool:
    via_service = (statement.get("Condition") or {}).get("Bool", {}).get("aws:ViaAWSService")
    return str(via_service).lower() != "true"


def allows(policy: dict[str, Any], action: str) -> bool:
    """Whether the session policy allows ``action`` (``service:Operation``) called directly."""
    wanted = action.lower()
    allowed = False
    for statement in policy["Statement"]:
        patterns = [p.lower() for p in _listed(statement.get("Action"))]
        if not any(fnmatchcase(wanted, p) for p in patterns) or not _direct_call_matches(statement):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def denied(service: str, action: str, arn: str) -> AwsError:
    """The answer to an action the session policy does not allow, in the service's words."""
    message = f"User: {arn} is not authorized to perform: {action} because no session policy allows the {action} action"
    if service == "ec2":
        return AwsError("UnauthorizedOperation", "You are not authorized to perform this operation.", 403)
    if service == "sts":
        return AwsError("AccessDenied", message, 403)
    return AwsError("AccessDeniedException", message, 403)
