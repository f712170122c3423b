"""``syncengine simulate`` in its own process, as benchmarks and the demo run it: the issue's
acceptance scenario with plain boto3 against the ready file's endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.fixtures.simulator import NO_RETRY, client_kwargs, get_json, post_json

REPO = Path(__file__).resolve().parents[2]


class Endpoint:
    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url


@pytest.fixture
def cli_simulator(tmp_path: Path) -> Iterator[tuple[Endpoint, dict[str, Any]]]:
    ready = tmp_path / "ready.json"
    args = [
        sys.executable,
        "-m",
        "syncengine",
        "simulate",
        "--port",
        "0",
        "--accounts",
        "3",
        "--regions",
        "us-east-1,eu-west-1",
        "--instances-per-scope",
        "40",
        "--seed",
        "1",
        "--ready-file",
        str(ready),
    ]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "simulator did not become ready"
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        yield Endpoint(info["endpointUrl"]), info
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert not ready.exists()


def test_cli_simulate_acceptance_with_plain_boto3(cli_simulator) -> None:
    """Every scope paginated with each target's role totals the estate; EC2 finds the RIs;
    201 server ids get ValidationException; throttleRate 1.0 gives ThrottlingException/429."""
    sim, info = cli_simulator
    estate = get_json(sim, "/_simulator/estate")
    assert info["hubAccountId"] == estate["hubAccountId"] and info["pid"] != os.getpid()
    total = 0
    for account in estate["accounts"]:
        creds = None
        if not account["isHub"]:
            sts = boto3.client("sts", config=NO_RETRY, **client_kwargs(sim))
            creds = sts.assume_role(
                RoleArn=f"arn:aws:iam::{account['accountId']}:role/{account['roleName']}",
                RoleSessionName="acceptance",
                ExternalId=account["externalId"],
            )["Credentials"]
        for region in account["regions"]:
            drs = boto3.client("drs", config=NO_RETRY, **client_kwargs(sim, region, creds))
            pages = drs.get_paginator("describe_recovery_instances").paginate()
            items = [item for page in pages for item in page["items"]]
            total += len(items)
            ec2 = boto3.client("ec2", config=NO_RETRY, **client_kwargs(sim, region, creds))
            ids = [i["ec2InstanceID"] for i in items]
            found = ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": ids}])
            found_ids = [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]
            assert sorted(found_ids) == sorted(ids)
    assert total == estate["recoveryInstances"] == 3 * 2 * 40

    drs = boto3.client("drs", config=NO_RETRY, **client_kwargs(sim))
    with pytest.raises(ClientError) as too_many:
        drs.describe_source_servers(filters={"sourceServerIDs": [f"s-{n:017x}" for n in range(201)]})
    assert too_many.value.response["Error"]["Code"] == "ValidationException"

    post_json(sim, "/_simulator/faults", {"throttleRate": 1.0})
    with pytest.raises(ClientError) as throttled:
        drs.describe_recovery_instances()
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
