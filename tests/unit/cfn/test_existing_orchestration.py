"""Deploying into an existing DRS orchestration: its four tables are named, not created, and
every policy and environment variable follows; a standalone install creates them as before.

Templates are rendered for given parameter values (tests/cfn_render.py): conditions decide which
resources exist, ``Fn::If`` picks its branch, parameters are substituted.
"""

from __future__ import annotations

from typing import Any

import pytest

from syncengine.core import config
from tests.cfn_render import PSEUDO, render
from tests.cfn_yaml import load_template, walk

ORCHESTRATION_TABLES = ("TargetAccounts", "ExecutionHistory", "RecoveryPlans", "ProtectionGroups")
EXISTING = {f"Existing{table}TableName": f"orchestration-{table.lower()}-prod" for table in ORCHESTRATION_TABLES}
TABLE_ENV = {
    config.ENV_TARGET_ACCOUNTS_TABLE: "TargetAccounts",
    config.ENV_EXECUTION_HISTORY_TABLE: "ExecutionHistory",
    config.ENV_RECOVERY_PLANS_TABLE: "RecoveryPlans",
    config.ENV_PROTECTION_GROUPS_TABLE: "ProtectionGroups",
}
LAMBDA_PARAMETERS = {
    "ProjectName": "drs-orchestration",
    "Environment": "prod",
    "LambdaCodeS3Bucket": "bucket",
    "LambdaCodeS3Key": "lambda/x.zip",
}
FUNCTIONS_AND_ROLES = {
    "DataManagementFunction": "DataManagementHandlerRole",
    "ExecutionFunction": "ExecutionHandlerRole",
    "QueryFunction": "QueryHandlerRole",
}


def _arn(table_name: str) -> str:
    return f"arn:aws:dynamodb:{PSEUDO['AWS::Region']}:{PSEUDO['AWS::AccountId']}:table/{table_name}"


def _database(parameters: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    rendered = render(load_template("database-stack.yaml"), {"Environment": "prod", **parameters})
    return rendered.resources(), rendered.outputs()


def _lambda_stack_for(database_outputs: dict[str, Any]) -> dict[str, Any]:
    """The Lambda stack as the master template wires it: the database stack's outputs as its
    table parameters (test_cfn_templates checks that wiring name by name)."""
    parameters = dict(LAMBDA_PARAMETERS)
    declared = load_template("lambda-stack.yaml")["Parameters"]
    parameters.update({name: value for name, value in database_outputs.items() if name in declared})
    return render(load_template("lambda-stack.yaml"), parameters).resources()


OWN_TABLES = {"RecoveryInstancesCacheTable", "RecoveryInstanceSyncStatusTable", "ExecutionIndexTable"}


def test_cfn_existing_tables_standalone_creates_all_seven() -> None:
    resources, outputs = _database({})
    tables = {k for k, v in resources.items() if v["Type"] == "AWS::DynamoDB::Table"}
    assert tables == OWN_TABLES | {f"{table}Table" for table in ORCHESTRATION_TABLES}
    assert outputs["TargetAccountsTableName"] == "<Ref TargetAccountsTable>"
    assert outputs["TargetAccountsTableArn"] == "<GetAtt TargetAccountsTable.Arn>"


def test_cfn_existing_tables_are_named_not_created() -> None:
    """With the orchestration's tables named, only our own tables (cache, status, execution
    index) are created, and the outputs name the existing tables (name and ARN in this account
    and region)."""
    resources, outputs = _database(EXISTING)
    tables = {k for k, v in resources.items() if v["Type"] == "AWS::DynamoDB::Table"}
    assert tables == OWN_TABLES
    for table in ORCHESTRATION_TABLES:
        name = EXISTING[f"Existing{table}TableName"]
        assert outputs[f"{table}TableName"] == name
        assert outputs[f"{table}TableArn"] == _arn(name)


def test_cfn_existing_tables_one_named_the_others_created() -> None:
    resources, outputs = _database({"ExistingRecoveryPlansTableName": "plans"})
    assert "RecoveryPlansTable" not in resources
    assert "ProtectionGroupsTable" in resources
    assert outputs["RecoveryPlansTableArn"] == _arn("plans")


@pytest.mark.parametrize("function", sorted(FUNCTIONS_AND_ROLES))
def test_cfn_existing_tables_reach_every_environment(function: str) -> None:
    _, outputs = _database(EXISTING)
    variables = _lambda_stack_for(outputs)[function]["Properties"]["Environment"]["Variables"]
    for env_name, table in TABLE_ENV.items():
        assert variables[env_name] == EXISTING[f"Existing{table}TableName"], env_name


@pytest.mark.parametrize("role", sorted(FUNCTIONS_AND_ROLES.values()))
def test_cfn_existing_tables_every_policy_names_them(role: str) -> None:
    """Every DynamoDB statement of every role names the existing tables' ARNs and no table of
    this stack's own naming for the orchestration tables."""
    _, outputs = _database(EXISTING)
    policies = _lambda_stack_for(outputs)[role]["Properties"]["Policies"]
    arns = {
        str(resource)
        for statement in walk(policies)
        if isinstance(statement, dict) and str(statement.get("Action", "")).find("dynamodb:") >= 0
        for resource in (statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]])
    }
    assert arns, f"{role} has no DynamoDB statement"
    existing_arns = {_arn(name) for name in EXISTING.values()}
    for arn in arns:
        own = arn.startswith(("<GetAtt RecoveryInstance", "<GetAtt ExecutionIndexTable"))
        assert arn in existing_arns or own, (role, arn)
    assert existing_arns & arns, role


