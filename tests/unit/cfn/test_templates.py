"""The CloudFormation templates: structure, tables, schedule, API routes, monitoring.

IAM is in test_cfn_iam.py, the scripts in test_cfn_deploy.py. Templates are read with a loader
that accepts the short-form intrinsic tags (tests/cfn_yaml.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devtools.tables import LOGICAL_ID_TO_FIELD, load_table_definitions
from syncengine.core import config, metrics
from tests.cfn_yaml import CFN_DIR, load_template, resources_of_type

TEMPLATE_FILES = sorted(path.name for path in CFN_DIR.glob("*.yaml"))
EXPECTED_TEMPLATES = {
    "master-template.yaml",
    "database-stack.yaml",
    "lambda-stack.yaml",
    "eventbridge-stack.yaml",
    "api-stack.yaml",
    "monitoring-stack.yaml",
    "drs-target-account-role.yaml",
}
FUNCTIONS = ("DataManagementFunction", "ExecutionFunction", "QueryFunction")


@pytest.fixture(scope="module")
def master() -> dict[str, Any]:
    return load_template("master-template.yaml")


@pytest.fixture(scope="module")
def database() -> dict[str, Any]:
    return load_template("database-stack.yaml")


@pytest.fixture(scope="module")
def lambda_stack() -> dict[str, Any]:
    return load_template("lambda-stack.yaml")


@pytest.fixture(scope="module")
def eventbridge() -> dict[str, Any]:
    return load_template("eventbridge-stack.yaml")


@pytest.fixture(scope="module")
def api() -> dict[str, Any]:
    return load_template("api-stack.yaml")


@pytest.fixture(scope="module")
def monitoring() -> dict[str, Any]:
    return load_template("monitoring-stack.yaml")


# ---------------------------------------------------------------------------------------------
# Every template


def test_cfn_templates_all_present() -> None:
    assert EXPECTED_TEMPLATES <= set(TEMPLATE_FILES)


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_cfn_template_parses(name: str) -> None:
    template = load_template(name)
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert template.get("Description")
    assert template["Resources"]


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_cfn_checkov_skips_carry_a_reason(name: str) -> None:
    """Every checkov skip is inline, on its resource, with a sentence saying why."""
    for logical_id, resource in load_template(name)["Resources"].items():
        skips = ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip") or []
        for skip in skips:
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (logical_id, skip)
            assert len(skip.get("comment", "").split()) >= 8, f"{logical_id}: {skip['id']} needs a reason"


# ---------------------------------------------------------------------------------------------
# Master: nested stacks


def test_cfn_master_nests_each_stack_by_relative_path(master: dict[str, Any]) -> None:
    """`aws cloudformation package` uploads local TemplateURLs; each must name a file in cfn/."""
    stacks = resources_of_type(master, "AWS::CloudFormation::Stack")
    urls = {stack["Properties"]["TemplateURL"] for stack in stacks.values()}
    assert urls == EXPECTED_TEMPLATES - {"master-template.yaml", "drs-target-account-role.yaml"}
    for url in urls:
        assert "://" not in url and not url.startswith("/")
        assert (CFN_DIR / url).is_file()


def test_cfn_master_passes_exactly_the_nested_parameters(master: dict[str, Any]) -> None:
    """Each nested stack gets every parameter it has no default for, and none it does not declare."""
    for logical_id, stack in resources_of_type(master, "AWS::CloudFormation::Stack").items():
        child = load_template(stack["Properties"]["TemplateURL"])
        declared = child.get("Parameters") or {}
        passed = set(stack["Properties"].get("Parameters") or {})
        required = {name for name, spec in declared.items() if "Default" not in spec}
        assert passed <= set(declared), f"{logical_id} passes unknown {passed - set(declared)}"
        assert required <= passed, f"{logical_id} misses {required - passed}"


def test_cfn_master_parameters_cover_the_brief(master: dict[str, Any]) -> None:
    parameters = master["Parameters"]
    for name in (
        "ProjectName",
        "Environment",
        "NotificationEmail",
        "ApiAuthType",
        "CognitoUserPoolArn",
        "CrossAccountRoleName",
        "DataManagementMemorySize",
        "DataManagementTimeout",
        "ExecutionMemorySize",
        "ExecutionTimeout",
        "QueryMemorySize",
        "QueryTimeout",
        "MetricsNamespace",
    ):
        assert name in parameters, name
    assert parameters["ProjectName"]["Default"] == config.DEFAULT_PROJECT_NAME
    assert parameters["Environment"]["Default"] == config.DEFAULT_ENVIRONMENT


@pytest.mark.parametrize(
    ("project", "environment"),
    [
        pytest.param("drs-orchestration", "dev", id="defaults"),
        pytest.param("a" * 28, "b" * 12, id="longest-allowed"),
    ],
)
def test_cfn_master_name_limits_fit_derived_names(master: dict[str, Any], project: str, environment: str) -> None:
    """The allowed ProjectName/Environment keep function and role names within 64 characters."""
    for value, parameter in ((project, "ProjectName"), (environment, "Environment")):
        assert re.fullmatch(master["Parameters"][parameter]["AllowedPattern"], value)
    longest = [
        f"{project}-data-management-{environment}",  # function name
        f"{project}-{environment}-data-management",  # role name
    ]
    assert all(len(name) <= 64 for name in longest)


# ---------------------------------------------------------------------------------------------
# Database


def test_cfn_cache_table_as_specified(database: dict[str, Any]) -> None:
    table = database["Resources"]["RecoveryInstancesCacheTable"]
    properties = table["Properties"]
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    # Standalone: the code's default name; beside the orchestration: a name apart from its own cache's.
    assert properties["TableName"] == {
        "Fn::If": [
            "Standalone",
            {"Fn::Sub": "${ProjectName}-recovery-instances-${Environment}"},
            {"Fn::Sub": "${ProjectName}-recovery-instance-cache-${Environment}"},
        ]
    }
    assert properties["KeySchema"] == [{"AttributeName": "sourceServerId", "KeyType": "HASH"}]
    assert {"AttributeName": "sourceServerId", "AttributeType": "S"} in properties["AttributeDefinitions"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"]["SSEEnabled"] is True
    indexes = {index["IndexName"] for index in properties["GlobalSecondaryIndexes"]}
    assert indexes == {"sourceExecutionId-index", "scopeKey-index", "ec2InstanceId-index"}


def test_cfn_cache_table_outputs_name_and_arn(database: dict[str, Any]) -> None:
    outputs = database["Outputs"]
    assert outputs["RecoveryInstancesCacheTableName"]["Value"] == {"Ref": "RecoveryInstancesCacheTable"}
    assert outputs["RecoveryInstancesCacheTableArn"]["Value"] == {"Fn::GetAtt": ["RecoveryInstancesCacheTable", "Arn"]}


def test_cfn_every_table_keeps_its_data(database: dict[str, Any]) -> None:
    tables = resources_of_type(database, "AWS::DynamoDB::Table")
    assert set(tables) == set(LOGICAL_ID_TO_FIELD)
    for logical_id, table in tables.items():
        assert table["DeletionPolicy"] == "Retain", logical_id
        assert table["UpdateReplacePolicy"] == "Retain", logical_id
        assert table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_cfn_table_names_follow_the_code_convention(database: dict[str, Any]) -> None:
    """``${ProjectName}-<name>-${Environment}`` as TableNames.for_project builds them."""
    expected = config.TableNames.for_project("${ProjectName}", "${Environment}")
    for logical_id, table in resources_of_type(database, "AWS::DynamoDB::Table").items():
        name = getattr(expected, LOGICAL_ID_TO_FIELD[logical_id])
        table_name = table["Properties"]["TableName"]
        if "Fn::If" in table_name:  # the cache beside the orchestration: standalone name first
            condition, table_name, _beside = table_name["Fn::If"]
            assert condition == "Standalone"
        assert table_name == {"Fn::Sub": name}, logical_id


def test_cfn_local_tables_come_from_the_same_template(database: dict[str, Any]) -> None:
    """`syncengine tables create` reads its keys and indexes from cfn/database-stack.yaml."""
    definitions = {definition.logical_id: definition for definition in load_table_definitions()}
    for logical_id, table in resources_of_type(database, "AWS::DynamoDB::Table").items():
        properties = table["Properties"]
        definition = definitions[logical_id]
        assert list(definition.key_schema) == properties["KeySchema"]
        assert [g["IndexName"] for g in definition.global_secondary_indexes] == [
            g["IndexName"] for g in properties.get("GlobalSecondaryIndexes", [])
        ]


def test_cfn_database_outputs_feed_the_lambda_stack(master: dict[str, Any], database: dict[str, Any]) -> None:
    passed = master["Resources"]["LambdaStack"]["Properties"]["Parameters"]
    for output in database["Outputs"]:
        assert passed[output] == {"Fn::GetAtt": ["DatabaseStack", f"Outputs.{output}"]}


# ---------------------------------------------------------------------------------------------
# Functions: handlers, sizing, environment


TABLE_ENV_TO_PARAMETER = {
    config.ENV_CACHE_TABLE: "RecoveryInstancesCacheTableName",
    config.ENV_STATUS_TABLE: "RecoveryInstanceSyncStatusTableName",
    config.ENV_TARGET_ACCOUNTS_TABLE: "TargetAccountsTableName",
    config.ENV_EXECUTION_HISTORY_TABLE: "ExecutionHistoryTableName",
    config.ENV_RECOVERY_PLANS_TABLE: "RecoveryPlansTableName",
    config.ENV_PROTECTION_GROUPS_TABLE: "ProtectionGroupsTableName",
    config.ENV_EXECUTION_INDEX_TABLE: "ExecutionIndexTableName",
}
TABLES_USED = {
    "DataManagementFunction": set(TABLE_ENV_TO_PARAMETER),
    "ExecutionFunction": {
        config.ENV_EXECUTION_INDEX_TABLE,
        config.ENV_CACHE_TABLE,
        config.ENV_STATUS_TABLE,
        config.ENV_TARGET_ACCOUNTS_TABLE,
        config.ENV_EXECUTION_HISTORY_TABLE,
        config.ENV_PROTECTION_GROUPS_TABLE,
    },
    "QueryFunction": {
        config.ENV_CACHE_TABLE,
        config.ENV_STATUS_TABLE,
        config.ENV_RECOVERY_PLANS_TABLE,
        config.ENV_PROTECTION_GROUPS_TABLE,
    },
}


def _variables(lambda_stack: dict[str, Any], function: str) -> dict[str, Any]:
    return lambda_stack["Resources"][function]["Properties"]["Environment"]["Variables"]


def test_cfn_table_env_vars_are_the_codes() -> None:
    """Every table variable syncengine.core.config reads is one CloudFormation sets (the
    orchestration's region-status table only when there is one: below)."""
    table_vars = {name for name in config.ALL_ENV_VARS if name.endswith("_TABLE")}
    assert table_vars == set(TABLE_ENV_TO_PARAMETER) | {config.ENV_DRS_REGION_STATUS_TABLE}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_cfn_function_gets_the_region_status_table_when_there_is_one(
    lambda_stack: dict[str, Any], function: str
) -> None:
    assert _variables(lambda_stack, function)[config.ENV_DRS_REGION_STATUS_TABLE] == {
        "Fn::If": ["HasRegionStatus", {"Ref": "DrsRegionStatusTableName"}, {"Ref": "AWS::NoValue"}]
    }


def test_cfn_region_status_table_is_the_orchestrations_beside_it() -> None:
    """Beside the orchestration its own table by default (its tables-stack.yaml names it
    ${ProjectName}-drs-region-status-${Environment}); standalone none unless named."""
    passed = load_template("master-template.yaml")["Resources"]["LambdaStack"]["Properties"]["Parameters"]
    assert passed["DrsRegionStatusTableName"] == {
        "Fn::If": [
            "HasExistingRegionStatus",
            {"Ref": "ExistingDrsRegionStatusTableName"},
            {"Fn::If": ["Standalone", "", {"Fn::Sub": "${ProjectName}-drs-region-status-${Environment}"}]},
        ]
    }


@pytest.mark.parametrize("function", FUNCTIONS)
def test_cfn_function_sets_the_tables_it_uses(lambda_stack: dict[str, Any], function: str) -> None:
    variables = _variables(lambda_stack, function)
    for name in TABLES_USED[function]:
        assert variables.get(name) == {"Ref": TABLE_ENV_TO_PARAMETER[name]}, (function, name)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_cfn_function_sets_every_variable_the_code_reads(lambda_stack: dict[str, Any], function: str) -> None:
    variables = _variables(lambda_stack, function)
    missing = set(config.ALL_ENV_VARS) - set(variables)
    assert not missing, f"{function} lacks {sorted(missing)}"
    for name in ("LOG_LEVEL", "POWERTOOLS_SERVICE_NAME"):
        assert name in variables


@pytest.mark.parametrize("function", ["DataManagementFunction", "QueryFunction"])
def test_cfn_api_functions_get_the_cors_origin(lambda_stack: dict[str, Any], function: str) -> None:
    """handlers/api.py reads CORS_ALLOW_ORIGIN; the API stack's preflights use the same parameter."""
    from handlers.api import ENV_CORS_ALLOW_ORIGIN

    assert _variables(lambda_stack, function)[ENV_CORS_ALLOW_ORIGIN] == {"Ref": "CorsAllowOrigin"}
    passed = load_template("master-template.yaml")["Resources"]
    for stack in ("LambdaStack", "ApiStack"):
        assert passed[stack]["Properties"]["Parameters"]["CorsAllowOrigin"] == {"Ref": "CorsAllowOrigin"}


def test_cfn_optional_deadline_is_left_unset_when_empty(lambda_stack: dict[str, Any]) -> None:
    """An empty SyncDeadlineSeconds removes the variable (the engine derives the deadline)."""
    value = _variables(lambda_stack, "DataManagementFunction")[config.ENV_DEADLINE_SECONDS]
    assert value == {"Fn::If": ["HasSyncDeadline", {"Ref": "SyncDeadlineSeconds"}, {"Ref": "AWS::NoValue"}]}


@pytest.mark.parametrize(
    ("function", "handler", "memory", "timeout"),
    [
        pytest.param("DataManagementFunction", "handlers.data_management.lambda_handler", 1769, 900, id="data"),
        pytest.param("ExecutionFunction", "handlers.execution.lambda_handler", 512, 120, id="execution"),
        pytest.param("QueryFunction", "handlers.query.lambda_handler", 512, 30, id="query"),
    ],
)
def test_cfn_function_handler_and_sizing(
    lambda_stack: dict[str, Any], function: str, handler: str, memory: int, timeout: int
) -> None:
    properties = lambda_stack["Resources"][function]["Properties"]
    parameters = lambda_stack["Parameters"]
    assert properties["Handler"] == handler
    assert properties["Runtime"] == "python3.12"
    assert properties["Architectures"] == [{"Ref": "LambdaArchitecture"}]
    assert parameters[properties["MemorySize"]["Ref"]]["Default"] == memory
    assert parameters[properties["Timeout"]["Ref"]]["Default"] == timeout


def test_cfn_defaults_match_the_code(master: dict[str, Any], lambda_stack: dict[str, Any]) -> None:
    for template in (master, lambda_stack):
        parameters = template["Parameters"]
        # Deployed stacks name their own role, never the orchestration's (the code's local
        # default, shared with the simulator); test_cfn_iam checks the target role agrees.
        assert parameters["CrossAccountRoleName"]["Default"] == "RecoveryInstanceSyncRole"
        assert parameters["CrossAccountRoleName"]["Default"] != config.DEFAULT_ROLE_NAME
        assert parameters["MetricsNamespace"]["Default"] == config.DEFAULT_METRICS_NAMESPACE == metrics.NAMESPACE
        assert parameters["SyncMaxConcurrency"]["Default"] == config.DEFAULT_MAX_CONCURRENCY
        assert parameters["SyncPerScopeConcurrency"]["Default"] == config.DEFAULT_PER_SCOPE_CONCURRENCY
        assert parameters["SyncMaxAttempts"]["Default"] == config.DEFAULT_MAX_ATTEMPTS
        assert parameters["SyncRegions"]["Default"] == ""


def test_cfn_default_architecture_matches_the_deploy_script(master: dict[str, Any]) -> None:
    script = (CFN_DIR.parent / "scripts" / "deploy.sh").read_text(encoding="utf-8")
    default = master["Parameters"]["LambdaArchitecture"]["Default"]
    assert f'LAMBDA_ARCH="${{LAMBDA_ARCH:-{default}}}"' in script


# ---------------------------------------------------------------------------------------------
# Schedule


def test_cfn_schedule_rule_exact(eventbridge: dict[str, Any]) -> None:
    properties = eventbridge["Resources"]["RecoveryInstanceSyncSchedule"]["Properties"]
    assert properties["ScheduleExpression"] == "rate(5 minutes)"
    assert properties["State"] == "ENABLED"
    (target,) = properties["Targets"]
    assert target["Arn"] == {"Ref": "DataManagementFunctionArn"}
    assert json.loads(target["Input"]) == {"operation": "sync_recovery_instances", "trigger": "schedule"}


def test_cfn_schedule_may_invoke_the_function(eventbridge: dict[str, Any]) -> None:
    rule_id = "RecoveryInstanceSyncSchedule"
    (permission,) = resources_of_type(eventbridge, "AWS::Lambda::Permission").values()
    properties = permission["Properties"]
    assert properties["Principal"] == "events.amazonaws.com"
    assert properties["Action"] == "lambda:InvokeFunction"
    assert properties["FunctionName"] == {"Ref": "DataManagementFunctionArn"}
    assert properties["SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}


def test_cfn_schedule_targets_data_management(master: dict[str, Any]) -> None:
    passed = master["Resources"]["EventBridgeStack"]["Properties"]["Parameters"]
    assert passed["DataManagementFunctionArn"] == {"Fn::GetAtt": ["LambdaStack", "Outputs.DataManagementFunctionArn"]}


# ---------------------------------------------------------------------------------------------
# API


def _resource_paths(api: dict[str, Any]) -> dict[str, str]:
    """Logical id of each AWS::ApiGateway::Resource -> its full path."""
    resources = resources_of_type(api, "AWS::ApiGateway::Resource")
    paths: dict[str, str] = {}

    def path_of(logical_id: str) -> str:
        if logical_id not in paths:
            properties = resources[logical_id]["Properties"]
            parent = properties["ParentId"]
            if "Fn::If" in parent:  # [Create..., own resource, the existing API's resource id]
                parent = parent["Fn::If"][1]
            prefix = "" if parent == {"Fn::GetAtt": ["RestApi", "RootResourceId"]} else path_of(parent["Ref"])
            paths[logical_id] = f"{prefix}/{properties['PathPart']}"
        return paths[logical_id]

    for logical_id in resources:
        path_of(logical_id)
    return paths


def _routes(api: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    paths = _resource_paths(api)
    return {
        (method["Properties"]["HttpMethod"], paths[method["Properties"]["ResourceId"]["Ref"]]): method["Properties"]
        for method in resources_of_type(api, "AWS::ApiGateway::Method").values()
    }


CONTRACT_ROUTES = {
    ("POST", "/drs/recovery-instance-sync"),
    ("GET", "/drs/recovery-instance-sync/status"),
    ("GET", "/recovery-plans/{planId}/check-existing-instances"),
    ("POST", "/executions/{executionId}/terminate-instances"),
    ("GET", "/executions/{executionId}/recovery-instances"),
}


def test_cfn_api_has_the_contract_routes(api: dict[str, Any]) -> None:
    routes = _routes(api)
    assert {route for route in routes if route[0] != "OPTIONS"} == CONTRACT_ROUTES
    paths = set(_resource_paths(api).values())
    parts = ("recovery-instance-sync", "status", "check-existing-instances", "terminate-instances")
    parts += ("recovery-instances",)
    for part in parts:
        assert any(path.endswith(f"/{part}") for path in paths), part


def test_cfn_api_routes_are_lambda_proxy_with_parameterised_auth(api: dict[str, Any]) -> None:
    for route, method in _routes(api).items():
        if route[0] == "OPTIONS":
            continue
        assert method["AuthorizationType"] == {"Ref": "ApiAuthType"}, route
        assert method["Integration"]["Type"] == "AWS_PROXY", route
        assert method["Integration"]["IntegrationHttpMethod"] == "POST", route
    allowed = set(api["Parameters"]["ApiAuthType"]["AllowedValues"])
    assert allowed == {"AWS_IAM", "COGNITO_USER_POOLS"}
    authorizer = api["Resources"]["CognitoAuthorizer"]
    assert authorizer["Condition"] == "CreateAuthorizer"
    assert authorizer["Properties"]["ProviderARNs"] == [{"Ref": "CognitoUserPoolArn"}]


def test_cfn_api_state_changing_routes_go_to_data_management(api: dict[str, Any]) -> None:
    routes = _routes(api)
    for route in (
        ("POST", "/drs/recovery-instance-sync"),
        ("POST", "/executions/{executionId}/terminate-instances"),
    ):
        uri = routes[route]["Integration"]["Uri"]["Fn::Sub"]
        assert "${DataManagementFunctionArn}" in uri and "QueryFunctionArn" not in uri


def test_cfn_api_read_routes_default_to_the_query_function(api: dict[str, Any]) -> None:
    assert api["Parameters"]["ReadRoutesTarget"]["Default"] == "query"
    routes = _routes(api)
    for route in (
        ("GET", "/drs/recovery-instance-sync/status"),
        ("GET", "/recovery-plans/{planId}/check-existing-instances"),
        ("GET", "/executions/{executionId}/recovery-instances"),
    ):
        condition, on_query, otherwise = routes[route]["Integration"]["Uri"]["Fn::If"]
        assert condition == "ReadsOnQuery"
        assert "${QueryFunctionArn}" in on_query["Fn::Sub"]
        assert "${DataManagementFunctionArn}" in otherwise["Fn::Sub"]


def test_cfn_api_cors_preflight_on_every_route(api: dict[str, Any]) -> None:
    routes = _routes(api)
    for _, path in CONTRACT_ROUTES:
        options = routes[("OPTIONS", path)]
        assert options["AuthorizationType"] == "NONE"
        assert options["Integration"]["Type"] == "MOCK"
        headers = options["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
        assert "method.response.header.Access-Control-Allow-Origin" in headers


def test_cfn_api_invoke_permissions_are_per_route(api: dict[str, Any]) -> None:
    permissions = resources_of_type(api, "AWS::Lambda::Permission")
    source_arns = set()
    for permission in permissions.values():
        properties = permission["Properties"]
        assert properties["Principal"] == "apigateway.amazonaws.com"
        template, variables = properties["SourceArn"]["Fn::Sub"]
        assert variables["ApiId"] == {"Fn::If": ["CreateApi", {"Ref": "RestApi"}, {"Ref": "ExistingRestApiId"}]}
        source_arns.add(template.split("${ApiId}/*/", 1)[1])
    expected = {f"{method}{path}" for method, path in CONTRACT_ROUTES}
    assert {arn.replace("/*/", "/{}/") for arn in source_arns} == {
        re.sub(r"\{[^}]+\}", "{}", route) for route in expected
    }


def test_cfn_api_stage_logs_access(api: dict[str, Any]) -> None:
    (stage,) = resources_of_type(api, "AWS::ApiGateway::Stage").values()
    properties = stage["Properties"]
    assert properties["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["AccessLogGroup", "Arn"]}
    assert properties["MethodSettings"][0]["MetricsEnabled"] is True


# ---------------------------------------------------------------------------------------------
# Monitoring

CUSTOM_NAMESPACE_REFS = ({"Ref": "MetricsNamespace"}, "${MetricsNamespace}")
AWS_NAMESPACES = {"AWS/Lambda", "AWS/DynamoDB", "AWS/ApiGateway", "AWS/SQS", "AWS/Events"}


def _alarms(monitoring: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in resources_of_type(monitoring, "AWS::CloudWatch::Alarm").items()}


def _alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """Each metric an alarm watches: {Namespace, MetricName, Dimensions}."""
    if "MetricName" in alarm:
        return [{key: alarm.get(key) for key in ("Namespace", "MetricName", "Dimensions")}]
    queries = []
    for query in alarm["Metrics"]:
        if "Fn::If" in query:  # a metric only some deployments have: [condition, query, NoValue]
            query = query["Fn::If"][1]
        if "MetricStat" in query:
            queries.append(query["MetricStat"]["Metric"])
    return queries


def _dashboard_metrics(monitoring: dict[str, Any]) -> list[list[Any]]:
    (dashboard,) = resources_of_type(monitoring, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    if isinstance(body, list):  # [template, variables]
        body = body[0]
    # ${Name} and ${Name.Attr} are substitutions; numbers stand in where they are JSON values.
    filled = re.sub(r"(?<=: )\$\{[A-Za-z]+\}", "1", body)
    filled = re.sub(r"\$\{([A-Za-z:.]+)\}", r"\1", filled)
    document = json.loads(filled.replace('"MetricsNamespace"', '"${MetricsNamespace}"'))
    return [metric for widget in document["widgets"] for metric in widget["properties"].get("metrics", [])]


def test_cfn_monitoring_has_alarms_dashboard_and_topic(monitoring: dict[str, Any]) -> None:
    assert len(_alarms(monitoring)) >= 4
    assert resources_of_type(monitoring, "AWS::CloudWatch::Dashboard")
    (topic,) = resources_of_type(monitoring, "AWS::SNS::Topic").values()
    assert topic["Properties"]["KmsMasterKeyId"] == {"Ref": "ProjectKeyArn"}
    (subscription,) = resources_of_type(monitoring, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasNotificationEmail"
    assert monitoring["Conditions"]["HasNotificationEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "NotificationEmail"}, ""]}]
    }


def test_cfn_every_alarm_notifies_the_topic(monitoring: dict[str, Any]) -> None:
    for name, alarm in _alarms(monitoring).items():
        assert {"Ref": "AlarmTopic"} in alarm["AlarmActions"], name


def test_cfn_required_alarms_exist(monitoring: dict[str, Any]) -> None:
    watched = {
        name: {(str(m["Namespace"]), m["MetricName"]) for m in _alarm_metrics(alarm)}
        for name, alarm in _alarms(monitoring).items()
    }
    custom = str({"Ref": "MetricsNamespace"})

    def alarms_on(*metric: tuple[str, str]) -> list[str]:
        return [name for name, metrics_ in watched.items() if set(metric) & metrics_]

    assert alarms_on((custom, "SyncErrors"))
    assert alarms_on(
        (custom, "DynamoDBThrottles"),
        ("AWS/DynamoDB", "ThrottledRequests"),
        ("AWS/DynamoDB", "WriteThrottleEvents"),
    )
    assert alarms_on((custom, "CacheMissRate"), (custom, "CacheMisses"))
    assert alarms_on(("AWS/Lambda", "Duration"))


def test_cfn_duration_alarm_watches_the_read_path_over_5s(monitoring: dict[str, Any]) -> None:
    """Lambda Duration alarms watch the query function, never the long-running full sync."""
    thresholds = monitoring["Parameters"]
    duration_alarms = [
        alarm
        for alarm in _alarms(monitoring).values()
        if any(m["MetricName"] == "Duration" for m in _alarm_metrics(alarm))
    ]
    assert duration_alarms
    for alarm in duration_alarms:
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "QueryFunctionName"}}]
        assert thresholds[alarm["Threshold"]["Ref"]]["Default"] == 5000
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_cfn_cache_miss_rate_alarm_over_10_percent(monitoring: dict[str, Any]) -> None:
    alarm = _alarms(monitoring)["CacheMissRateAlarm"]
    assert monitoring["Parameters"][alarm["Threshold"]["Ref"]]["Default"] == 10
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_cfn_cache_miss_rate_alarm_divides_misses_by_lookups(monitoring: dict[str, Any]) -> None:
    """The contract's miss rate: summed misses over summed lookups, both metrics the code emits."""
    alarm = _alarms(monitoring)["CacheMissRateAlarm"]
    stats = {q["Id"]: q["MetricStat"] for q in alarm["Metrics"] if "MetricStat" in q}
    assert {q["Metric"]["MetricName"] for q in stats.values()} == {metrics.CACHE_LOOKUPS, metrics.CACHE_MISSES}
    assert all(q["Stat"] == "Sum" for q in stats.values())
    ids = {q["Metric"]["MetricName"]: i for i, q in stats.items()}
    (expression,) = [q["Expression"] for q in alarm["Metrics"] if "Expression" in q]
    misses, lookups = ids[metrics.CACHE_MISSES], ids[metrics.CACHE_LOOKUPS]
    assert f"100 * FILL({misses}, 0) / FILL({lookups}, 0)" in expression


def test_cfn_every_custom_metric_is_emitted_by_the_code(monitoring: dict[str, Any]) -> None:
    """Alarms and widgets on our namespace watch only names syncengine.core.metrics defines, with its
    one dimension; everything else is an AWS service metric."""
    seen = set()
    for alarm in _alarms(monitoring).values():
        for metric in _alarm_metrics(alarm):
            if metric["Namespace"] in CUSTOM_NAMESPACE_REFS:
                seen.add(metric["MetricName"])
                assert metric["Dimensions"] == [{"Name": metrics.DIMENSION_NAME, "Value": {"Ref": "Environment"}}]
            else:
                assert metric["Namespace"] in AWS_NAMESPACES
    for metric in _dashboard_metrics(monitoring):
        namespace, name, *dimensions = metric
        if namespace in CUSTOM_NAMESPACE_REFS:
            seen.add(name)
            assert dimensions[:2] == [metrics.DIMENSION_NAME, "Environment"]
        else:
            assert namespace in AWS_NAMESPACES, metric
    assert seen, "no custom metric found: the parsing above is broken"
    assert seen <= metrics.METRIC_NAMES, sorted(seen - metrics.METRIC_NAMES)


def test_cfn_dashboard_shows_the_brief(monitoring: dict[str, Any]) -> None:
    names = {metric[1] for metric in _dashboard_metrics(monitoring)}
    for name in ("SyncDuration", "CacheQueryLatency", "CacheMissRate", "DynamoDBThrottles"):
        assert name in names


def test_cfn_monitoring_gets_the_deployed_names(master: dict[str, Any]) -> None:
    passed = master["Resources"]["MonitoringStack"]["Properties"]["Parameters"]
    assert passed["Environment"] == {"Ref": "Environment"}
    assert passed["MetricsNamespace"] == {"Ref": "MetricsNamespace"}
    assert passed["QueryFunctionName"] == {"Fn::GetAtt": ["LambdaStack", "Outputs.QueryFunctionName"]}


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_cfn_parameter_descriptions_hold_no_measurements(name: str) -> None:
    """Numbers measured on this project belong in benchmarks/RESULTS.md, where they are dated and
    reproducible; a parameter's description points there instead of quoting them."""
    for parameter, spec in (load_template(name).get("Parameters") or {}).items():
        description = spec.get("Description", "")
        assert not re.search(r"~|\bmeasured\b|\bpeak\b|ms of CPU|\d+(\.\d+)? ?s without", description), (
            parameter,
            description,
        )
