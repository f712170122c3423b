"""The original implementation's approach, for the before/after story: accounts then regions in
sequence; per scope DescribeRecoveryInstances (paginated); then, per recovery instance, one
DescribeSourceServers call for its server and one EC2 DescribeInstances call for its instance;
one PutItem per record. boto3 with its default (legacy) retry configuration.

The execution history is indexed once (with the engine's ``ExecutionIndex``) rather than scanned
per instance, so the baseline's cost is the N+1 call pattern alone, not a second strawman.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import boto3

from syncengine.core.config import SyncSettings
from syncengine.core.models import utc_now_iso
from syncengine.dynamodb.seam import from_item
from syncengine.sync.enrich import build_record
from syncengine.tables.accounts import plan_scopes, targets_from_items
from syncengine.tables.execution_index.lookup import ExecutionIndex
from syncengine.tables.records import record_to_item


@dataclass
class SequentialReport:
    instances_found: int = 0
    items_written: int = 0
    aws_calls: int = 0


def sync_sequential(settings: SyncSettings) -> SequentialReport:
    """One sync of every target account's regions, one call at a time."""
    session = boto3.Session()

    def client(service: str, region: str, **credentials: str) -> Any:
        return session.client(service, region_name=region, endpoint_url=settings.endpoint_url(service), **credentials)

    report = SequentialReport()
    dynamodb = client("dynamodb", settings.home_region)
    sts = client("sts", settings.home_region)

    def scan(table: str) -> list[dict[str, Any]]:
        return [
            from_item(item)
            for page in dynamodb.get_paginator("scan").paginate(TableName=table)
            for item in page.get("Items", [])
        ]

    current = sts.get_caller_identity()["Account"]
    targets = targets_from_items(scan(settings.tables.target_accounts), settings, current)
    executions = ExecutionIndex.from_items(scan(settings.tables.execution_history))
    for target in targets:
        credentials: dict[str, str] = {}
        if target.role_arn:
            params: dict[str, Any] = {"RoleArn": target.role_arn, "RoleSessionName": "original-sync"}
            if target.external_id:
                params["ExternalId"] = target.external_id
            creds = sts.assume_role(**params)["Credentials"]
            report.aws_calls += 1
            credentials = {
                "aws_access_key_id": creds["AccessKeyId"],
                "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"],
            }
        for scope, _target in plan_scopes([target], settings):
            drs = client("drs", scope.region, **credentials)
            ec2 = client("ec2", scope.region, **credentials)
            for page in drs.get_paginator("describe_recovery_instances").paginate(filters={}):
                report.aws_calls += 1
                for ri in page.get("items") or []:
                    server_id = ri.get("sourceServerID", "")
                    servers = drs.describe_source_servers(filters={"sourceServerIDs": [server_id]})["items"]
                    report.aws_calls += 1
                    instance = None
                    if ri.get("ec2InstanceID"):
                        reservations = ec2.describe_instances(InstanceIds=[ri["ec2InstanceID"]])["Reservations"]
                        report.aws_calls += 1
                        instance = next((i for r in reservations for i in r.get("Instances", [])), None)
                    record = build_record(
                        scope, ri, servers[0] if servers else None, instance, executions, int(time.time() * 1000)
                    )
                    if record is None:
                        continue
                    report.instances_found += 1
                    dynamodb.put_item(TableName=settings.tables.cache, Item=record_to_item(record, utc_now_iso()))
                    report.items_written += 1
    return report
