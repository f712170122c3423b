"""Least privilege in the templates: every IAM statement of every role, checked."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.cfn_yaml import CFN_DIR, load_template, resources_of_type, walk

TEMPLATE_FILES = sorted(path.name for path in CFN_DIR.glob("*.yaml"))

# A write is anything that creates, changes, deletes, sends, runs or assumes.
WRITE_VERB = re.compile(
    r"^(Put|Update|Delete|BatchWrite|TransactWrite|Write|Create|Terminate|Invoke|Send|Start|Stop|"
    r"Modify|Attach|Detach|Tag|Untag|Assume|Pass|Restore|Import|Export|Publish|Run|Reboot|Associate|"
    r"Disassociate|Enable|Disable|Add|Remove|Set|Reset|Revoke|Authorize|Retry|Reverse|Encrypt|"
    r"ReEncrypt|GenerateDataKey|Schedule|Cancel|Execute|Disconnect|Initialize|Replicate|Change)"
)
# The only writes the read-only query role may make: its own telemetry.
TELEMETRY_ACTIONS = {
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _role_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    """Allow statements of a role's inline policies, with Fn::If branches flattened."""
    statements = []
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if isinstance(statement, dict) and "Fn::If" in statement:
                statements.extend(s for s in statement["Fn::If"][1:] if "Ref" not in s)
            else:
                statements.append(statement)
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    return [str(action) for action in _as_list(statement["Action"])]


def _resources(statement: dict[str, Any]) -> list[Any]:
    return _as_list(statement["Resource"])


def _policy_documents(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every policy document of a template (role policies, trust, queue/topic/key policies)."""
    documents = []
    for logical_id, resource in template["Resources"].items():
        for node in walk(resource.get("Properties") or {}):
            if isinstance(node, dict) and "Statement" in node and "Version" in node:
                documents.append((logical_id, node))
    return documents


def _flat_statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = []
    for statement in document["Statement"]:
        if "Fn::If" in statement:
            statements.extend(s for s in statement["Fn::If"][1:] if "Ref" not in s)
        else:
            statements.append(statement)
    return statements


@pytest.fixture(scope="module")
def lambda_stack() -> dict[str, Any]:
    return load_template("lambda-stack.yaml")


@pytest.fixture(scope="module")
def target_role_template() -> dict[str, Any]:
    return load_template("drs-target-account-role.yaml")


def _role(lambda_stack: dict[str, Any], name: str) -> dict[str, Any]:
    return lambda_stack["Resources"][name]


# ---------------------------------------------------------------------------------------------
# Every template


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_cfn_no_star_action(name: str) -> None:
    """No statement allows Action '*'; only a KMS key policy's account-administration statement
    may use a service wildcard (kms:*), as every key policy must."""
    for logical_id, document in _policy_documents(load_template(name)):
        is_key_policy = load_template(name)["Resources"][logical_id]["Type"] == "AWS::KMS::Key"
        for statement in _flat_statements(document):
            for action in _as_list(statement.get("Action", [])):
                assert action != "*", (name, logical_id, statement)
                if statement["Effect"] == "Allow" and not is_key_policy:
                    assert not str(action).endswith(":*"), (name, logical_id, action)


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_cfn_no_dynamodb_action_on_star_resource(name: str) -> None:
    for logical_id, document in _policy_documents(load_template(name)):
        for statement in _flat_statements(document):
            actions = _as_list(statement.get("Action", []))
            if any(str(action).startswith("dynamodb:") for action in actions):
                assert "*" not in _as_list(statement["Resource"]), (name, logical_id, statement)


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_cfn_no_managed_admin_policies(name: str) -> None:
    """Roles carry inline, scoped statements; the only managed policy is API Gateway's logging one."""
    for logical_id, role in resources_of_type(load_template(name), "AWS::IAM::Role").items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert "AmazonAPIGatewayPushToCloudWatchLogs" in str(arn), (name, logical_id, arn)


# ---------------------------------------------------------------------------------------------
# Hub roles


def test_cfn_each_handler_has_its_own_role(lambda_stack: dict[str, Any]) -> None:
    resources = lambda_stack["Resources"]
    for function, role in (
        ("DataManagementFunction", "DataManagementHandlerRole"),
        ("ExecutionFunction", "ExecutionHandlerRole"),
        ("QueryFunction", "QueryHandlerRole"),
    ):
        assert resources[role]["Type"] == "AWS::IAM::Role"
        assert resources[function]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}