def test_cfn_existing_tables_master_passes_each_name() -> None:
    master = load_template("master-template.yaml")
    passed = master["Resources"]["DatabaseStack"]["Properties"]["Parameters"]
    for name in EXISTING:
        assert master["Parameters"][name]["Default"] == ""
        assert passed[name] == {"Ref": name}


# ---------------------------------------------------------------------------------------------
# The existing REST API

API_PARAMETERS = {
    "ProjectName": "drs-orchestration",
    "Environment": "prod",
    "DataManagementFunctionArn": "arn:aws:lambda:us-east-1:111111111111:function:dm",
    "QueryFunctionArn": "arn:aws:lambda:us-east-1:111111111111:function:query",
    "ProjectKeyArn": "arn:aws:kms:us-east-1:111111111111:key/k",
}
EXISTING_API = {
    "ExistingRestApiId": "a1b2c3d4e5",
    "ExistingRootResourceId": "root01",
    "ExistingApiName": "drs-orchestration-api",
    "ExistingApiStageName": "prod",
    "ExistingExecutionIdResourceId": "exec01",
}
GUARDED_PATH_PARTS = {"terminate-instances": "POST", "recovery-instances": "GET"}


def _api(parameters: dict[str, str]) -> dict[str, Any]:
    return render(load_template("api-stack.yaml"), {**API_PARAMETERS, **parameters}).resources()


