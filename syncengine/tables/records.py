"""A cache record as a DynamoDB item: the field mapping, the content hash and the public view.

One mapping for every reader and writer of the cache (``syncengine.tables.cache`` owns the table; the
handlers and tests read items through ``public_record``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from syncengine.core.models import RecoveryInstanceRecord, Scope
from syncengine.dynamodb.seam import to_item

# Record attribute -> item attribute. The order is the content hash's order: never reorder.
_CONTENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("source_server_id", "sourceServerId"),
    ("recovery_instance_id", "recoveryInstanceId"),
    ("account_id", "accountId"),
    ("region", "region"),
    ("ec2_instance_id", "ec2InstanceId"),
    ("ec2_instance_state", "ec2InstanceState"),
    ("source_server_name", "sourceServerName"),
    ("name", "name"),
    ("private_ip", "privateIp"),
    ("public_ip", "publicIp"),
    ("instance_type", "instanceType"),
    ("launch_time", "launchTime"),
    ("job_id", "jobId"),
    ("is_drill", "isDrill"),
    ("point_in_time_snapshot_date_time", "pointInTimeSnapshotDateTime"),
    ("origin_environment", "originEnvironment"),
    ("source_execution_id", "sourceExecutionId"),
    ("source_plan_name", "sourcePlanName"),
    ("replication_staging_account_id", "replicationStagingAccountId"),
    ("source_vpc_id", "sourceVpcId"),
    ("source_subnet_id", "sourceSubnetId"),
    ("source_security_group_ids", "sourceSecurityGroupIds"),
    ("source_instance_profile", "sourceInstanceProfile"),
    ("source_server_tags", "sourceServerTags"),
    ("drs_instance_state", "drsInstanceState"),
    # Added last: a record without an execution hashes as before; one with an execution changes
    # its hash once (the next sync writes it with its attribution), and never again.
    ("attribution", "attribution"),
)
REQUIRED_FIELDS = (
    "sourceServerId",
    "recoveryInstanceId",
    "accountId",
    "region",
    "ec2InstanceId",
    "ec2InstanceState",
    "lastSyncTime",
)
# Attributes the engine keeps for itself (not part of the public record).
INTERNAL_FIELDS = ("scopeKey", "contentHash", "observedAt")
# What the execution index decides (syncengine.tables.execution_index.lookup); the rest of the content is what DRS
# and EC2 said. The stored hash keeps the two apart (``record_hash``).
ATTRIBUTION_FIELDS = ("sourceExecutionId", "sourcePlanName", "attribution")
# ``contentHash`` = <observed content digest> "." <attribution kind letter> <attribution digest>.
HASH_SEPARATOR = "."
ATTRIBUTION_KINDS = {"job": "j", "recoveryInstance": "r", "inferred": "i", None: "n"}


def record_content(record: RecoveryInstanceRecord) -> dict[str, Any]:
    """The record as item values (camelCase), unknown values dropped."""
    content: dict[str, Any] = {}
    for attribute, key in _CONTENT_FIELDS:
        value = getattr(record, attribute)
        if key == "sourceServerTags":
            value = dict(value)
        elif key == "sourceSecurityGroupIds":
            value = list(value)
        if value is None or value == "" or value == [] or value == {}:
            continue
        content[key] = value
    return content


def content_hash(content: Mapping[str, Any]) -> str:
    """Stable digest of a record's content; observation and sync times are not content."""
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(encoded, digest_size=12).hexdigest()


def observed_hash(content: Mapping[str, Any]) -> str:
    """The digest of what DRS and EC2 said about the instance (the content without attribution)."""
    return content_hash({k: v for k, v in content.items() if k not in ATTRIBUTION_FIELDS})


def record_hash(content: Mapping[str, Any]) -> str:
    """The stored ``contentHash``: the observed digest, then the attribution's kind and digest.

    Kept apart so that a sync can tell from the cache's scope index alone (which projects
    ``contentHash``, not the attribution) whether DRS and EC2 changed anything and how the record
    was attributed: it reads the execution index only for what changed (syncengine.sync.pipeline)."""
    attribution = [content.get(key) for key in ATTRIBUTION_FIELDS]
    kind = ATTRIBUTION_KINDS.get(content.get("attribution"), "n")
    return f"{observed_hash(content)}{HASH_SEPARATOR}{kind}{content_hash({'a': attribution})[:8]}"


def split_record_hash(value: str) -> tuple[str | None, str | None]:
    """A stored ``contentHash`` as (observed digest, attribution kind letter); (None, None) for a
    hash written before the two were kept apart (its record is attributed again once)."""
    observed, separator, attribution = value.partition(HASH_SEPARATOR)
    if not separator or not attribution:
        return None, None
    return observed, attribution[0]


def record_to_item(record: RecoveryInstanceRecord, last_sync_time: str, digest: str | None = None) -> dict[str, Any]:
    """The item of ``record``; ``digest``: its ``record_hash``, when the caller has it already."""
    content = record_content(record)
    return to_item(
        {
            **content,
            "lastSyncTime": last_sync_time,
            "scopeKey": record.scope.key,
            "contentHash": digest or record_hash(content),
            "observedAt": record.observed_at,
        }
    )


# Attributes of items written before ``ec2InstanceState`` became EC2's lower-case name: EC2's name
# was ``ec2State`` and ``ec2InstanceState`` held DRS's upper-case value. Such an item is rewritten
# once by the next sync of its scope (its content hash differs); until then it is read as new.
_LEGACY_EC2_STATE = "ec2State"


def public_record(item: Mapping[str, Any]) -> dict[str, Any]:
    """A decoded cache item without the engine's bookkeeping attributes, ``ec2InstanceState``
    always EC2's lower-case name (API-CONTRACT.md, check-existing field meanings)."""
    record = {k: v for k, v in item.items() if k not in INTERNAL_FIELDS and k != _LEGACY_EC2_STATE}
    state = item.get("ec2InstanceState")
    if isinstance(state, str) and not state.islower():
        record.setdefault("drsInstanceState", state)
        record["ec2InstanceState"] = item.get(_LEGACY_EC2_STATE) or state.lower()
    return record


def confirmed_sync_time(record: Mapping[str, Any], reconciled_at: Mapping[Scope, str]) -> str | None:
    """When a successful sync last confirmed this cached record (API-CONTRACT.md, check-existing
    field meanings), without the record ever being rewritten for it.

    The item's own ``lastSyncTime`` is when a sync last wrote it. A scope whose last successful
    full-scope sync finished at T deleted every record of the scope it did not see, so a record
    of that scope still cached was seen by it: confirmed at T. Targeted syncs (a wave's, an
    event's) reconcile only their servers and do not count (``reconciled_at`` holds full-scope
    syncs only). Both are ISO-8601 UTC in one format, so the later is the greater string."""
    written = record.get("lastSyncTime")
    scope = Scope(str(record.get("accountId", "")), str(record.get("region", "")))
    reconciled = reconciled_at.get(scope)
    candidates = [t for t in (written, reconciled) if isinstance(t, str) and t]
    return max(candidates) if candidates else None


def newer(candidate: RecoveryInstanceRecord, current: RecoveryInstanceRecord) -> bool:
    """Between two recovery instances of one server, the later launch wins (then the later
    observation, then the id, so the choice is deterministic)."""
    return (candidate.launch_time or "", candidate.observed_at, candidate.recovery_instance_id) > (
        current.launch_time or "",
        current.observed_at,
        current.recovery_instance_id,
    )