def test_cfn_query_role_has_no_write_action(lambda_stack: dict[str, Any]) -> None:
    """Every statement of the query role: reads only, besides its own log group and traces."""
    role = _role(lambda_stack, "QueryHandlerRole")
    assert not role["Properties"].get("ManagedPolicyArns")
    for statement in _role_statements(role):
        assert statement["Effect"] == "Allow"
        for action in _actions(statement):
            if action in TELEMETRY_ACTIONS:
                continue
            verb = action.split(":", 1)[1]
            assert not WRITE_VERB.match(verb), f"query role allows write action {action}"
            assert verb.startswith(("Get", "BatchGet", "Query", "Scan", "Describe", "List", "Decrypt")), action


def test_cfn_query_role_logs_only_to_its_own_group(lambda_stack: dict[str, Any]) -> None:
    for statement in _role_statements(_role(lambda_stack, "QueryHandlerRole")):
        if any(action.startswith("logs:") for action in _actions(statement)):
            assert _resources(statement) == [{"Fn::GetAtt": ["QueryLogGroup", "Arn"]}]


def test_cfn_data_management_role_grants_what_the_handler_calls(lambda_stack: dict[str, Any]) -> None:
    statements = _role_statements(_role(lambda_stack, "DataManagementHandlerRole"))
    actions = {action for statement in statements for action in _actions(statement)}
    assert {
        "drs:DescribeRecoveryInstances",
        "drs:DescribeSourceServers",
        "drs:DescribeJobs",
        "drs:TerminateRecoveryInstances",
        "ec2:DescribeInstances",
        "sts:AssumeRole",
        "lambda:InvokeFunction",
        "dynamodb:BatchWriteItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
    } <= actions
    (assume,) = [s for s in statements if "sts:AssumeRole" in _actions(s)]
    # One ARN per name of TargetRoleNames (test_cfn_beside renders them); the first always exists.
    assert _resources(assume)[0] == {
        "Fn::Sub": [
            "arn:${AWS::Partition}:iam::*:role/${RoleName}",
            {"RoleName": {"Fn::Select": [0, {"Fn::Split": [",", {"Ref": "TargetRoleNames"}]}]}},
        ]
    }
    (invoke,) = [s for s in statements if "lambda:InvokeFunction" in _actions(s)]
    own = ":function:${ProjectName}-data-management-${Environment}"
    assert [r["Fn::Sub"].split(":function:")[1] for r in _resources(invoke)] == [
        own.split(":function:")[1],
        own.split(":function:")[1] + ":*",
    ]
    function_name = lambda_stack["Resources"]["DataManagementFunction"]["Properties"]["FunctionName"]
    assert function_name == {"Fn::Sub": "${ProjectName}-data-management-${Environment}"}


def test_cfn_ec2_destructive_actions_only_through_drs_on_drs_resources(lambda_stack: dict[str, Any]) -> None:
    """TerminateRecoveryInstances' dependent EC2 actions are usable only via an AWS service, on
    resources DRS tags as its own (never on an arbitrary instance)."""
    for role in ("DataManagementHandlerRole", "ExecutionHandlerRole", "QueryHandlerRole"):
        for statement in _role_statements(_role(lambda_stack, role)):
            if {"ec2:TerminateInstances", "ec2:DeleteVolume"} & set(_actions(statement)):
                assert role == "DataManagementHandlerRole"
                condition = statement["Condition"]
                assert condition["Bool"] == {"aws:ViaAWSService": "true"}
                assert condition["Null"] == {"aws:ResourceTag/AWSElasticDisasterRecoveryManaged": "false"}


