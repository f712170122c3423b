"""A small, independent fake of the AWS APIs the product calls: STS, DRS and EC2 on one loopback
port. Written from the AWS API references and botocore's service models, NOT from the project's
simulator (syncengine/simulator/ is never imported here), so the acceptance tests catch code
shaped to the simulator rather than to AWS.

Routing is by the SigV4 credential scope of the ``Authorization`` header
(``Credential=<key>/<date>/<region>/<service>/aws4_request``): the service and region come from
it, the account from the access key (the hub's key, or one this fake issued in AssumeRole).

Wire shapes:
- STS, query protocol: form-encoded ``Action=...``; XML answers; errors ``<ErrorResponse>``.
  https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
- DRS, rest-json: ``POST /DescribeRecoveryInstances`` etc. with a JSON body; errors carry the
  ``x-amzn-ErrorType`` header (sometimes with a ``:http://internal.amazon.com/...`` suffix) and a
  JSON body with ``message`` (and ``code`` for DRS's own exceptions).
  https://docs.aws.amazon.com/drs/latest/APIReference/CommonErrors.html
- EC2, query protocol with EC2's XML: ``<DescribeInstancesResponse>``; errors
  ``<Response><Errors><Error>``.
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

HUB_ACCESS_KEY = "AKIATESTHUBACCESSKEY"  # tests/conftest.py sets it for every client
CREDENTIAL = re.compile(r"Credential=([^/]+)/\d{8}/([a-z0-9-]+)/([a-z0-9]+)/aws4_request")
EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
# How DRS/EC2 name their states: DRS upper case (EC2InstanceState enum), EC2 lower case.
EC2_STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}
# DRS's ISO8601DatetimeString (botocore's drs service-2.json): filters must match it.
ISO_PATTERN = re.compile(
    r"^[1-9][0-9]*-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([0-1][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?Z$"
)
DRS_FILTER_MAX = 200  # RecoveryInstanceIDs, DescribeSourceServersRequestFiltersIDs, termination list
# AWS may return fewer items than maxResults with a nextToken; this fake always does, so every
# test walks pages. https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Query-Requests.html#api-pagination
PAGE_CAP = 2
INVALID_TOKEN = "The security token included in the request is invalid."
_ids = itertools.count(1)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def hex_id(prefix: str, width: int = 17) -> str:
    return f"{prefix}{next(_ids):0{width}x}"


def server_id() -> str:
    return f"s-{next(_ids):017d}"


def job_id() -> str:
    return f"drsjob-{next(_ids):017d}"


class AwsError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Scope:
    """One account's DRS and EC2 in one region."""

    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    recovery_instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    ec2: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    terminating: set[str] = field(default_factory=set)


@dataclass
class Account:
    account_id: str
    role_name: str = "DRSOrchestrationCrossAccountRole"
    external_id: str | None = None
    enabled_regions: set[str] = field(default_factory=set)
    # Regions where DRS was never initialised: UninitializedAccountException.
    uninitialized: set[str] = field(default_factory=set)

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.role_name}"


@dataclass
class Call:
    service: str
    operation: str
    account_id: str
    region: str
    params: dict[str, Any]


