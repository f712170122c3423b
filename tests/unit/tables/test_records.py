"""Record building, item mapping and content hashing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncengine.core.models import Scope
from syncengine.dynamodb.seam import from_item, to_item
from syncengine.sync.enrich import build_record, source_server_name
from syncengine.tables.execution_index.lookup import ExecutionIndex
from syncengine.tables.records import REQUIRED_FIELDS, content_hash, public_record, record_content, record_to_item

SCOPE = Scope("111122223333", "us-east-1")
RI = {
    "recoveryInstanceID": "i-0123456789abcdef0",
    "sourceServerID": "s-0123456789abcdef0",
    "ec2InstanceID": "i-0fedcba9876543210",
    "ec2InstanceState": "RUNNING",
    "jobID": "drsjob-0123456789abcdef0",
    "isDrill": True,
    "pointInTimeSnapshotDateTime": "2026-11-25T10:00:00+00:00",
    "originEnvironment": "ON_PREMISES",
}
SERVER = {
    "sourceServerID": "s-0123456789abcdef0",
    "tags": {"Name": "web-01", "Tier": "web"},
    "sourceProperties": {"identificationHints": {"hostname": "web01.corp"}},
    "stagingArea": {"stagingAccountID": "444455556666"},
}
EC2 = {
    "InstanceId": "i-0fedcba9876543210",
    "InstanceType": "m5.large",
    "State": {"Code": 16, "Name": "running"},
    "PrivateIpAddress": "10.0.0.5",
    "LaunchTime": datetime(2026, 11, 25, 10, 5, 0, tzinfo=UTC),
    "Tags": [{"Key": "Name", "Value": "web-01-recovered"}],
    "VpcId": "vpc-1",
    "SubnetId": "subnet-1",
    "SecurityGroups": [{"GroupId": "sg-1"}, {"GroupId": "sg-2"}],
}


def test_build_record_maps_every_source() -> None:
    """DRS, source server and EC2 fields land in the record."""
    record = build_record(SCOPE, RI, SERVER, EC2, ExecutionIndex(), observed_at=5)
    assert record is not None
    assert record.source_server_name == "web-01"
    assert record.name == "web-01-recovered"
    assert record.private_ip == "10.0.0.5"
    assert record.public_ip is None
    assert record.launch_time == "2026-11-25T10:05:00.000Z"
    assert record.replication_staging_account_id == "444455556666"
    assert record.source_security_group_ids == ("sg-1", "sg-2")
    assert dict(record.source_server_tags) == {"Name": "web-01", "Tier": "web"}


def test_build_record_ec2_instance_state_is_ec2s_lower_case_name() -> None:
    """``ec2InstanceState`` is EC2's lower-case state, as the orchestration's Recovery Plans page
    compares it (frontend/src/pages/RecoveryPlansPage.tsx, ``=== 'running'``); DRS's upper-case
    value is kept apart as ``drsInstanceState``."""
    record = build_record(SCOPE, {**RI, "ec2InstanceState": "STOPPED"}, SERVER, EC2, ExecutionIndex(), observed_at=5)
    assert record is not None
    item = from_item(record_to_item(record, "2026-11-25T10:00:00.000Z"))
    assert (item["ec2InstanceState"], item["drsInstanceState"]) == ("running", "STOPPED")
    assert "ec2State" not in item


def test_build_record_without_ec2_has_drs_state_lower_cased() -> None:
    """When EC2 no longer knows the instance, ``ec2InstanceState`` is DRS's value lower-cased."""
    record = build_record(SCOPE, {**RI, "ec2InstanceState": "NOT_FOUND"}, SERVER, None, ExecutionIndex(), observed_at=5)
    assert record is not None
    item = from_item(record_to_item(record, "2026-11-25T10:00:00.000Z"))
    assert (item["ec2InstanceState"], item["drsInstanceState"]) == ("not_found", "NOT_FOUND")
    assert record.launch_time is None


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        pytest.param({"ec2InstanceState": "running"}, "running", id="current"),
        pytest.param({"ec2InstanceState": "STOPPED", "ec2State": "stopped"}, "stopped", id="legacy-with-ec2"),
        pytest.param({"ec2InstanceState": "NOT_FOUND"}, "not_found", id="legacy-without-ec2"),
    ],
)
def test_public_record_reads_items_written_before_the_lower_case_state(stored: dict, expected: str) -> None:
    """An item cached before the change answers EC2's lower-case state until a sync rewrites it."""
    public = public_record({"sourceServerId": "s-1", "contentHash": "h", **stored})
    assert public["ec2InstanceState"] == expected
    assert "ec2State" not in public and "contentHash" not in public