def test_cfn_execution_role_cannot_terminate_or_invoke(lambda_stack: dict[str, Any]) -> None:
    statements = _role_statements(_role(lambda_stack, "ExecutionHandlerRole"))
    actions = {action for statement in statements for action in _actions(statement)}
    assert {"drs:DescribeRecoveryInstances", "ec2:DescribeInstances", "sts:AssumeRole"} <= actions
    assert not {a for a in actions if a.split(":", 1)[1].startswith(("Terminate", "Invoke"))}


TABLE_ARN = {
    "cache": "RecoveryInstancesCacheTableArn",
    "status": "RecoveryInstanceSyncStatusTableArn",
    "target_accounts": "TargetAccountsTableArn",
    "execution_history": "ExecutionHistoryTableArn",
    "recovery_plans": "RecoveryPlansTableArn",
    "protection_groups": "ProtectionGroupsTableArn",
    "execution_index": "ExecutionIndexTableArn",
    "drs_region_status": "DrsRegionStatusTableName",  # the orchestration's, when there is one
}


def _dynamodb_access(statements: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(tables read, tables written) of a role, by table ARN parameter."""
    read, written = set(), set()
    for statement in statements:
        actions = [a for a in _actions(statement) if a.startswith("dynamodb:")]
        if not actions:
            continue
        tables = set()
        for resource in _resources(statement):
            text = resource.get("Ref") or resource.get("Fn::Sub", "")
            tables |= {table for table, arn in TABLE_ARN.items() if arn in text}
        assert tables, f"DynamoDB statement on no known table: {statement}"
        read |= tables
        if any(WRITE_VERB.match(a.split(":", 1)[1]) for a in actions):
            written |= tables
    return read, written


@pytest.mark.parametrize(
    ("role", "reads", "writes"),
    [
        pytest.param(
            "DataManagementHandlerRole",
            set(TABLE_ARN),
            {"cache", "status", "execution_history", "execution_index"},
            id="data-management",
        ),
        pytest.param(
            "ExecutionHandlerRole",
            {
                "cache",
                "status",
                "target_accounts",
                "execution_history",
                "protection_groups",
                "execution_index",
                "drs_region_status",
            },
            {"cache", "status", "execution_index"},
            id="execution",
        ),
        pytest.param(
            "QueryHandlerRole",
            {"cache", "status", "recovery_plans", "protection_groups", "execution_history"},
            set(),
            id="query",
        ),
    ],
)
def test_cfn_role_table_access_matches_its_handler(
    lambda_stack: dict[str, Any], role: str, reads: set[str], writes: set[str]
) -> None:
    read, written = _dynamodb_access(_role_statements(_role(lambda_stack, role)))
    assert read == reads
    assert written == writes


def test_cfn_execution_history_write_is_update_only(lambda_stack: dict[str, Any]) -> None:
    """data-management records terminateJobs on the execution item; it never puts or deletes one."""
    for statement in _role_statements(_role(lambda_stack, "DataManagementHandlerRole")):
        if {"Ref": "ExecutionHistoryTableArn"} in _resources(statement):
            writes = [a for a in _actions(statement) if WRITE_VERB.match(a.split(":", 1)[1])]
            assert set(writes) <= {"dynamodb:UpdateItem"}, statement


# ---------------------------------------------------------------------------------------------
# Target-account role


def test_cfn_target_role_trusts_the_hub_roles_with_external_id(target_role_template: dict[str, Any]) -> None:
    role = target_role_template["Resources"]["DrsTargetAccountRole"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"]["StringEquals"] == {"sts:ExternalId": {"Ref": "ExternalId"}}
    data_management, execution, refresh = trust["Condition"]["ArnEquals"]["aws:PrincipalArn"]
    assert data_management == {"Ref": "HubDataManagementRoleArn"}
    no_value = {"Ref": "AWS::NoValue"}
    assert execution == {"Fn::If": ["TrustExecutionRole", {"Ref": "HubExecutionRoleArn"}, no_value]}
    assert refresh == {"Fn::If": ["TrustRefreshRole", {"Ref": "HubRefreshRoleArn"}, no_value]}
    assert target_role_template["Parameters"]["ExternalId"]["NoEcho"] is True


def test_cfn_target_role_allows_only_drs_and_ec2(target_role_template: dict[str, Any]) -> None:
    role = target_role_template["Resources"]["DrsTargetAccountRole"]
    statements = _role_statements(role)
    actions = {action for statement in statements for action in _actions(statement)}
    assert actions == {
        "drs:DescribeRecoveryInstances",
        "drs:DescribeSourceServers",
        "drs:DescribeJobs",
        "drs:TerminateRecoveryInstances",
        "ec2:DescribeInstances",
        "ec2:DescribeRegions",
        # Dependent actions of TerminateRecoveryInstances (performed by DRS with the caller's
        # forwarded credentials), conditioned below.
        "ec2:DescribeVolumes",
        "ec2:TerminateInstances",
        "ec2:DeleteVolume",
    }
    for statement in statements:
        if {"ec2:TerminateInstances", "ec2:DeleteVolume"} & set(_actions(statement)):
            assert statement["Condition"]["Bool"] == {"aws:ViaAWSService": "true"}
            assert statement["Condition"]["Null"] == {"aws:ResourceTag/AWSElasticDisasterRecoveryManaged": "false"}


def test_cfn_target_role_name_matches_the_hub_default(
    target_role_template: dict[str, Any], lambda_stack: dict[str, Any]
) -> None:
    """Both sides default to one name, which is not the orchestration's own role's."""
    default = target_role_template["Parameters"]["RoleName"]["Default"]
    assert lambda_stack["Parameters"]["CrossAccountRoleName"]["Default"] == default
    assert load_template("master-template.yaml")["Parameters"]["CrossAccountRoleName"]["Default"] == default
    assert default != "DRSOrchestrationRole"


def test_cfn_hub_outputs_the_role_arns_the_target_role_trusts() -> None:
    outputs = load_template("master-template.yaml")["Outputs"]
    assert "DataManagementHandlerRoleArn" in outputs
    assert "ExecutionHandlerRoleArn" in outputs


# The attributes the engine writes on the orchestration's execution items (API-CONTRACT.md,
# terminate): jobs and when termination started, and when every job completed. terminateJobIds,
# a string set its Decimal-only JSON encoder cannot return, is no longer written: never granted.
TERMINATION_ATTRIBUTES = {"terminateJobs", "terminationInitiatedAt", "instancesTerminated", "instancesTerminatedAt"}
EXECUTION_KEY = {"executionId", "planId"}


@pytest.mark.parametrize(
    ("role", "attributes"),
    [
        # Terminate and the full sync (which follows its jobs to completion) run here; the refresh
        # function writes nothing of the orchestration's (test_cfn_refresh).
        pytest.param("DataManagementHandlerRole", TERMINATION_ATTRIBUTES, id="data-management"),
    ],
)
def test_cfn_execution_history_updates_only_the_attributes_we_write(
    lambda_stack: dict[str, Any], role: str, attributes: set[str]
) -> None:
    found = 0
    for statement in _role_statements(_role(lambda_stack, role)):
        if {"Ref": "ExecutionHistoryTableArn"} not in _resources(statement):
            continue
        writes = [a for a in _actions(statement) if WRITE_VERB.match(a.split(":", 1)[1])]
        if not writes:
            continue
        found += 1
        assert writes == ["dynamodb:UpdateItem"], statement
        condition = statement["Condition"]
        assert set(condition["ForAllValues:StringEquals"]["dynamodb:Attributes"]) == attributes | EXECUTION_KEY
        assert "terminateJobIds" not in str(condition)
        assert set(condition["StringEqualsIfExists"]["dynamodb:ReturnValues"]) <= {"NONE", "UPDATED_OLD", "UPDATED_NEW"}
    assert found == 1
