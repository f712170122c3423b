"""syncengine.sync.discovery: what is kept of DRS's answers, and answers that cannot be read."""

from __future__ import annotations

import pytest

from syncengine.core.errors import MalformedResponseError
from syncengine.core.retry import CallContext
from syncengine.sync.discovery import page_items, slim_recovery_instance, slim_source_server

CONTEXT = CallContext("drs:DescribeRecoveryInstances", account_id="123456789012", region="us-east-1")


@pytest.mark.parametrize(
    "page",
    [
        pytest.param({"items": ["x"]}, id="items-not-objects"),
        pytest.param({"items": "x"}, id="items-not-a-list"),
        pytest.param({"items": {"a": 1}}, id="items-an-object"),
    ],
)
def test_discovery_page_whose_items_are_not_a_list_of_objects_is_malformed(page: dict) -> None:
    """Never read as "no instances": that would delete the scope's records."""
    with pytest.raises(MalformedResponseError):
        page_items(page, CONTEXT)


@pytest.mark.parametrize(
    "page",
    [
        pytest.param({"items": []}, id="empty-list"),
        pytest.param({}, id="no-items"),
        pytest.param({"items": None}, id="null-items"),
        pytest.param({"nextToken": "t"}, id="no-items-with-a-token"),
    ],
)
def test_discovery_page_without_items_is_an_empty_page(page: dict) -> None:
    """DRS's model does not require ``items``: absent or null, the page is empty."""
    assert page_items(page, CONTEXT) == []


def test_discovery_slim_recovery_instance_drops_null_fields() -> None:
    item = {"recoveryInstanceID": "i-1", "sourceServerID": "s-1", "jobID": None, "isDrill": None}
    assert slim_recovery_instance(item) == {"recoveryInstanceID": "i-1", "sourceServerID": "s-1"}


def test_discovery_slim_recovery_instance_keeps_what_records_read() -> None:
    item = {"recoveryInstanceID": "i-1", "sourceServerID": "s-1", "dataReplicationInfo": {"big": "x"}}
    assert slim_recovery_instance(item) == {"recoveryInstanceID": "i-1", "sourceServerID": "s-1"}


def test_discovery_slim_source_server_keeps_name_hints_tags_and_staging() -> None:
    item = {
        "sourceServerID": "s-1",
        "tags": {"Name": "web"},
        "sourceProperties": {"identificationHints": {"hostname": "web-01", "awsInstanceID": "i-9"}, "cpus": []},
        "stagingArea": {"stagingAccountID": "210987654321", "status": "EXTENDED"},
    }
    assert slim_source_server(item) == {
        "sourceServerID": "s-1",
        "tags": {"Name": "web"},
        "sourceProperties": {"identificationHints": {"hostname": "web-01"}},
        "stagingArea": {"stagingAccountID": "210987654321"},
    }
