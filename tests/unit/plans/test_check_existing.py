"""syncengine.plans.check_existing: reading plans, waves and protection groups (pure parts)."""

from __future__ import annotations

import pytest

from syncengine.core.errors import InvalidRequestError
from syncengine.plans.check_existing import (
    ALWAYS_PRESENT_FIELDS,
    existing_instances_body,
    group_ids_of,
    selection_tags,
    tags_match,
    validate_identifier,
    wave_server_ids,
)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("plan-001", id="slug"),
        pytest.param("3f1c9a4e-0c5b-4b7e-9a65-6d1f0f3b2c11", id="uuid"),
        pytest.param("plan é/ü", id="unicode"),
        pytest.param("p" * 256, id="longest"),
    ],
)
def test_validate_identifier_accepts_key_values(value: str) -> None:
    assert validate_identifier("planId", value) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="none"),
        pytest.param(12, id="number"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("p" * 257, id="too-long"),
        pytest.param("a\nb", id="newline"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("\ud800", id="lone-surrogate"),
    ],
)
def test_validate_identifier_rejects_junk_with_a_sentence(value: object) -> None:
    with pytest.raises(InvalidRequestError, match=r"^planId .*\.$"):
        validate_identifier("planId", value)


@pytest.mark.parametrize(
    ("wave", "expected"),
    [
        pytest.param({"protectionGroupId": "pg-1"}, ["pg-1"], id="single"),
        pytest.param({"protectionGroupIds": ["pg-1", "pg-2"]}, ["pg-1", "pg-2"], id="list"),
        pytest.param(
            {"protectionGroupId": "pg-1", "protectionGroupIds": ["pg-1", "pg-3"]}, ["pg-1", "pg-3"], id="both"
        ),
        pytest.param({"protectionGroupId": ""}, [], id="empty"),
        pytest.param({"protectionGroupIds": [None, {"x": 1}]}, [], id="junk"),
    ],
)
def test_group_ids_of_reads_either_field(wave: dict, expected: list[str]) -> None:
    assert group_ids_of(wave) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({"Application": "billing", "Tier": "web"}, {"Application": "billing", "Tier": "web"}, id="map"),
        pytest.param([{"Key": "Application", "Value": "billing"}], {"Application": "billing"}, id="ec2-pairs"),
        pytest.param([{"key": "Tier", "value": "db"}], {"Tier": "db"}, id="lowercase-pairs"),
        pytest.param(None, {}, id="none"),
        pytest.param("billing", {}, id="string"),
    ],
)
def test_selection_tags_normalises_to_a_map(raw: object, expected: dict[str, str]) -> None:
    assert selection_tags(raw) == expected


@pytest.mark.parametrize(
    ("selection", "tags", "expected"),
    [
        pytest.param({"App": "crm"}, {"App": "crm", "Tier": "web"}, True, id="subset"),
        pytest.param({"App": "crm", "Tier": "db"}, {"App": "crm", "Tier": "web"}, False, id="one-differs"),
        pytest.param({"App": "crm"}, {"Tier": "web"}, False, id="missing"),
        pytest.param({"App": ""}, {}, False, id="empty-value-needs-the-tag"),
        pytest.param({"App": ""}, {"App": ""}, True, id="empty-value-present"),
        pytest.param({}, {"App": "crm"}, False, id="empty-selection-selects-nothing"),
    ],
)
def test_tags_match_requires_every_tag_equal(selection: dict, tags: dict, expected: bool) -> None:
    assert tags_match(selection, tags) is expected


def test_wave_server_ids_unions_statuses_and_lists_in_order() -> None:
    wave = {
        "serverStatuses": [{"sourceServerId": "s-2"}, {"launchStatus": "FAILED"}, "junk"],
        "serverIds": ["s-1", "s-2"],
        "sourceServerIds": ["s-3"],
    }

    assert wave_server_ids(wave) == ["s-2", "s-1", "s-3"]


def test_existing_instances_body_without_records() -> None:
    assert existing_instances_body("plan-1", []) == {
        "hasExistingInstances": False,
        "instanceCount": 0,
        "planId": "plan-1",
        "existingInstances": [],
        "unverifiedServerIds": [],
    }


def test_existing_instances_body_fills_contract_fields() -> None:
    """Fields the contract always lists are present (None when unknown); extra ones are kept."""
    record = {"sourceServerId": "s-1", "recoveryInstanceId": "i-1", "privateIp": "10.0.0.4"}

    body = existing_instances_body("plan-1", [record])

    entry = body["existingInstances"][0]
    assert set(ALWAYS_PRESENT_FIELDS) <= set(entry)
    assert entry["sourceExecutionId"] is None
    assert entry["privateIp"] == "10.0.0.4"
    assert (body["hasExistingInstances"], body["instanceCount"]) == (True, 1)