def test_source_server_name_prefers_name_tag_then_hostname() -> None:
    """Hostname is used when the server has no Name tag."""
    assert source_server_name({"sourceProperties": {"identificationHints": {"hostname": "db01"}}}) == "db01"
    assert source_server_name(None) is None


def test_record_item_omits_unknown_values_and_has_required_fields() -> None:
    """No empty strings are written; the required fields are always present."""
    record = build_record(SCOPE, RI, SERVER, None, ExecutionIndex(), observed_at=5)
    assert record is not None
    item = record_to_item(record, "2026-11-25T10:00:00.000Z")
    assert all(v != {"S": ""} for v in item.values())
    assert "publicIp" not in item and "name" not in item
    decoded = from_item(item)
    assert all(field in decoded for field in REQUIRED_FIELDS)
    assert decoded["scopeKey"] == "111122223333#us-east-1"
    assert decoded["lastSyncTime"].endswith("Z")


def test_content_hash_ignores_sync_and_observation_times() -> None:
    """The same content observed twice hashes equal; a changed IP does not."""
    first = build_record(SCOPE, RI, SERVER, EC2, ExecutionIndex(), observed_at=1)
    second = build_record(SCOPE, RI, SERVER, EC2, ExecutionIndex(), observed_at=2)
    changed = build_record(SCOPE, RI, SERVER, {**EC2, "PrivateIpAddress": "10.0.0.6"}, ExecutionIndex(), 3)
    assert first and second and changed
    assert record_to_item(first, "a")["contentHash"] == record_to_item(second, "b")["contentHash"]
    assert content_hash(record_content(first)) != content_hash(record_content(changed))


def test_codec_round_trips_nested_values() -> None:
    """Maps, lists, booleans and numbers survive the hand-written codec."""
    value = {"a": "x", "b": 3, "c": 2.5, "d": True, "e": ["p", "q"], "f": {"k": "v"}, "g": None, "h": ""}
    assert from_item(to_item(value)) == {"a": "x", "b": 3, "c": 2.5, "d": True, "e": ["p", "q"], "f": {"k": "v"}}


def test_execution_index_resolution_order() -> None:
    """jobId beats recoveryInstanceId, which beats the latest execution listing the server."""
    items = [
        {
            "executionId": "exec-old",
            "planName": "Old",
            "startTime": 100,
            "waves": [
                {
                    "region": "us-east-1",
                    "jobId": "drsjob-aaaaaaaaaaaaaaaaa",
                    "serverStatuses": [{"sourceServerId": "s-1", "recoveryInstanceId": "i-ri1"}],
                }
            ],
        },
        {
            "executionId": "exec-new",
            "planName": "New",
            "startTime": 200,
            "waves": [{"region": "us-east-1", "serverStatuses": [{"sourceServerId": "s-1"}]}],
        },
    ]
    index = ExecutionIndex.from_items(items)
    by_job = index.resolve(
        job_id="drsjob-aaaaaaaaaaaaaaaaa", recovery_instance_id="i-x", source_server_id="s-9", region="us-east-1"
    )
    by_ri = index.resolve(job_id=None, recovery_instance_id="i-ri1", source_server_id="s-1", region="us-east-1")
    latest = index.resolve(job_id=None, recovery_instance_id="i-x", source_server_id="s-1", region="us-east-1")
    other_region = index.resolve(job_id=None, recovery_instance_id="i-x", source_server_id="s-1", region="eu-west-1")
    assert by_job and by_job.execution_id == "exec-old"
    assert by_ri and by_ri.execution_id == "exec-old"
    assert latest and (latest.execution_id, latest.plan_name) == ("exec-new", "New")
    assert other_region is None
