"""What botocore's DynamoDB codec costs the engine's CPU per cache item, beside a plain-JSON fast
path (``python -m benchmarks.experiments.dynamodb_codec``).

Writes, one BatchWriteItem of 25 items before it reaches the network:

* ``botocore (validate + serialize)``: botocore's default (the engine paid this until it set
  ``parameter_validation=False``);
* ``botocore serialize only``: what every engine write pays now (the baseline of the proposal);
* ``json.dumps``: a fast path that sends the already-encoded DynamoDB JSON as the body, as the
  engine's read fast paths already do for DRS/EC2 responses.

Reads, one BatchGetItem answer of 100 items (what check-existing parses on every page load):

* ``botocore parse``: botocore's shape-driven JSON parser (today);
* ``json.loads``: the body is already DynamoDB JSON; decoding it is all a fast path would do.

The items are real cache items built by the engine's own ``build_record`` and ``record_to_item``.
No network, no DynamoDB: serialization only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

ITEMS_PER_BATCH = 25
BATCHES = 400
READ_ITEMS = 100
READ_ROUNDS = 100


def cache_items(count: int) -> list[dict[str, Any]]:
    from syncengine.core.models import Scope
    from syncengine.sync.enrich import build_record
    from syncengine.tables.execution_index.lookup import ExecutionIndex
    from syncengine.tables.records import record_to_item

    scope = Scope("111122223333", "us-east-1")
    items = []
    for n in range(count):
        ri = {
            "recoveryInstanceID": f"i-{n:017x}",
            "sourceServerID": f"s-{n:017x}",
            "ec2InstanceID": f"i-{n + 10**6:017x}",
            "ec2InstanceState": "RUNNING",
            "jobID": f"drsjob-{n // 20:017x}",
            "isDrill": True,
            "pointInTimeSnapshotDateTime": "2025-05-01T10:00:00Z",
            "originEnvironment": "ON_PREMISES",
        }
        server = {
            "sourceServerID": ri["sourceServerID"],
            "tags": {"Name": f"app-{n:05d}", "Environment": "prod", "Application": "billing", "Owner": "team-a"},
            "stagingArea": {"stagingAccountID": "444455556666"},
        }
        ec2 = {
            "InstanceId": ri["ec2InstanceID"],
            "State": {"Name": "running"},
            "PrivateIpAddress": f"10.0.{n % 250}.{n % 200 + 10}",
            "InstanceType": "m5.large",
            "LaunchTime": "2025-05-02T08:00:00Z",
            "VpcId": "vpc-0123456789abcdef0",
            "SubnetId": "subnet-0123456789abcdef0",
            "SecurityGroups": [{"GroupId": "sg-0123456789abcdef0"}, {"GroupId": "sg-0fedcba9876543210"}],
            "IamInstanceProfile": {"Arn": "arn:aws:iam::111122223333:instance-profile/drs-recovered"},
            "Tags": [{"Key": "Name", "Value": f"app-{n:05d}-recovered"}],
        }
        record = build_record(scope, ri, server, ec2, ExecutionIndex(), 1_750_000_000_000)
        assert record is not None
        items.append(record_to_item(record, "2025-06-01T00:00:00.000Z"))
    return items


def measure(
    label: str, action: Callable[[Any], Any], calls: list[Any], per_call: int = ITEMS_PER_BATCH
) -> dict[str, Any]:
    started = time.process_time()
    for argument in calls:
        action(argument)
    seconds = time.process_time() - started
    per_item_us = seconds / (len(calls) * per_call) * 1e6
    return {"path": label, "cpu_s": round(seconds, 3), "us_per_item": round(per_item_us, 1)}


def main() -> list[dict[str, Any]]:
    import botocore.session
    from botocore.validate import ParamValidator

    session = botocore.session.get_session()
    # Never used to send anything: only its serializer and service model are read.
    client = session.create_client("dynamodb", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    operation = client.meta.service_model.operation_model("BatchWriteItem")
    serializer = client._serializer  # the serializer botocore uses for every DynamoDB request
    validator = ParamValidator()
    items = cache_items(ITEMS_PER_BATCH * BATCHES)
    requests = [
        {"RequestItems": {"cache": [{"PutRequest": {"Item": item}} for item in items[i : i + ITEMS_PER_BATCH]]}}
        for i in range(0, len(items), ITEMS_PER_BATCH)
    ]

    def validate_and_serialize(params: dict[str, Any]) -> Any:
        report = validator.validate(params, operation.input_shape)
        assert not report.has_errors()
        return serializer.serialize_to_request(params, operation)

    results = [
        measure("write: botocore (validate + serialize)", validate_and_serialize, requests),
        measure("write: botocore serialize only", lambda p: serializer.serialize_to_request(p, operation), requests),
        measure("write: json.dumps (fast path)", lambda p: json.dumps(p, separators=(",", ":")).encode(), requests),
        *read_paths(client, items),
    ]
    for row in results:
        print(f"{row['path']:<40} {row['cpu_s']:>7.3f} s CPU  {row['us_per_item']:>7.1f} µs/item")
    return results


def read_paths(client: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from botocore.parsers import create_parser

    operation = client.meta.service_model.operation_model("BatchGetItem")
    parser = create_parser("json")
    page = items[:READ_ITEMS]
    body = json.dumps({"Responses": {"cache": page}, "UnprocessedKeys": {}}).encode()
    response = {"body": body, "headers": {}, "status_code": 200}

    def botocore_parse(_: Any) -> Any:
        return parser.parse(response, operation.output_shape)

    def plain_json(_: Any) -> Any:
        return json.loads(body)

    rounds = [None] * READ_ROUNDS
    return [
        measure("read: botocore parse", botocore_parse, rounds, per_call=READ_ITEMS),
        measure("read: json.loads (fast path)", plain_json, rounds, per_call=READ_ITEMS),
    ]


if __name__ == "__main__":
    main()
