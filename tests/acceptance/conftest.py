"""Acceptance setup: the Lambda handlers configured from the environment exactly as deployed
(table names, ``AWS_ENDPOINT_URL_DRS/_EC2/_STS``), pointed at the independent fake AWS of
``fake_aws.py`` and at fresh tables on both DynamoDB backends (``ddb`` from tests/fixtures).

Tests read and write DynamoDB with plain boto3 (tests may scan; the engine never does), so they
depend on no engine internals: only the handlers' ``lambda_handler`` and the table helpers.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from handlers import dependencies
from tests.acceptance.fake_aws import FakeAws, FakeAwsServer

HUB = "111122223333"
TARGET = "444455556666"
REGION = "us-east-1"
OPT_IN_REGION = "af-south-1"
EXTERNAL_ID = "acceptance-external-id"
EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
# Tests beyond the issues' acceptance lists run on one backend (dynalite, which enforces DynamoDB's
# limits; tests/fixtures/dynamodb.py), which keeps the folder near its time budget.
DYNALITE_ONLY = pytest.mark.one_backend


@dataclass
class Context:
    """What the handlers read of a Lambda context."""

    function_name: str = "drs-orchestration-data-management-dev"
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{HUB}:function:drs-orchestration-data-management-dev"
    aws_request_id: str = "6f0b2a3e-0000-4000-8000-0000000000aa"
    memory_limit_in_mb: int = 512

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@dataclass
class Estate:
    """The fake AWS, its endpoint and the tables of one test."""

    aws: FakeAws
    ddb: Any

    def table(self, name: str) -> Any:
        resource = boto3.resource("dynamodb", endpoint_url=self.ddb.endpoint_url, region_name=self.ddb.region)
        return resource.Table(getattr(self.ddb.tables, name))

    def put(self, name: str, *items: dict[str, Any]) -> None:
        table = self.table(name)
        for item in items:
            table.put_item(Item=item)

    def delete(self, name: str, key: dict[str, Any]) -> None:
        self.table(name).delete_item(Key=key)

    def scan(self, name: str) -> list[dict[str, Any]]:
        table, items, kwargs = self.table(name), [], {}
        while True:
            page = table.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def cache(self) -> dict[str, dict[str, Any]]:
        return {item["sourceServerId"]: item for item in self.scan("cache")}


def target_account_items(regions: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The hub (own credentials) and the target account (a role with an external id)."""
    hub = {
        "accountId": HUB,
        "accountName": "hub",
        "status": "active",
        "isCurrentAccount": True,
        "regions": regions[HUB],
    }
    target = {
        "accountId": TARGET,
        "accountName": "target",
        "status": "active",
        "regions": regions[TARGET],
        "roleArn": f"arn:aws:iam::{TARGET}:role/DRSOrchestrationCrossAccountRole",
        "externalId": EXTERNAL_ID,
    }
    return [hub, target]


@pytest.fixture
def estate(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Estate]:
    """Both accounts enabled in REGION; handlers configured from the environment."""
    fake = FakeAws(HUB)
    fake.add_account(HUB, {REGION})
    fake.add_account(TARGET, {REGION}, external_id=EXTERNAL_ID)
    with FakeAwsServer(fake) as server:
        env = {
            **ddb.env(),
            "AWS_ENDPOINT_URL_DRS": server.endpoint_url,
            "AWS_ENDPOINT_URL_EC2": server.endpoint_url,
            "AWS_ENDPOINT_URL_STS": server.endpoint_url,
            "SYNC_MAX_ATTEMPTS": "2",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        dependencies.reset()
        try:
            yield Estate(fake, ddb)
        finally:
            dependencies.reset()


# -- events ---------------------------------------------------------------------------------------


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


def api_event(name: str, body: Any = None, base64: bool = False, **path_parameters: str) -> dict[str, Any]:
    """A recorded API Gateway event (REST v1 or HTTP v2) re-addressed to ``path_parameters``;
    ``base64`` sends the body as HTTP APIs often do (``isBase64Encoded: true``)."""
    event = load_event(name)
    http = event.get("version") == "2.0"
    template = event["routeKey"].split(" ", 1)[1] if http else event["resource"]
    for key, value in path_parameters.items():
        template = template.replace("{" + key + "}", quote(value, safe=""))
        event["pathParameters"] = {**(event.get("pathParameters") or {}), key: value}
    if http:
        event["rawPath"] = event["requestContext"]["http"]["path"] = template
    else:
        event["path"] = template
        event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{template}"
    text = None if body is None else json.dumps(body)
    event["isBase64Encoded"] = base64 and text is not None
    event["body"] = b64encode(text.encode()).decode() if base64 and text is not None else text
    return event


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def drs_event(detail_type: str, region: str, account: str, resource: str, detail: dict[str, Any]) -> dict[str, Any]:
    """An EventBridge event as DRS/EC2 publish it
    (https://docs.aws.amazon.com/drs/latest/userguide/monitoring-event-bridge.html)."""
    service = "ec2" if detail_type.startswith("EC2") else "drs"
    return {
        "version": "0",
        "id": "0d7c2b3e-1111-4a4a-9c9c-123456789abc",
        "detail-type": detail_type,
        "source": f"aws.{service}",
        "account": account,
        "time": "2026-11-29T18:02:19Z",
        "region": region,
        "resources": [resource],
        "detail": detail,
    }


def sqs_batch(*bodies: tuple[str, str]) -> dict[str, Any]:
    """An SQS event source mapping batch: (messageId, body) pairs."""
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"AQEB{message_id}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1796061739183"},
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{HUB}:drs-orchestration-refresh-dev",
                "awsRegion": REGION,
            }
            for message_id, body in bodies
        ]
    }


# -- DynamoDB writes, counted on the wire ----------------------------------------------------------

WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


class DynamoDBWriteCounter:
    """A loopback proxy in front of a DynamoDB backend that records (operation, table) for every
    write request, so a test can see what the product wrote without touching its code."""

    def __init__(self, backend_url: str):
        self.writes: list[tuple[str, str]] = []
        counter = self

        class Proxy(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                counter.record(self.headers.get("X-Amz-Target", ""), body)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}}
                request = urllib.request.Request(  # noqa: S310 (loopback)
                    backend_url + self.path, data=body, headers=headers, method="POST"
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
                        status, payload, content_type = answer.status, answer.read(), answer.headers["Content-Type"]
                except urllib.error.HTTPError as exc:
                    status, payload, content_type = exc.code, exc.read(), exc.headers["Content-Type"]
                self.send_response(status)
                self.send_header("Content-Type", content_type or "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
        self.httpd.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def record(self, target: str, body: bytes) -> None:
        operation = target.rsplit(".", 1)[-1]
        if operation not in WRITE_OPERATIONS:
            return
        request = json.loads(body or b"{}")
        tables = request.get("RequestItems", {}).keys() if operation == "BatchWriteItem" else [request.get("TableName")]
        for table in tables:
            self.writes.append((operation, str(table)))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
