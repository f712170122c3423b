"""The original live "check existing instances" algorithm the cache replaces: for a plan, read the
plan and its protection groups, then for every (account, region) the plan touches call DRS
DescribeRecoveryInstances (paginated), and for each of the plan's servers that has a recovery
instance look up its source server (DescribeSourceServers) and its EC2 instance (DescribeInstances),
one call each, in sequence. boto3, default configuration.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import boto3

from syncengine.core.config import SyncSettings
from syncengine.dynamodb.seam import from_item, to_item
from syncengine.sync.enrich import source_server_name


class LiveChecker:
    """Holds the boto3 clients across repetitions (a warm Lambda container would)."""

    def __init__(self, settings: SyncSettings, accounts: dict[str, dict[str, Any]]):
        self.settings = settings
        self.accounts = accounts
        self.session = boto3.Session()
        self.dynamodb = self._client("dynamodb", settings.home_region)
        self.sts = self._client("sts", settings.home_region)
        self.calls = 0

    def _client(self, service: str, region: str, **credentials: str) -> Any:
        return self.session.client(
            service, region_name=region, endpoint_url=self.settings.endpoint_url(service), **credentials
        )

    def _credentials(self, account_id: str) -> dict[str, str]:
        account = self.accounts[account_id]
        if account.get("isCurrentAccount"):
            return {}
        creds = self.sts.assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/{account['assumeRoleName']}",
            RoleSessionName="live-check",
            ExternalId=account["externalId"],
        )["Credentials"]
        self.calls += 1
        return {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        }

    def check(self, plan_id: str) -> dict[str, Any]:
        tables = self.settings.tables
        plan = from_item(
            self.dynamodb.get_item(TableName=tables.recovery_plans, Key=to_item({"planId": plan_id}))["Item"]
        )
        wanted: dict[tuple[str, str], list[str]] = defaultdict(list)
        for wave in plan.get("waves", []):
            group = from_item(
                self.dynamodb.get_item(
                    TableName=tables.protection_groups, Key=to_item({"groupId": wave["protectionGroupId"]})
                )["Item"]
            )
            wanted[(group["accountId"], group["region"])].extend(group.get("sourceServerIds", []))
        existing: list[dict[str, Any]] = []
        for (account_id, region), server_ids in wanted.items():
            credentials = self._credentials(account_id)
            drs = self._client("drs", region, **credentials)
            ec2 = self._client("ec2", region, **credentials)
            by_server: dict[str, dict[str, Any]] = {}
            for page in drs.get_paginator("describe_recovery_instances").paginate(filters={}):
                self.calls += 1
                by_server.update((ri["sourceServerID"], ri) for ri in page.get("items") or [])
            for server_id in server_ids:
                ri = by_server.get(server_id)
                if ri is None:
                    continue
                servers = drs.describe_source_servers(filters={"sourceServerIDs": [server_id]})["items"]
                reservations = ec2.describe_instances(InstanceIds=[ri["ec2InstanceID"]])["Reservations"]
                self.calls += 2
                instance = next((i for r in reservations for i in r.get("Instances", [])), {})
                existing.append(
                    {
                        "sourceServerId": server_id,
                        "recoveryInstanceId": ri["recoveryInstanceID"],
                        "ec2InstanceId": ri["ec2InstanceID"],
                        # DRS's own value, as the original live check returned it.
                        "ec2InstanceState": ri.get("ec2InstanceState"),
                        "sourceServerName": source_server_name(servers[0] if servers else None),
                        "privateIp": instance.get("PrivateIpAddress"),
                        "region": region,
                        "accountId": account_id,
                    }
                )
        return {
            "hasExistingInstances": bool(existing),
            "instanceCount": len(existing),
            "planId": plan_id,
            "existingInstances": existing,
        }