def _of_type(resources: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {k: v["Properties"] for k, v in resources.items() if v["Type"] == resource_type}


def test_cfn_existing_api_attaches_routes_without_a_new_api() -> None:
    resources = _api(EXISTING_API)
    for resource_type in (
        "AWS::ApiGateway::RestApi",
        "AWS::ApiGateway::Stage",
        "AWS::ApiGateway::Deployment",
        "AWS::ApiGateway::GatewayResponse",
        "AWS::ApiGateway::Account",
    ):
        assert not _of_type(resources, resource_type), resource_type
    for properties in _of_type(resources, "AWS::ApiGateway::Method").values():
        assert properties["RestApiId"] == "a1b2c3d4e5"
    for permission in _of_type(resources, "AWS::Lambda::Permission").values():
        assert ":a1b2c3d4e5/*/" in permission["SourceArn"]


def test_cfn_existing_api_reuses_the_parents_it_names() -> None:
    """/executions/{executionId} exists in the orchestration's API: reused by id, not created;
    /drs and /recovery-plans/{planId} are not named, so they are created under its root."""
    api_resources = _of_type(_api(EXISTING_API), "AWS::ApiGateway::Resource")
    assert "ExecutionsResource" not in api_resources and "ExecutionIdResource" not in api_resources
    assert api_resources["TerminateInstancesResource"]["ParentId"] == "exec01"
    assert api_resources["RecoveryInstancesResource"]["ParentId"] == "exec01"
    assert api_resources["DrsResource"]["ParentId"] == "root01"
    assert api_resources["RecoveryPlansResource"]["ParentId"] == "root01"


def test_cfn_own_api_has_its_stage_and_deployment() -> None:
    resources = _api({})
    assert _of_type(resources, "AWS::ApiGateway::RestApi")
    (stage,) = _of_type(resources, "AWS::ApiGateway::Stage").values()
    (deployment_id,) = _of_type(resources, "AWS::ApiGateway::Deployment")
    assert stage["DeploymentId"] == f"<Ref {deployment_id}>"


@pytest.mark.parametrize("existing", [{}, EXISTING_API], ids=["own-api", "existing-api"])
@pytest.mark.parametrize(
    "auth",
    [
        {"ApiAuthType": "AWS_IAM"},
        {"ApiAuthType": "COGNITO_USER_POOLS", "CognitoUserPoolArn": "arn:aws:cognito-idp:us-east-1:1:userpool/p"},
        {"ApiAuthType": "COGNITO_USER_POOLS", "ExistingAuthorizerId": "auth01"},
    ],
    ids=["iam", "cognito", "cognito-existing-authorizer"],
)
def test_cfn_terminate_and_preview_never_callable_without_auth(existing: dict[str, str], auth: dict[str, str]) -> None:
    resources = _api({**existing, **auth})
    api_resources = _of_type(resources, "AWS::ApiGateway::Resource")
    guarded = {
        f"<Ref {logical_id}>": GUARDED_PATH_PARTS[properties["PathPart"]]
        for logical_id, properties in api_resources.items()
        if properties["PathPart"] in GUARDED_PATH_PARTS
    }
    assert len(guarded) == 2
    methods = [
        properties
        for properties in _of_type(resources, "AWS::ApiGateway::Method").values()
        if properties["ResourceId"] in guarded and properties["HttpMethod"] != "OPTIONS"
    ]
    assert {(m["ResourceId"], m["HttpMethod"]) for m in methods} == set(guarded.items())
    for method in methods:
        assert method["AuthorizationType"] == auth["ApiAuthType"] != "NONE"
        if auth["ApiAuthType"] == "COGNITO_USER_POOLS":
            expected = "auth01" if "ExistingAuthorizerId" in auth else "<Ref CognitoAuthorizer>"
            assert method["AuthorizerId"] == expected


def test_cfn_only_preflights_are_open() -> None:
    """AuthorizationType NONE only on OPTIONS (CORS preflights carry no credentials)."""
    for auth in ("AWS_IAM", "COGNITO_USER_POOLS"):
        extra = {"CognitoUserPoolArn": "arn:aws:cognito-idp:us-east-1:1:userpool/p"} if auth != "AWS_IAM" else {}
        for method in _of_type(_api({"ApiAuthType": auth, **extra}), "AWS::ApiGateway::Method").values():
            assert (method["AuthorizationType"] == "NONE") == (method["HttpMethod"] == "OPTIONS")


def test_cfn_api_functions_get_the_authorization_settings() -> None:
    from handlers.authorization import DEFAULT_TERMINATE_ALLOWED_GROUP, ENV_API_BASE_PATH, ENV_TERMINATE_ALLOWED_GROUP

    resources = _lambda_stack_for(_database({})[1])
    for function in ("DataManagementFunction", "QueryFunction"):
        variables = resources[function]["Properties"]["Environment"]["Variables"]
        assert variables[ENV_TERMINATE_ALLOWED_GROUP] == DEFAULT_TERMINATE_ALLOWED_GROUP
        assert variables[ENV_API_BASE_PATH] == ""
