"""STS over the query protocol: AssumeRole (checks the role name and ExternalId of the target
account, honours the AccessDenied fault) and GetCallerIdentity. Sessions are issued by the
CredentialStore and bound to the target account."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qsl

from .context import Call, Reply
from .errors import AwsError
from .policy import parse_policy
from .regions import partition_of

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
MIN_DURATION = 900
# The default MaxSessionDuration of an IAM role.
MAX_DURATION = 3600
_ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[\w+=,.@/-]*/)?([\w+=,.@-]+)$")
_XML_HEADERS = {"Content-Type": "text/xml"}
# RoleSessionName: 2 to 64 characters of [\w+=,.@-] (API_AssumeRole).
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)


def parse(body: bytes) -> tuple[str, dict[str, str]]:
    params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params.get("Action", "Unknown"), params


def _esc(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_error(error: AwsError, request_id: str) -> Reply:
    kind = "Sender" if error.sender else "Receiver"
    body = (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{kind}</Type><Code>{_esc(error.code)}</Code>'
        f"<Message>{_esc(error.message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    return Reply(error.status, body, {**_XML_HEADERS, "x-amzn-RequestId": request_id, **error.headers})


def _reply(call: Call, operation: str, result: str) -> Reply:
    body = (
        f'<{operation}Response xmlns="{NAMESPACE}"><{operation}Result>{result}</{operation}Result>'
        f"<ResponseMetadata><RequestId>{call.request_id}</RequestId></ResponseMetadata></{operation}Response>"
    ).encode()
    return Reply(200, body, {**_XML_HEADERS, "x-amzn-RequestId": call.request_id})


def assume_role(call: Call, params: dict[str, str]) -> Reply:
    role_arn = params.get("RoleArn", "")
    session_name = params.get("RoleSessionName", "")
    if not role_arn or not session_name:
        raise AwsError("ValidationError", "RoleArn and RoleSessionName are required")
    if not _SESSION_NAME.fullmatch(session_name):
        raise AwsError(
            "ValidationError",
            f"1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to satisfy "
            "constraint: Member must have length 2 to 64 and match [\\w+=,.@-]*",
        )
    policy_text = params.get("Policy")
    policy = parse_policy(policy_text) if policy_text is not None else None
    try:
        duration = int(params.get("DurationSeconds", MAX_DURATION))
    except ValueError:
        raise AwsError("ValidationError", "DurationSeconds must be an integer") from None
    if duration < MIN_DURATION:
        raise AwsError("ValidationError", f"DurationSeconds must be at least {MIN_DURATION}")
    if duration > MAX_DURATION:
        raise AwsError(
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        )
    denied = AwsError(
        "AccessDenied",
        f"User: {call.identity.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
        403,
    )
    match = _ROLE_ARN.match(role_arn)
    if match is None:
        raise AwsError("ValidationError", f"{role_arn} is not a valid role ARN")
    partition, account_id, role_name = match.groups()
    if partition != partition_of(call.region):
        # STS of one partition knows no role of another (a commercial ARN in GovCloud).
        raise AwsError("ValidationError", f"{role_arn} is not a role ARN of partition {partition_of(call.region)}")
    backend = call.backend
    account = backend.estate.account(account_id)
    # One answer for every mismatch, as IAM does not say which condition of the trust failed.
    if (
        account is None
        or account.role_name != role_name
        or params.get("ExternalId") != account.external_id
        or backend.faults.is_denied(account_id)
    ):
        raise denied
    session = backend.credentials.issue(
        account_id, role_name, session_name, duration, time.time(), policy_text=policy_text, policy=policy
    )
    expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(session.expiration))
    result = (
        f"<AssumedRoleUser><AssumedRoleId>{session.role_id}:{_esc(session_name)}</AssumedRoleId>"
        f"<Arn>arn:{partition}:sts::{account_id}:assumed-role/{role_name}/{_esc(session_name)}</Arn></AssumedRoleUser>"
        f"<Credentials><AccessKeyId>{session.access_key_id}</AccessKeyId>"
        f"<SecretAccessKey>{session.secret_access_key}</SecretAccessKey>"
        f"<SessionToken>{session.session_token}</SessionToken>"
        f"<Expiration>{expiration}</Expiration></Credentials>"
    )
    return _reply(call, "AssumeRole", result)


def get_caller_identity(call: Call, params: dict[str, str]) -> Reply:
    identity = call.identity
    result = (
        f"<Arn>{_esc(identity.arn)}</Arn><UserId>{_esc(identity.user_id)}</UserId>"
        f"<Account>{identity.account_id}</Account>"
    )
    return _reply(call, "GetCallerIdentity", result)


def dispatch(call: Call, params: dict[str, str]) -> Reply:
    if call.operation == "AssumeRole":
        return assume_role(call, params)
    if call.operation == "GetCallerIdentity":
        return get_caller_identity(call, params)
    raise AwsError("InvalidAction", f"Could not find operation {call.operation} for version 2011-06-15")
