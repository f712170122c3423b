"""EC2 enrichment and record building.

EC2 DescribeInstances is called with the ``instance-id`` filter (200 values a call), never with
``InstanceIds``: with the filter an id EC2 no longer knows is simply absent, while with
``InstanceIds`` one unknown id fails the whole batch. The recovery instance has no launch time of
its own; it comes from EC2's ``LaunchTime``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import anyio

from syncengine.aws.clients import AwsClients
from syncengine.core.config import EC2_FILTER_MAX_IDS
from syncengine.core.errors import MalformedResponseError
from syncengine.core.models import RecoveryInstanceRecord, Scope, utc_now_iso
from syncengine.core.retry import CallContext
from syncengine.dynamodb.seam import chunked
from syncengine.tables.execution_index.lookup import ExecutionIndex

EC2_PAGE_SIZE = 1000


async def describe_ec2_instances(
    aws: AwsClients, ec2: Any, scope: Scope, limiter: anyio.CapacityLimiter, instance_ids: list[str]
) -> dict[str, dict[str, Any]]:
    context = CallContext("ec2:DescribeInstances", scope.account_id, scope.region)
    found: dict[str, dict[str, Any]] = {}
    for batch in chunked(dict.fromkeys(instance_ids), EC2_FILTER_MAX_IDS):
        pages = aws.pages(
            ec2,
            "describe_instances",
            context,
            cursor="NextToken",
            scope_limiter=limiter,
            Filters=[{"Name": "instance-id", "Values": batch}],
            MaxResults=EC2_PAGE_SIZE,
        )
        async for page in pages:
            for reservation in _reservations(page, context):
                for instance in reservation.get("Instances") or []:
                    if isinstance(instance, Mapping) and instance.get("InstanceId"):
                        found[instance["InstanceId"]] = instance
    return found


def _reservations(page: Mapping[str, Any], context: CallContext) -> list[Mapping[str, Any]]:
    """EC2 always sends ``reservationSet`` (empty when nothing matched); a 2xx answer without it
    is one we cannot read, not "these instances are gone"."""
    return MalformedResponseError.unless_list_of_maps(page.get("Reservations"), context, "reservations")


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return utc_now_iso(value if value.tzinfo else value.replace(tzinfo=UTC))
    return str(value)


def _tag_map(tags: Any) -> dict[str, str]:
    """DRS tags are a map; EC2 tags a list of {Key, Value}."""
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    if isinstance(tags, list):
        return {str(t.get("Key")): str(t.get("Value", "")) for t in tags if t.get("Key")}
    return {}


def source_server_name(server: Mapping[str, Any] | None) -> str | None:
    """The name operators know a server by: its Name tag, else the hostname DRS identified."""
    if not server:
        return None
    name = _tag_map(server.get("tags")).get("Name")
    if name:
        return name
    hints = (server.get("sourceProperties") or {}).get("identificationHints") or {}
    return hints.get("hostname") or hints.get("fqdn") or None


def build_record(
    scope: Scope,
    recovery_instance: Mapping[str, Any],
    source_server: Mapping[str, Any] | None,
    ec2_instance: Mapping[str, Any] | None,
    executions: ExecutionIndex,
    observed_at: int,
) -> RecoveryInstanceRecord | None:
    """One cache record from what DRS and EC2 said; None when DRS omits the identifying ids."""
    server_id = recovery_instance.get("sourceServerID")
    recovery_instance_id = recovery_instance.get("recoveryInstanceID")
    ec2_id = recovery_instance.get("ec2InstanceID") or ""
    if not server_id or not recovery_instance_id:
        return None
    # ``ec2InstanceState`` is EC2's lower-case state (API-CONTRACT.md, check-existing field
    # meanings; the orchestration's frontend compares it with 'running'); DRS's upper-case value
    # is kept apart as ``drsInstanceState``.
    drs_state = str(recovery_instance.get("ec2InstanceState") or "UNKNOWN")
    ec2 = ec2_instance or {}
    state = (ec2.get("State") or {}).get("Name") or drs_state.lower()
    job_id = recovery_instance.get("jobID") or None
    resolved = executions.resolve(
        job_id=job_id, recovery_instance_id=recovery_instance_id, source_server_id=server_id, region=scope.region
    )
    server = source_server or {}
    staging = (server.get("stagingArea") or {}).get("stagingAccountID") or None
    is_drill = recovery_instance.get("isDrill")
    return RecoveryInstanceRecord(
        source_server_id=server_id,
        recovery_instance_id=recovery_instance_id,
        account_id=scope.account_id,
        region=scope.region,
        ec2_instance_id=ec2_id or "UNKNOWN",
        ec2_instance_state=str(state),
        drs_instance_state=drs_state,
        source_server_name=source_server_name(server),
        job_id=job_id,
        is_drill=bool(is_drill) if is_drill is not None else None,
        point_in_time_snapshot_date_time=_iso(recovery_instance.get("pointInTimeSnapshotDateTime")),
        origin_environment=recovery_instance.get("originEnvironment") or None,
        source_execution_id=resolved.execution_id if resolved else None,
        source_plan_name=resolved.plan_name if resolved else None,
        attribution=resolved.attribution.value if resolved else None,
        replication_staging_account_id=staging,
        source_server_tags=tuple(sorted(_tag_map(server.get("tags")).items())),
        observed_at=observed_at,
        **_ec2_fields(ec2),
    )


def _ec2_fields(ec2: Mapping[str, Any]) -> dict[str, Any]:
    """The record's fields from EC2's description of the instance (every key read here is in
    ``syncengine.aws.fastpath.fields``, which the EC2 fast parser keeps)."""
    return {
        "name": _tag_map(ec2.get("Tags")).get("Name") or None,
        "private_ip": ec2.get("PrivateIpAddress") or None,
        "public_ip": ec2.get("PublicIpAddress") or None,
        "instance_type": ec2.get("InstanceType") or None,
        "launch_time": _iso(ec2.get("LaunchTime")),
        "source_vpc_id": ec2.get("VpcId") or None,
        "source_subnet_id": ec2.get("SubnetId") or None,
        "source_security_group_ids": tuple(g["GroupId"] for g in ec2.get("SecurityGroups") or [] if g.get("GroupId")),
        "source_instance_profile": (ec2.get("IamInstanceProfile") or {}).get("Arn") or None,
    }
