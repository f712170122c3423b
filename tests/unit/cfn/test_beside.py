"""Deploying beside the DRS orchestration (OrchestrationMode=beside), rendered as deployed
(tests/cfn_render.py): no table, rule or route the orchestration already has, no second schedule,
no name that collides with one of its own at the same ProjectName and Environment; the hub may
assume the roles TargetRoleNames lists (the orchestration's DRSOrchestrationRole among them), each
by its own ARN; the master template's Rules refuse what AWS would only refuse at run time.

The orchestration's names are facts of johnjcousens/aws-elasticdrs-orchestrator at commit
8857e560, written out below with their file and line (CI has no copy of that repository).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from tests.cfn_render import render
from tests.cfn_yaml import load_template as read_template
from tests.unit.cfn.test_existing_orchestration import API_PARAMETERS, LAMBDA_PARAMETERS

# The orchestration's deployment names, ProjectName and Environment substituted by the test.
# Namespace -> [(name template, source file:line)].
ORCHESTRATION_NAMES: dict[str, list[tuple[str, str]]] = {
    "dynamodb-table": [
        ("{p}-protection-groups-{e}", "cfn/dynamodb/tables-stack.yaml:37"),
        ("{p}-recovery-plans-{e}", "cfn/dynamodb/tables-stack.yaml:68"),
        ("{p}-execution-history-{e}", "cfn/dynamodb/tables-stack.yaml:99"),
        ("{p}-target-accounts-{e}", "cfn/dynamodb/tables-stack.yaml:149"),
        ("{p}-source-server-inventory-{e}", "cfn/dynamodb/tables-stack.yaml:180"),
        ("{p}-drs-region-status-{e}", "cfn/dynamodb/tables-stack.yaml:244"),
        ("{p}-recovery-instances-{e}", "cfn/dynamodb/tables-stack.yaml:275"),
    ],
    "lambda-function": [
        ("{p}-query-handler-{e}", "cfn/lambda/functions-stack.yaml:193"),
        ("{p}-data-management-handler-{e}", "cfn/lambda/functions-stack.yaml:232"),
        ("{p}-execution-handler-{e}", "cfn/lambda/functions-stack.yaml:273"),
        ("{p}-dr-orch-sf-{e}", "cfn/lambda/functions-stack.yaml:314"),
        ("{p}-frontend-deployer-{e}", "cfn/lambda/functions-stack.yaml:351"),
    ],
    "log-group": [
        ("/aws/lambda/{p}-query-handler-{e}", "cfn/lambda/functions-stack.yaml:153"),
        ("/aws/lambda/{p}-data-management-handler-{e}", "cfn/lambda/functions-stack.yaml:161"),
        ("/aws/lambda/{p}-execution-handler-{e}", "cfn/lambda/functions-stack.yaml:169"),
        ("/aws/lambda/{p}-dr-orch-sf-{e}", "cfn/lambda/functions-stack.yaml:177"),
        ("/aws/lambda/{p}-frontend-deployer-{e}", "cfn/lambda/functions-stack.yaml:185"),
    ],
    "sqs-queue": [("{p}-lambda-dlq-{e}", "cfn/lambda/functions-stack.yaml:138")],
    "iam-role": [
        ("{p}-apigateway-cloudwatch-role-{e}", "cfn/iam/roles-stack.yaml:61"),
        ("{p}-query-handler-role-{e}", "cfn/iam/roles-stack.yaml:85"),
        ("{p}-data-management-role-{e}", "cfn/iam/roles-stack.yaml:211"),
        ("{p}-execution-handler-role-{e}", "cfn/iam/roles-stack.yaml:330"),
        ("{p}-orchestration-role-{e}", "cfn/iam/roles-stack.yaml:474"),
        ("{p}-frontend-deployer-role-{e}", "cfn/iam/roles-stack.yaml:672"),
        ("{p}-unified-role-{e}", "cfn/iam/roles-stack.yaml:763"),
        ("{p}-eventbridge-invoke-{e}", "cfn/eventbridge/rules-stack.yaml:96"),
        ("{p}-cognito-authenticated-{e}", "cfn/cognito/auth-stack.yaml:161"),
    ],
    # All on the default bus.
    "events-rule": [
        ("{p}-execution-polling-schedule-{e}", "cfn/eventbridge/rules-stack.yaml:128"),
        ("{p}-tag-sync-schedule-{e}", "cfn/eventbridge/rules-stack.yaml:156"),
        ("{p}-staging-account-sync-{e}", "cfn/eventbridge/rules-stack.yaml:185"),
        ("{p}-inventory-sync-{e}", "cfn/eventbridge/rules-stack.yaml:213"),
        ("{p}-recovery-instance-sync-{e}", "cfn/eventbridge/rules-stack.yaml:241"),
    ],
    "sns-topic": [
        ("{p}-execution-notifications-{e}", "cfn/sns/topics-stack.yaml:36"),
        ("{p}-drs-alerts-{e}", "cfn/sns/topics-stack.yaml:52"),
        ("{p}-execution-pause-{e}", "cfn/sns/topics-stack.yaml:68"),
    ],
    "cloudwatch-alarm": [
        ("{p}-query-handler-access-denied-{e}", "cfn/monitoring/alarms-stack.yaml:54"),
        ("{p}-data-management-handler-access-denied-{e}", "cfn/monitoring/alarms-stack.yaml:90"),
        ("{p}-execution-handler-access-denied-{e}", "cfn/monitoring/alarms-stack.yaml:126"),
        ("{p}-dr-orch-sf-access-denied-{e}", "cfn/monitoring/alarms-stack.yaml:162"),
        ("{p}-frontend-deployer-access-denied-{e}", "cfn/monitoring/alarms-stack.yaml:198"),
    ],
    "rest-api": [("{p}-api-{e}", "cfn/apigateway/core-stack.yaml:42")],
    "api-authorizer": [("{p}-cognito-authorizer-{e}", "cfn/apigateway/auth-stack.yaml:47")],
    "api-request-validator": [("{p}-request-validator-{e}", "cfn/apigateway/core-stack.yaml:72")],
}
# The orchestration's API routes that our drop-in serves through its own handlers
# (cfn/apigateway/resources-stack.yaml:209, :283, :291; the path parameter is {id}, :193, :251).
ORCHESTRATION_LEAVES = {"check-existing-instances", "terminate-instances", "recovery-instances"}
ORCHESTRATION_TABLES = ("target-accounts", "execution-history", "recovery-plans", "protection-groups")
# Its cross-account role name (cfn/drs-target-account-setup-stack.yaml:54; lambda/shared/account_utils.py:76).
ORCHESTRATION_ROLE = "DRSOrchestrationRole"

# Where each of our named resource types puts its name, and the namespace it shares.
NAME_PROPERTY: dict[str, tuple[str, str]] = {
    "AWS::DynamoDB::Table": ("TableName", "dynamodb-table"),
    "AWS::Lambda::Function": ("FunctionName", "lambda-function"),
    "AWS::Logs::LogGroup": ("LogGroupName", "log-group"),
    "AWS::SQS::Queue": ("QueueName", "sqs-queue"),
    "AWS::IAM::Role": ("RoleName", "iam-role"),
    "AWS::Events::Rule": ("Name", "events-rule"),
    "AWS::Events::EventBus": ("Name", "events-bus"),
    "AWS::SNS::Topic": ("TopicName", "sns-topic"),
    "AWS::CloudWatch::Alarm": ("AlarmName", "cloudwatch-alarm"),
    "AWS::CloudWatch::Dashboard": ("DashboardName", "cloudwatch-dashboard"),
    "AWS::KMS::Alias": ("AliasName", "kms-alias"),
    "AWS::ApiGateway::RestApi": ("Name", "rest-api"),
    "AWS::ApiGateway::Authorizer": ("Name", "api-authorizer"),
    "AWS::ApiGateway::RequestValidator": ("Name", "api-request-validator"),
}
HUB_TEMPLATES = (
    "database-stack.yaml",
    "lambda-stack.yaml",
    "eventbridge-stack.yaml",
    "api-stack.yaml",
    "monitoring-stack.yaml",
)
PROJECT, ENVIRONMENT = "drs-orchestration", "prod"
EXISTING_API = {
    "ExistingRestApiId": "a1b2c3d4e5",
    "ExistingRootResourceId": "root01",
    "ExistingApiName": "drs-orchestration-api-prod",
    "ExistingApiStageName": "prod",
    "ExistingDrsResourceId": "drs001",
}


@functools.cache
def load_template(name: str) -> dict[str, Any]:
    """A template read once per test session (rendering never changes it)."""
    return read_template(name)


def hub_parameters(template: str, project: str, environment: str, mode: str) -> dict[str, str]:
    """What the master template passes a nested stack, as far as names depend on it (values of
    other stacks' outputs are stand-ins)."""
    declared = load_template(template)["Parameters"]
    given = {
        **LAMBDA_PARAMETERS,
        **API_PARAMETERS,
        "ProjectName": project,
        "Environment": environment,
        "OrchestrationMode": mode,
        "WorkQueueArn": "arn:aws:sqs:us-east-1:111111111111:work",
        "WorkQueueUrl": "https://queue/work",
        "ProjectKeyArn": "arn:aws:kms:us-east-1:111111111111:key/k",
    }
    for name, spec in declared.items():
        if name not in given and "Default" not in spec:
            given[name] = f"stand-in-{name.lower()}"
    return {name: value for name, value in given.items() if name in declared}


def rendered_hub(project: str, environment: str, mode: str, **extra: str) -> dict[str, dict[str, Any]]:
    """Every resource of the hub's nested stacks, by template."""
    stacks = {}
    for template in HUB_TEMPLATES:
        parameters = hub_parameters(template, project, environment, mode)
        declared = load_template(template)["Parameters"]
        parameters.update({name: value for name, value in extra.items() if name in declared})
        stacks[template] = render(load_template(template), parameters).resources()
    return stacks


def derived_names(stacks: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """Namespace -> the names our resources take."""
    names: dict[str, set[str]] = {}
    for resources in stacks.values():
        for resource in resources.values():
            if resource["Type"] in NAME_PROPERTY:
                prop, namespace = NAME_PROPERTY[resource["Type"]]
                name = resource.get("Properties", {}).get(prop)
                if isinstance(name, str):
                    names.setdefault(namespace, set()).add(name)
    return names


def orchestration_names(project: str, environment: str) -> dict[str, set[str]]:
    return {
        namespace: {template.format(p=project, e=environment) for template, _source in entries}
        for namespace, entries in ORCHESTRATION_NAMES.items()
    }


def collisions(ours: dict[str, set[str]], theirs: dict[str, set[str]]) -> dict[str, set[str]]:
    found = {namespace: ours.get(namespace, set()) & names for namespace, names in theirs.items()}
    return {namespace: names for namespace, names in found.items() if names}


# ---------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize(
    ("project", "environment"),
    [
        pytest.param(PROJECT, ENVIRONMENT, id="drs-orchestration-prod"),
        pytest.param("aws-drs-orchestration", "dev", id="its-default-project-name"),
    ],
)
@pytest.mark.parametrize("api", [{}, EXISTING_API], ids=["own-api", "its-api"])
def test_cfn_beside_no_name_collides_with_the_orchestrations(project: str, environment: str, api: dict) -> None:
    ours = derived_names(rendered_hub(project, environment, "beside", **api))
    assert ours["dynamodb-table"] and ours["events-rule"] and ours["iam-role"]
    assert collisions(ours, orchestration_names(project, environment)) == {}


def test_cfn_standalone_at_the_same_project_name_would_collide() -> None:
    """Why the mode exists (and proof the comparison above can fail): a standalone install with the
    orchestration's ProjectName and Environment names its tables, its cache and its schedule rule
    as the orchestration does."""
    ours = derived_names(rendered_hub(PROJECT, ENVIRONMENT, "standalone"))
    found = collisions(ours, orchestration_names(PROJECT, ENVIRONMENT))
    assert found["dynamodb-table"] == {
        f"{PROJECT}-{name}-{ENVIRONMENT}" for name in (*ORCHESTRATION_TABLES, "recovery-instances")
    }
    assert found["events-rule"] == {f"{PROJECT}-recovery-instance-sync-{ENVIRONMENT}"}


# ---------------------------------------------------------------------------------------------
# Tables


def test_cfn_beside_creates_only_our_own_tables_and_names_its_others() -> None:
    parameters = hub_parameters("database-stack.yaml", PROJECT, ENVIRONMENT, "beside")
    rendered = render(load_template("database-stack.yaml"), parameters)
    tables = {r["Properties"]["TableName"] for r in rendered.resources().values() if r["Type"].endswith("::Table")}
    assert tables == {
        f"{PROJECT}-recovery-instance-cache-{ENVIRONMENT}",
        f"{PROJECT}-recovery-instance-sync-status-{ENVIRONMENT}",
        f"{PROJECT}-execution-index-{ENVIRONMENT}",
    }
    outputs = rendered.outputs()
    for table in ORCHESTRATION_TABLES:
        key = "".join(part.capitalize() for part in table.split("-"))
        name = f"{PROJECT}-{table}-{ENVIRONMENT}"
        assert outputs[f"{key}TableName"] == name
        assert outputs[f"{key}TableArn"] == f"arn:aws:dynamodb:us-east-1:111111111111:table/{name}"
    # Its cache table is left alone; the orchestration's functions are pointed at ours.
    assert outputs["RecoveryInstancesCacheTableName"] == "<Ref RecoveryInstancesCacheTable>"


def test_cfn_beside_honours_a_named_orchestration_table() -> None:
    parameters = {
        **hub_parameters("database-stack.yaml", PROJECT, ENVIRONMENT, "beside"),
        "ExistingTargetAccountsTableName": "renamed-accounts",
    }
    outputs = render(load_template("database-stack.yaml"), parameters).outputs()
    assert outputs["TargetAccountsTableName"] == "renamed-accounts"


# ---------------------------------------------------------------------------------------------
# Schedule and routes


def test_cfn_beside_creates_no_second_schedule() -> None:
    """Its rule (cfn/eventbridge/rules-stack.yaml:236-249) invokes its data-management handler with
    {"operation": "sync_recovery_instances"}, which runs the layer's sync_all_recovery_instances."""
    beside = rendered_hub(PROJECT, ENVIRONMENT, "beside")["eventbridge-stack.yaml"]
    schedules = [r for r in beside.values() if "ScheduleExpression" in r.get("Properties", {})]
    assert schedules == []
    assert not [r for r in beside.values() if r["Type"] == "AWS::Lambda::Permission"]
    standalone = rendered_hub(PROJECT, ENVIRONMENT, "standalone")["eventbridge-stack.yaml"]
    assert standalone["RecoveryInstanceSyncSchedule"]["Properties"]["ScheduleExpression"] == "rate(5 minutes)"


def _paths(resources: dict[str, Any]) -> set[str]:
    return {r["Properties"]["PathPart"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::Resource"}


@pytest.mark.parametrize("api", [{}, EXISTING_API], ids=["own-api", "its-api"])
def test_cfn_beside_api_creates_only_the_sync_routes_it_lacks(api: dict[str, str]) -> None:
    resources = rendered_hub(PROJECT, ENVIRONMENT, "beside", **api)["api-stack.yaml"]
    paths = _paths(resources)
    assert not paths & ORCHESTRATION_LEAVES
    assert not paths & {"recovery-plans", "{planId}", "executions", "{executionId}"}
    assert {"recovery-instance-sync", "status"} <= paths
    methods = {
        (r["Properties"]["HttpMethod"], r["Properties"]["ResourceId"])
        for r in resources.values()
        if r["Type"] == "AWS::ApiGateway::Method" and r["Properties"]["HttpMethod"] != "OPTIONS"
    }
    assert methods == {
        ("POST", "<Ref RecoveryInstanceSyncResource>"),
        ("GET", "<Ref RecoveryInstanceSyncStatusResource>"),
    }
    if api:  # under its /drs, never a second /drs beside it
        assert "drs" not in paths
        assert resources["RecoveryInstanceSyncResource"]["Properties"]["ParentId"] == "drs001"
    permissions = [r["Properties"]["SourceArn"] for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    assert len(permissions) == 2 and all("/drs/recovery-instance-sync" in arn for arn in permissions)


def test_cfn_standalone_api_keeps_every_route() -> None:
    resources = rendered_hub(PROJECT, ENVIRONMENT, "standalone")["api-stack.yaml"]
    assert ORCHESTRATION_LEAVES <= _paths(resources)


def _evaluate_rule(node: Any, values: dict[str, Any]) -> Any:
    """CloudFormation's rule functions, as far as the templates use them."""
    if isinstance(node, list):
        return [_evaluate_rule(item, values) for item in node]
    if not isinstance(node, dict):
        return node
    ((function, argument),) = node.items()
    if function == "Ref":
        return values[argument]
    arguments = _evaluate_rule(argument, values)
    if function == "Fn::Equals":
        return str(arguments[0]) == str(arguments[1])
    if function == "Fn::Not":
        return not arguments[0]
    if function == "Fn::And":
        return all(arguments)
    if function == "Fn::Or":
        return any(arguments)
    if function == "Fn::Contains":
        return str(arguments[1]) in [str(item) for item in arguments[0]]
    raise ValueError(f"unsupported rule function {function}")


def refused_by_rules(template: dict[str, Any], parameters: dict[str, Any]) -> list[str]:
    """The names of the rules whose assertions fail for these parameter values."""
    values = {}
    for name, spec in template["Parameters"].items():
        value = parameters.get(name, spec.get("Default", ""))
        if spec["Type"] == "CommaDelimitedList" and isinstance(value, str):
            value = value.split(",")
        values[name] = value
    refused = []
    for name, rule in (template.get("Rules") or {}).items():
        if "RuleCondition" in rule and not _evaluate_rule(rule["RuleCondition"], values):
            continue
        if not all(_evaluate_rule(assertion["Assert"], values) for assertion in rule["Assertions"]):
            refused.append(name)
    return refused


@pytest.mark.parametrize(
    ("parameters", "refused"),
    [
        pytest.param({"OrchestrationMode": "beside"}, False, id="beside"),
        pytest.param({"OrchestrationMode": "beside", **EXISTING_API}, False, id="beside-its-api"),
        pytest.param(
            {"OrchestrationMode": "beside", **{k: v for k, v in EXISTING_API.items() if k != "ExistingDrsResourceId"}},
            True,
            id="beside-its-api-without-its-drs",
        ),
        pytest.param(
            {"OrchestrationMode": "beside", "ExistingExecutionIdResourceId": "exec01"}, True, id="beside-its-leaf"
        ),
        pytest.param({"ExistingExecutionIdResourceId": "exec01", **EXISTING_API}, False, id="standalone-leaf"),
    ],
)
def test_cfn_beside_api_rules(parameters: dict[str, str], refused: bool) -> None:
    template = load_template("api-stack.yaml")
    assert bool(refused_by_rules(template, {**API_PARAMETERS, **parameters})) == refused


def test_cfn_master_passes_the_mode_to_every_stack_that_names_things() -> None:
    master = load_template("master-template.yaml")
    assert master["Parameters"]["OrchestrationMode"]["Default"] == "standalone"
    for stack in ("DatabaseStack", "EventBridgeStack", "ApiStack", "MonitoringStack"):
        passed = master["Resources"][stack]["Properties"]["Parameters"]
        assert passed["OrchestrationMode"] == {"Ref": "OrchestrationMode"}, stack
    # The schedule's alarm metrics exist only where the schedule does.
    monitoring = master["Resources"]["MonitoringStack"]["Properties"]["Parameters"]
    assert monitoring["ScheduleRuleName"] == {
        "Fn::If": [
            "Standalone",
            {"Fn::GetAtt": ["EventBridgeStack", "Outputs.ScheduleRuleName"]},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert master["Conditions"]["Standalone"] == {"Fn::Equals": [{"Ref": "OrchestrationMode"}, "standalone"]}


# ---------------------------------------------------------------------------------------------
# The roles the hub may assume


def _assume_resources(role: dict[str, Any]) -> list[str]:
    statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    (statement,) = [s for s in statements if s["Action"] == "sts:AssumeRole"]
    return statement["Resource"]


SYNC_ROLES = ("DataManagementHandlerRole", "ExecutionHandlerRole", "RefreshHandlerRole")


@pytest.mark.parametrize("role", SYNC_ROLES)
@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(None, ["RecoveryInstanceSyncRole"], id="default"),
        pytest.param(
            f"RecoveryInstanceSyncRole,{ORCHESTRATION_ROLE}",
            ["RecoveryInstanceSyncRole", ORCHESTRATION_ROLE],
            id="beside-its-role",
        ),
        pytest.param("a,b,c,d", ["a", "b", "c", "d"], id="four"),
    ],
)
def test_cfn_hub_assumes_exactly_the_listed_roles(role: str, names: str | None, expected: list[str]) -> None:
    extra = {} if names is None else {"TargetRoleNames": names}
    resources = rendered_hub(PROJECT, ENVIRONMENT, "beside", **extra)["lambda-stack.yaml"]
    arns = _assume_resources(resources[role])
    assert arns == [f"arn:aws:iam::*:role/{name}" for name in expected]
    assert not [arn for arn in arns if arn.endswith(("/*", "/"))]


def test_cfn_target_role_names_allow_at_most_four() -> None:
    import re

    pattern = load_template("lambda-stack.yaml")["Parameters"]["TargetRoleNames"]["AllowedPattern"]
    assert re.fullmatch(pattern, f"RecoveryInstanceSyncRole,{ORCHESTRATION_ROLE}")
    assert not re.fullmatch(pattern, "a,b,c,d,e")
    assert not re.fullmatch(pattern, "*")
    assert not re.fullmatch(pattern, "a,")


@pytest.mark.parametrize(
    ("parameters", "refused"),
    [
        pytest.param({}, False, id="defaults"),
        pytest.param({"TargetRoleNames": f"RecoveryInstanceSyncRole,{ORCHESTRATION_ROLE}"}, False, id="both"),
        pytest.param({"CrossAccountRoleName": ORCHESTRATION_ROLE}, True, id="default-role-not-listed"),
        pytest.param(
            {"CrossAccountRoleName": ORCHESTRATION_ROLE, "TargetRoleNames": ORCHESTRATION_ROLE}, False, id="its-only"
        ),
    ],
)
def test_cfn_master_refuses_a_default_role_the_hub_may_not_assume(parameters: dict[str, str], refused: bool) -> None:
    result = refused_by_rules(load_template("master-template.yaml"), parameters)
    assert ("CrossAccountRoleNameIsATargetRole" in result) == refused


def test_cfn_master_passes_the_role_names_to_the_lambda_stack() -> None:
    passed = load_template("master-template.yaml")["Resources"]["LambdaStack"]["Properties"]["Parameters"]
    assert passed["TargetRoleNames"] == {"Fn::Join": [",", {"Ref": "TargetRoleNames"}]}
    assert passed["CrossAccountRoleName"] == {"Ref": "CrossAccountRoleName"}


@pytest.mark.parametrize(
    ("parameters", "refused"),
    [
        pytest.param({"OrchestrationMode": "beside"}, True, id="beside-without-its-role"),
        pytest.param(
            {"OrchestrationMode": "beside", "TargetRoleNames": f"RecoveryInstanceSyncRole,{ORCHESTRATION_ROLE}"},
            False,
            id="beside-with-its-role",
        ),
        pytest.param({}, False, id="standalone"),
    ],
)
def test_cfn_master_beside_requires_the_orchestrations_role(parameters: dict[str, str], refused: bool) -> None:
    result = refused_by_rules(load_template("master-template.yaml"), parameters)
    assert ("BesideAssumesTheOrchestrationsRole" in result) == refused
