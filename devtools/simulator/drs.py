"""DRS over rest-json: ``POST /<Operation>`` with a JSON body; errors carry the code in the
``x-amzn-ErrorType`` header (botocore reads it from there first) and a JSON ``message``.

Limits follow the service model and the real service: at most 200 IDs per filter
(ValidationException), pages of at most 200 items with an opaque ``nextToken``,
TerminateRecoveryInstances takes 1..200 IDs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from .context import Call, Reply
from .errors import AwsError, drs_validation
from .estate import ScopeData, UnknownRecoveryInstancesError
from .faults import server_error
from .ids import ACCOUNT_ID, JOB_ID, RECOVERY_INSTANCE_ID, SOURCE_SERVER_ID, parse_iso
from .model import to_json_bytes
from .pagination import page

MAX_PAGE_SIZE = 200
MAX_FILTER_IDS = 200
# The model allows up to 1000 job IDs in DescribeJobs filters.
MAX_JOB_IDS = 1000

_JSON_HEADERS = {"Content-Type": "application/json"}


def parse(path: str, body: bytes) -> tuple[str, dict[str, Any]]:
    """The operation (from the path) and the JSON parameters. A bad body is reported by
    ``dispatch`` as a ValidationException once the call is counted."""
    operation = path.strip("/") or "Unknown"
    if not body.strip():
        return operation, {}
    try:
        params = json.loads(body)
    except ValueError:
        return operation, {"__invalid__": True}
    return operation, params if isinstance(params, dict) else {"__invalid__": True}


def render_error(error: AwsError, request_id: str) -> Reply:
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": error.code,
        "x-amzn-RequestId": request_id,
        **error.headers,
    }
    body = {"message": error.message, **error.fields}
    return Reply(error.status, to_json_bytes(body), headers)


def _ok(body: bytes, call: Call) -> Reply:
    return Reply(200, body, {**_JSON_HEADERS, "x-amzn-RequestId": call.request_id})


def _page_body(items: list[bytes], next_token: str | None) -> bytes:
    body = b'{"items":[' + b",".join(items) + b"]"
    if next_token:
        body += b',"nextToken":"' + next_token.encode() + b'"'
    return body + b"}"


def _limit(params: dict[str, Any]) -> int:
    value = params.get("maxResults")
    if value is None:
        return MAX_PAGE_SIZE
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise drs_validation("maxResults must be a positive integer", "maxResults")
    return min(value, MAX_PAGE_SIZE)


def _token(params: dict[str, Any]) -> str | None:
    token = params.get("nextToken")
    if token is None or token == "":
        return None
    if not isinstance(token, str) or len(token) > 2048:
        raise drs_validation("Invalid nextToken", "nextToken")
    return token


def _id_filter(filters: dict[str, Any], name: str, pattern: re.Pattern[str], limit: int, path: str) -> list[str] | None:
    """A validated ID list from ``filters``, or None when absent or empty (no filtering)."""
    values = filters.get(name)
    if values is None:
        return None
    field_name = f"{path}.{name}" if path else name
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise drs_validation(f"{field_name} must be a list of strings", field_name)
    if len(values) > limit:
        raise drs_validation(
            f"1 validation error detected: Value at '{field_name}' failed to satisfy constraint: "
            f"Member must have length less than or equal to {limit} (got {len(values)})",
            field_name,
        )
    bad = [v for v in values if not pattern.match(v)]
    if bad:
        raise drs_validation(
            f"1 validation error detected: Value '{bad[0]}' at '{field_name}' failed to satisfy "
            f"constraint: Member must satisfy regular expression pattern: {pattern.pattern}",
            field_name,
        )
    return values or None


def _filters(params: dict[str, Any]) -> dict[str, Any]:
    filters = params.get("filters") or {}
    if not isinstance(filters, dict):
        raise drs_validation("filters must be an object", "filters")
    return filters


def _paged(call: Call, ordered: Sequence[str], params: dict[str, Any], serialize: Callable[[str], bytes]) -> Reply:
    try:
        chunk, next_token = page(ordered, _limit(params), _token(params), call.operation, call.scope_key)
    except ValueError as exc:
        raise drs_validation(f"Invalid nextToken: {exc}", "nextToken") from exc
    return _ok(_page_body([serialize(item_id) for item_id in chunk], next_token), call)


def describe_recovery_instances(call: Call, scope: ScopeData, params: dict[str, Any]) -> Reply:
    filters = _filters(params)
    ri_ids = _id_filter(filters, "recoveryInstanceIDs", RECOVERY_INSTANCE_ID, MAX_FILTER_IDS, "filters")
    server_ids = _id_filter(filters, "sourceServerIDs", SOURCE_SERVER_ID, MAX_FILTER_IDS, "filters")
    instances = scope.recovery_instances
    ordered: Sequence[str] = scope.ri_ids
    if ri_ids is not None:
        ordered = sorted({i for i in ri_ids if i in instances})
    if server_ids is not None:
        wanted = set(server_ids)
        ordered = [i for i in ordered if instances[i].source_server_id in wanted]
    return _paged(call, ordered, params, lambda i: instances[i].wire_bytes())


def describe_source_servers(call: Call, scope: ScopeData, params: dict[str, Any]) -> Reply:
    filters = _filters(params)
    server_ids = _id_filter(filters, "sourceServerIDs", SOURCE_SERVER_ID, MAX_FILTER_IDS, "filters")
    staging = _id_filter(filters, "stagingAccountIDs", ACCOUNT_ID, MAX_FILTER_IDS, "filters")
    servers = scope.source_servers
    ordered: Sequence[str] = scope.server_ids
    if server_ids is not None:
        ordered = sorted({i for i in server_ids if i in servers})
    if staging is not None:
        wanted = set(staging)
        ordered = [i for i in ordered if servers[i].staging_account_id in wanted]
    if filters.get("hardwareId"):
        ordered = []  # no simulated server reports a hardware id
    return _paged(call, ordered, params, lambda i: servers[i].wire_bytes())


def describe_jobs(call: Call, scope: ScopeData, params: dict[str, Any]) -> Reply:
    filters = _filters(params)
    job_ids = _id_filter(filters, "jobIDs", JOB_ID, MAX_JOB_IDS, "filters")
    jobs = scope.jobs
    ordered: Sequence[str] = scope.job_ids
    if job_ids is not None:
        ordered = sorted({i for i in job_ids if i in jobs})
    bounds = []
    for name in ("fromDate", "toDate"):
        value = filters.get(name)
        if value is None:
            bounds.append(None)
            continue
        try:
            bounds.append(parse_iso(value) if isinstance(value, str) else None)
        except ValueError as exc:
            raise drs_validation(f"filters.{name} is not an ISO-8601 date", f"filters.{name}") from exc
    start, end = bounds
    if start is not None or end is not None:
        ordered = [
            i
            for i in ordered
            if (start is None or jobs[i].creation_time >= start) and (end is None or jobs[i].creation_time <= end)
        ]
    return _paged(call, ordered, params, lambda i: jobs[i].wire_bytes())


def terminate_recovery_instances(call: Call, scope: ScopeData, params: dict[str, Any]) -> Reply:
    ids = params.get("recoveryInstanceIDs")
    if not isinstance(ids, list) or not ids or not all(isinstance(v, str) for v in ids):
        raise drs_validation("recoveryInstanceIDs must hold 1 to 200 IDs", "recoveryInstanceIDs")
    checked = _id_filter(params, "recoveryInstanceIDs", RECOVERY_INSTANCE_ID, MAX_FILTER_IDS, "")
    assert checked is not None
    faults = call.backend.faults
    rejection = faults.terminate_rejection(checked)
    if rejection is not None:
        raise rejection
    try:
        job = call.backend.estate.terminate_many(scope.account_id, scope.region, checked)
    except UnknownRecoveryInstancesError as exc:
        raise AwsError(
            "ConflictException",
            "Recovery instances not found in this account and region or already terminated: " + ", ".join(exc.missing),
            409,
            fields={"resourceId": exc.missing[0], "resourceType": "RECOVERY_INSTANCE"},
        ) from exc
    if faults.take_apply_then_fail():
        # Applied, then the answer is lost: only DescribeRecoveryInstances / DescribeJobs tell.
        raise server_error("drs")
    # The real job is asynchronous: the caller sees it PENDING; DescribeJobs later shows it done.
    return _ok(to_json_bytes({"job": job.to_wire(status="PENDING")}), call)


_OPERATIONS: dict[str, Callable[[Call, ScopeData, dict[str, Any]], Reply]] = {
    "DescribeRecoveryInstances": describe_recovery_instances,
    "DescribeSourceServers": describe_source_servers,
    "DescribeJobs": describe_jobs,
    "TerminateRecoveryInstances": terminate_recovery_instances,
}


def dispatch(call: Call, params: dict[str, Any]) -> Reply:
    handler = _OPERATIONS.get(call.operation)
    if handler is None:
        raise AwsError("UnknownOperationException", f"Unknown operation {call.operation}", 404)
    if params.get("__invalid__"):
        raise AwsError(
            "ValidationException", "Request body is not a JSON object", 400, fields={"reason": "cannotParse"}
        )
    backend = call.backend
    estate = backend.estate
    with estate.lock:
        scope = estate.scope(call.account_id, call.region)
        if scope is None or not scope.initialized or backend.faults.is_uninitialized(call.scope_key):
            raise AwsError(
                "UninitializedAccountException",
                "The account performing the request has not been initialized.",
                400,
            )
        return handler(call, scope, params)