class FakeAws:
    """The state (accounts, scopes), the calls received, and the faults to inject."""

    def __init__(self, hub_account_id: str):
        self.hub_account_id = hub_account_id
        self.accounts: dict[str, Account] = {}
        self.scopes: dict[tuple[str, str], Scope] = {}
        self.keys: dict[str, str] = {HUB_ACCESS_KEY: hub_account_id}
        self.session_tokens: dict[str, str] = {}  # issued key -> its session token
        self.calls: list[Call] = []
        # Faults: (service, operation, account, region) -> error; "apply then 500" for terminate.
        self.errors: dict[tuple[str, str, str, str], AwsError] = {}
        self.terminate_then_500 = False
        # One-shot faults: (service, operation) -> errors answered before acting, in order.
        self.fail_next: dict[tuple[str, str], list[AwsError]] = {}
        # Whether an accepted terminate shows at once in DescribeRecoveryInstances
        # (SHUTTING-DOWN) or only in the TERMINATE job while the instance still reads RUNNING.
        self.terminate_shows_in_state = True
        self.lock = threading.Lock()

    # -- the estate ------------------------------------------------------------------------------

    def add_account(self, account_id: str, regions: set[str], external_id: str | None = None) -> Account:
        self.accounts[account_id] = Account(account_id, external_id=external_id, enabled_regions=set(regions))
        return self.accounts[account_id]

    def scope(self, account_id: str, region: str) -> Scope:
        return self.scopes.setdefault((account_id, region), Scope())

    def add_server(self, account_id: str, region: str, hostname: str, tags: dict[str, str] | None = None) -> str:
        sid = server_id()
        self.scope(account_id, region).servers[sid] = {
            "sourceServerID": sid,
            "arn": f"arn:aws:drs:{region}:{account_id}:source-server/{sid}",
            "tags": dict(tags or {}),
            "sourceProperties": {"identificationHints": {"hostname": hostname}},
            "replicationDirection": "FAILOVER",
        }
        return sid

    def launch(self, account_id: str, region: str, server_ids: list[str], *, drill: bool = True) -> dict[str, Any]:
        """A LAUNCH job: one new recovery instance (and EC2 instance) per server, replacing the
        server's previous one, as StartRecovery does."""
        scope = self.scope(account_id, region)
        job = self._job(scope, "LAUNCH", [])
        for sid in server_ids:
            for rid, ri in list(scope.recovery_instances.items()):
                if ri["sourceServerID"] == sid:
                    del scope.recovery_instances[rid]
            rid = hex_id("i-")
            scope.ec2[rid] = {"state": "running", "ip": f"10.0.{next(_ids) % 250}.{next(_ids) % 250}"}
            scope.recovery_instances[rid] = {
                "recoveryInstanceID": rid,
                "arn": f"arn:aws:drs:{region}:{account_id}:recovery-instance/{rid}",
                "sourceServerID": sid,
                "ec2InstanceID": rid,
                "ec2InstanceState": "RUNNING",
                "jobID": job["jobID"],
                "isDrill": drill,
                "originEnvironment": "AWS",
                "pointInTimeSnapshotDateTime": iso(datetime.now(UTC)),
                "tags": {},
            }
            scope.servers[sid]["recoveryInstanceId"] = rid
            job["participatingServers"].append(
                {"sourceServerID": sid, "recoveryInstanceID": rid, "launchStatus": "LAUNCHED"}
            )
        job["status"] = "COMPLETED"
        return job

    def set_ec2_state(self, account_id: str, region: str, instance_id: str, state: str) -> None:
        scope = self.scope(account_id, region)
        scope.ec2[instance_id]["state"] = state
        for ri in scope.recovery_instances.values():
            if ri["ec2InstanceID"] == instance_id:
                ri["ec2InstanceState"] = state.upper()

    def _job(self, scope: Scope, kind: str, participants: list[dict[str, Any]]) -> dict[str, Any]:
        job = {
            "jobID": job_id(),
            "type": kind,
            "initiatedBy": "START_DRILL" if kind == "LAUNCH" else "TERMINATE_RECOVERY_INSTANCES",
            "creationDateTime": iso(datetime.now(UTC)),
            "status": "STARTED",
            "participatingServers": participants,
            "tags": {},
        }
        scope.jobs.append(job)
        return job

    # -- what the tests read back ----------------------------------------------------------------

    def count(self, service: str | None = None, operation: str | None = None) -> int:
        return len(self.of(service, operation))

    def of(self, service: str | None = None, operation: str | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if (service is None or c.service == service) and (operation is None or c.operation == operation)
        ]

    # -- dispatch --------------------------------------------------------------------------------

    def handle(self, service: str, region: str, account_id: str, operation: str, params: dict[str, Any]) -> Any:
        with self.lock:
            self.calls.append(Call(service, operation, account_id, region, params))
            fault = self.errors.get((service, operation, account_id, region))
            queued = self.fail_next.get((service, operation))
            if fault is None and queued:
                fault = queued.pop(0)
            if fault is not None:
                raise fault
            return getattr(self, f"_{service}_{operation}")(account_id, region, params)

    def _sts_GetCallerIdentity(self, account_id: str, _region: str, _params: dict[str, Any]) -> dict[str, str]:
        return {"Account": account_id, "Arn": f"arn:aws:iam::{account_id}:user/hub", "UserId": "AIDAFAKEHUB"}

    def _sts_AssumeRole(self, _caller: str, _region: str, params: dict[str, Any]) -> dict[str, str]:
        arn = params.get("RoleArn", "")
        if not 900 <= int(params.get("DurationSeconds", 3600)) <= 3600:  # a role's default MaxSessionDuration
            raise AwsError(400, "ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration")
        account = self.accounts.get(arn.split(":")[4] if arn.count(":") >= 5 else "")
        if account is None or account.role_arn != arn or params.get("ExternalId") != account.external_id:
            raise AwsError(403, "AccessDenied", f"User is not authorized to perform: sts:AssumeRole on resource: {arn}")
        key = "ASIA" + uuid.uuid4().hex[:16].upper()
        self.keys[key] = account.account_id
        self.session_tokens[key] = f"fake-token-{key}"
        return {"AccessKeyId": key, "Arn": arn, "Session": params.get("RoleSessionName", "")}

    def _drs_guard(self, account_id: str, region: str) -> Scope:
        account = self.accounts[account_id]
        if region not in account.enabled_regions:
            # A disabled opt-in region does not know the account's credentials at all.
            raise AwsError(403, "UnrecognizedClientException", INVALID_TOKEN)
        if region in account.uninitialized:
            raise AwsError(400, "UninitializedAccountException", "Account is not initialized. Please initialize.")
        return self.scope(account_id, region)

    def _drs_DescribeRecoveryInstances(self, account_id: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        scope = self._drs_guard(account_id, region)
        filters = params.get("filters") or {}
        _max_ids("filters.recoveryInstanceIDs", filters.get("recoveryInstanceIDs"))
        items = [
            ri
            for ri in scope.recovery_instances.values()
            if ("recoveryInstanceIDs" not in filters or ri["recoveryInstanceID"] in filters["recoveryInstanceIDs"])
            and ("sourceServerIDs" not in filters or ri["sourceServerID"] in filters["sourceServerIDs"])
        ]
        return _page(items, params)

    def _drs_DescribeSourceServers(self, account_id: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        scope = self._drs_guard(account_id, region)
        wanted = (params.get("filters") or {}).get("sourceServerIDs")
        _max_ids("filters.sourceServerIDs", wanted)
        return _page([s for s in scope.servers.values() if wanted is None or s["sourceServerID"] in wanted], params)

    def _drs_DescribeJobs(self, account_id: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        scope = self._drs_guard(account_id, region)
        filters = params.get("filters") or {}
        for name in ("fromDate", "toDate"):
            if name in filters and not ISO_PATTERN.match(str(filters[name])):
                raise AwsError(400, "ValidationException", f"Invalid value for filters.{name}: {filters[name]}")
        items = [
            j
            for j in reversed(scope.jobs)  # "sorted by creationDateTime - latest date first"
            if ("jobIDs" not in filters or j["jobID"] in filters["jobIDs"])
            and ("fromDate" not in filters or _when(j["creationDateTime"]) >= _when(filters["fromDate"]))
            and ("toDate" not in filters or _when(j["creationDateTime"]) <= _when(filters["toDate"]))
        ]
        return _page(items, params)

    def _drs_TerminateRecoveryInstances(self, account_id: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        scope = self._drs_guard(account_id, region)
        ids = params.get("recoveryInstanceIDs") or []
        if not ids:
            raise AwsError(400, "ValidationException", "recoveryInstanceIDs must contain at least 1 item")
        _max_ids("recoveryInstanceIDs", ids)
        unknown = [rid for rid in ids if rid not in scope.recovery_instances]
        if unknown:
            raise AwsError(404, "ResourceNotFoundException", f"Recovery instance {unknown[0]} not found")
        busy = [rid for rid in ids if rid in scope.terminating]
        if busy:
            raise AwsError(409, "ConflictException", f"Recovery instance {busy[0]} is already being terminated")
        participants = [
            {"sourceServerID": scope.recovery_instances[rid]["sourceServerID"], "recoveryInstanceID": rid}
            for rid in ids
        ]
        job = self._job(scope, "TERMINATE", participants)
        # Real DRS: the job starts; the recovery instance stays listed while EC2 shuts it down.
        scope.terminating.update(ids)
        for rid in ids if self.terminate_shows_in_state else ():
            scope.recovery_instances[rid]["ec2InstanceState"] = "SHUTTING-DOWN"
            scope.ec2[scope.recovery_instances[rid]["ec2InstanceID"]]["state"] = "shutting-down"
        if self.terminate_then_500:
            self.terminate_then_500 = False
            raise AwsError(500, "InternalServerException", "An internal error occurred.")
        return {"job": job}

    def _ec2_guard(self, account_id: str, region: str) -> Scope:
        if region not in self.accounts[account_id].enabled_regions:
            raise AwsError(401, "AuthFailure", "AWS was not able to validate the provided access credentials")
        return self.scope(account_id, region)

    def _ec2_DescribeRegions(self, account_id: str, region: str, _params: dict[str, Any]) -> list[str]:
        self._ec2_guard(account_id, region)
        return sorted(self.accounts[account_id].enabled_regions)

    def _ec2_DescribeInstances(self, account_id: str, region: str, params: dict[str, Any]) -> tuple[list, str | None]:
        scope = self._ec2_guard(account_id, region)
        if "MaxResults" in params and (
            any(k.startswith("InstanceId.") for k in params) or not 5 <= int(params["MaxResults"]) <= 1000
        ):
            raise AwsError(400, "InvalidParameterCombination", "MaxResults must be 5..1000, without InstanceId")
        wanted: set[str] | None = None
        for n in itertools.count(1):
            name = params.get(f"Filter.{n}.Name")
            if name is None:
                break
            if name != "instance-id":
                raise AwsError(400, "InvalidParameterValue", f"The filter '{name}' is invalid")
            wanted = {v for k, v in params.items() if k.startswith(f"Filter.{n}.Value.")}
            if len(wanted) > DRS_FILTER_MAX:
                raise AwsError(400, "FilterLimitExceeded", "The maximum number of filter values is 200")
        found = [(iid, data) for iid, data in scope.ec2.items() if wanted is None or iid in wanted]
        start = int(params.get("NextToken", "0"))
        page = found[start : start + PAGE_CAP]
        return page, (str(start + PAGE_CAP) if start + PAGE_CAP < len(found) else None)


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _max_ids(name: str, ids: list[str] | None) -> None:
    if ids is not None and len(ids) > DRS_FILTER_MAX:
        raise AwsError(400, "ValidationException", f"{name} must have at most {DRS_FILTER_MAX} items")


def _page(items: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """DRS pagination: ``maxResults`` a page, an opaque ``nextToken`` while more remain."""
    start = int(params["nextToken"].split("-")[1]) if params.get("nextToken") else 0
    size = min(int(params.get("maxResults") or 1000), PAGE_CAP)
    page: dict[str, Any] = {"items": items[start : start + size]}
    if start + size < len(items):
        page["nextToken"] = f"tok-{start + size}-{uuid.uuid4().hex[:8]}"
    return page


# -- wire formats ---------------------------------------------------------------------------------


def _sts_xml(operation: str, result: dict[str, str]) -> str:
    if operation == "GetCallerIdentity":
        body = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in result.items())
    else:
        expires = iso(datetime.now(UTC) + timedelta(hours=1))
        body = (
            f"<Credentials><AccessKeyId>{result['AccessKeyId']}</AccessKeyId>"
            f"<SecretAccessKey>fake-secret</SecretAccessKey><SessionToken>fake-token-{result['AccessKeyId']}"
            f"</SessionToken><Expiration>{expires}</Expiration></Credentials>"
            f"<AssumedRoleUser><AssumedRoleId>AROAFAKE:{escape(result['Session'])}</AssumedRoleId>"
            f"<Arn>{escape(result['Arn'])}</Arn></AssumedRoleUser>"
        )
    return (
        f'<{operation}Response xmlns="{STS_NS}"><{operation}Result>{body}</{operation}Result>'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{operation}Response>"
    )


def _ec2_xml(operation: str, result: Any, region: str, account_id: str) -> str:
    if operation == "DescribeRegions":
        rows = "".join(
            f"<item><regionName>{r}</regionName><regionEndpoint>ec2.{r}.amazonaws.com</regionEndpoint>"
            f"<optInStatus>opted-in</optInStatus></item>"
            for r in result
        )
        inner = f"<regionInfo>{rows}</regionInfo>"
    else:
        result, next_token = result
        rows = "".join(
            f"<item><reservationId>r-{iid[2:]}</reservationId><ownerId>{account_id}</ownerId><groupSet/>"
            f"<instancesSet><item><instanceId>{iid}</instanceId><imageId>ami-0123456789abcdef0</imageId>"
            f"<instanceState><code>{EC2_STATE_CODES[d['state']]}</code><name>{d['state']}</name></instanceState>"
            f"<privateIpAddress>{d['ip']}</privateIpAddress><instanceType>t3.small</instanceType>"
            f"<launchTime>2026-11-29T10:00:00.000Z</launchTime>"
            f"<placement><availabilityZone>{region}a</availabilityZone></placement>"
            f"<tagSet><item><key>Name</key><value>recovered-{iid}</value></item></tagSet>"
            f"</item></instancesSet></item>"
            for iid, d in result
        )
        inner = f"<reservationSet>{rows}</reservationSet>"
        if next_token:
            inner += f"<nextToken>{next_token}</nextToken>"
    return f'<{operation}Response xmlns="{EC2_NS}"><requestId>{uuid.uuid4()}</requestId>{inner}</{operation}Response>'


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAws
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        match = CREDENTIAL.search(self.headers.get("Authorization") or "")
        if match is None:
            return self._send(403, "application/json", b'{"message": "Missing Authentication Token"}')
        key, region, service = match.groups()
        account_id = self.fake.keys.get(key)
        try:
            # Temporary credentials are valid only with their session token (X-Amz-Security-Token).
            token = self.fake.session_tokens.get(key)
            if account_id is None or (token is not None and self.headers.get("X-Amz-Security-Token") != token):
                raise AwsError(403, "UnrecognizedClientException", INVALID_TOKEN)
            if service == "drs":
                operation = self.path.strip("/").split("?")[0]
                result = self.fake.handle(service, region, account_id, operation, json.loads(body or b"{}"))
                return self._send(200, "application/json", json.dumps(result).encode())
            params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            operation = params.get("Action", "")
            result = self.fake.handle(service, region, account_id, operation, params)
            xml = _sts_xml(operation, result) if service == "sts" else _ec2_xml(operation, result, region, account_id)
            return self._send(200, "text/xml", xml.encode())
        except AwsError as exc:
            return self._error(service, exc)

    def _error(self, service: str, exc: AwsError) -> None:
        if service == "drs":
            # Real services often append the model's namespace to the type; botocore strips it.
            headers = {"x-amzn-ErrorType": f"{exc.code}:http://internal.amazon.com/coral/com.amazonaws.drs/"}
            payload = {"message": exc.message, "code": exc.code} if exc.status != 403 else {"message": exc.message}
            return self._send(exc.status, "application/json", json.dumps(payload).encode(), headers)
        if service == "sts":
            xml = (
                f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>Sender</Type><Code>{exc.code}</Code>'
                f"<Message>{escape(exc.message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
            )
        else:
            xml = (
                f"<Response><Errors><Error><Code>{exc.code}</Code><Message>{escape(exc.message)}</Message></Error>"
                f"</Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
            )
        return self._send(exc.status, "text/xml", xml.encode())

    def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class FakeAwsServer:
    """Serves a FakeAws on 127.0.0.1 in a daemon thread."""

    def __init__(self, fake: FakeAws):
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeAwsServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
