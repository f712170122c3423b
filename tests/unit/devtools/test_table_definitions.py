"""Table definitions read from cfn/database-stack.yaml: no server needed."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from devtools.tables import (
    ENV_TEMPLATE_PATH,
    LOGICAL_ID_TO_FIELD,
    CloudFormationLoader,
    TableDefinition,
    load_table_definitions,
    load_template,
    main,
    resolve_template_path,
    table_definitions_from_template,
)
from syncengine.core.config import TableNames
from syncengine.core.errors import ConfigurationError


@pytest.fixture(scope="module")
def definitions() -> dict[str, TableDefinition]:
    return {d.tables_field: d for d in load_table_definitions()}


def _template_with_tables(*logical_ids: str) -> dict:
    table = {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        },
    }
    return {"Resources": {logical_id: table for logical_id in logical_ids}}


def test_load_table_definitions_covers_every_table_names_field(
    definitions: dict[str, TableDefinition],
) -> None:
    """Each TableNames field has exactly one table in the template."""
    assert set(definitions) == {f.name for f in fields(TableNames)}


def test_load_table_definitions_cache_table_keyed_by_source_server(
    definitions: dict[str, TableDefinition],
) -> None:
    """The cache holds one record per source server."""
    cache = definitions["cache"]
    assert cache.key_attribute("HASH") == "sourceServerId"
    assert cache.key_attribute("RANGE") is None


def test_load_table_definitions_execution_index_projects_all(definitions: dict[str, TableDefinition]) -> None:
    """The terminate flow reads whole records from the by-execution index."""
    index = definitions["cache"].index("sourceExecutionId-index")
    assert index["KeySchema"] == [{"AttributeName": "sourceExecutionId", "KeyType": "HASH"}]
    assert index["Projection"] == {"ProjectionType": "ALL"}


def test_load_table_definitions_scope_index_includes_change_detection_attributes(
    definitions: dict[str, TableDefinition],
) -> None:
    """Reconciliation reads content hashes and observation times from the by-scope index alone."""
    index = definitions["cache"].index("scopeKey-index")
    assert index["KeySchema"] == [{"AttributeName": "scopeKey", "KeyType": "HASH"}]
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert {"recoveryInstanceId", "contentHash", "observedAt"} <= set(index["Projection"]["NonKeyAttributes"])


def test_load_table_definitions_status_table_has_pk_sk_and_ttl(
    definitions: dict[str, TableDefinition],
) -> None:
    """Status items are pk/sk pairs that expire through the ttl attribute."""
    status = definitions["status"]
    assert (status.key_attribute("HASH"), status.key_attribute("RANGE")) == ("pk", "sk")
    assert status.ttl_attribute == "ttl"


def test_load_table_definitions_execution_history_keyed_by_execution_and_plan(
    definitions: dict[str, TableDefinition],
) -> None:
    """The execution-history contract: PK executionId, SK planId."""
    history = definitions["execution_history"]
    assert (history.key_attribute("HASH"), history.key_attribute("RANGE")) == ("executionId", "planId")


@pytest.mark.parametrize(
    ("field", "hash_key"),
    [
        pytest.param("target_accounts", "accountId", id="target-accounts"),
        pytest.param("recovery_plans", "planId", id="recovery-plans"),
        pytest.param("protection_groups", "groupId", id="protection-groups"),
    ],
)
def test_load_table_definitions_contract_tables_hash_keys(
    definitions: dict[str, TableDefinition], field: str, hash_key: str
) -> None:
    """The orchestration tables we read keep the keys the contract names."""
    assert definitions[field].key_attribute("HASH") == hash_key


def test_create_table_request_is_on_demand_with_given_name(definitions: dict[str, TableDefinition]) -> None:
    """CreateTable uses the configured name, on-demand billing and no throughput numbers."""
    request = definitions["cache"].create_table_request("my-cache")
    assert request["TableName"] == "my-cache"
    assert request["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in request
    assert all("ProvisionedThroughput" not in gsi for gsi in request["GlobalSecondaryIndexes"])


def test_create_table_request_does_not_share_state_with_definition(
    definitions: dict[str, TableDefinition],
) -> None:
    """Mutating a request (botocore may) never changes the loaded definition."""
    request = definitions["cache"].create_table_request("x-cache")
    request["GlobalSecondaryIndexes"][0]["Projection"]["ProjectionType"] = "KEYS_ONLY"
    assert definitions["cache"].index("sourceExecutionId-index")["Projection"]["ProjectionType"] == "ALL"


def test_table_definitions_from_template_unknown_table_fails() -> None:
    """A template table with no TableNames field is an error, not silently skipped."""
    template = _template_with_tables(*LOGICAL_ID_TO_FIELD, "AuditLogTable")
    with pytest.raises(ConfigurationError, match="AuditLogTable"):
        table_definitions_from_template(template)


def test_table_definitions_from_template_missing_table_fails() -> None:
    """A table the code expects but the template lacks is an error."""
    template = _template_with_tables(*(i for i in LOGICAL_ID_TO_FIELD if i != "ProtectionGroupsTable"))
    with pytest.raises(ConfigurationError, match="missing from the template: ProtectionGroupsTable"):
        table_definitions_from_template(template)


def test_table_definitions_from_template_ignores_other_resource_types() -> None:
    """Only AWS::DynamoDB::Table resources become definitions."""
    template = _template_with_tables(*LOGICAL_ID_TO_FIELD)
    template["Resources"]["Alarm"] = {"Type": "AWS::CloudWatch::Alarm", "Properties": {}}
    assert len(table_definitions_from_template(template)) == len(LOGICAL_ID_TO_FIELD)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("!Ref ProjectName", {"Ref": "ProjectName"}, id="ref"),
        pytest.param('!Sub "${A}-b"', {"Fn::Sub": "${A}-b"}, id="sub"),
        pytest.param("!GetAtt Table.Arn", {"Fn::GetAtt": ["Table", "Arn"]}, id="getatt-dotted"),
        pytest.param("!GetAtt [Table, Arn]", {"Fn::GetAtt": ["Table", "Arn"]}, id="getatt-list"),
        pytest.param("!If [C, !Ref A, x]", {"Fn::If": ["C", {"Ref": "A"}, "x"]}, id="if-nested"),
        pytest.param("!Equals [!Ref E, prod]", {"Fn::Equals": [{"Ref": "E"}, "prod"]}, id="equals"),
        pytest.param("!Condition IsProd", {"Condition": "IsProd"}, id="condition"),
        pytest.param('!Sub ["x-${V}", {V: !Ref A}]', {"Fn::Sub": ["x-${V}", {"V": {"Ref": "A"}}]}, id="sub-map"),
    ],
)
def test_cloudformation_loader_short_form_tags(source: str, expected: dict) -> None:
    """Short-form intrinsics load as their long forms."""
    assert yaml.load(f"value: {source}", Loader=CloudFormationLoader)["value"] == expected  # noqa: S506


def test_load_template_resolves_tags_in_real_template() -> None:
    """The real template's !Sub table names load as Fn::Sub."""
    template = load_template(resolve_template_path())
    name = template["Resources"]["RecoveryInstanceSyncStatusTable"]["Properties"]["TableName"]
    assert name == {"Fn::Sub": "${ProjectName}-recovery-instance-sync-status-${Environment}"}


def test_resolve_template_path_env_var_wins_over_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$SYNCENGINE_DATABASE_TEMPLATE selects another template."""
    other = tmp_path / "db.yaml"
    other.write_text("Resources: {}\n")
    monkeypatch.setenv(ENV_TEMPLATE_PATH, str(other))
    assert resolve_template_path() == other


def test_resolve_template_path_missing_file_fails(tmp_path: Path) -> None:
    """A template path that does not exist is a configuration error naming it."""
    with pytest.raises(ConfigurationError, match=r"nope\.yaml"):
        resolve_template_path(tmp_path / "nope.yaml")


def test_tables_cli_create_missing_template_exits_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A template that does not exist fails the command with one line and exit code 1."""
    assert main(["create", "--template", str(tmp_path / "gone.yaml")]) == 1
    assert "database template not found" in capsys.readouterr().err
