"""The event-driven refresh in CloudFormation, rendered as deployed (tests/cfn_render.py): the work
queue and its dead-letter queue, the event source mapping, the refresh function and its role, the
hub event bus with its organization-scoped policy and rules, the target accounts' forwarding
template, and the alarms on the queues."""

from __future__ import annotations

import re
from typing import Any

import pytest

from syncengine.core import config
from tests.cfn_render import render
from tests.cfn_yaml import ROOT, load_template, walk
from tests.unit.cfn.test_existing_orchestration import LAMBDA_PARAMETERS, _database

DETAIL_TYPES = {
    "DRS Source Server Launch Result",
    "DRS Recovery Instance Failback State Change",
    "EC2 Instance State-change Notification",
}
HUB_BUS = "arn:aws:events:us-east-1:222222222222:event-bus/drs-orchestration-recovery-instance-events-prod"
EVENTBRIDGE_PARAMETERS = {
    "ProjectName": "p",
    "Environment": "e",
    "DataManagementFunctionArn": "f",
    "WorkQueueArn": "arn:aws:sqs:us-east-1:111111111111:work",
    "WorkQueueUrl": "https://queue/work",
}


def _lambda(**parameters: str) -> dict[str, Any]:
    declared = load_template("lambda-stack.yaml")["Parameters"]
    tables = {name: value for name, value in _database({})[1].items() if name in declared}
    return render(load_template("lambda-stack.yaml"), {**LAMBDA_PARAMETERS, **tables, **parameters}).resources()


def _eventbridge(**parameters: str) -> dict[str, Any]:
    return render(load_template("eventbridge-stack.yaml"), {**EVENTBRIDGE_PARAMETERS, **parameters}).resources()


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _actions_on(role: dict[str, Any]) -> dict[str, list[Any]]:
    granted: dict[str, list[Any]] = {}
    for statement in _statements(role):
        for action in _as_list(statement["Action"]):
            granted.setdefault(action, []).extend(_as_list(statement["Resource"]))
    return granted


# ---------------------------------------------------------------------------------------------
# Work queue, dead-letter queue, event source mapping


@pytest.mark.parametrize("timeout", ["60", "120", "300", "900"])
def test_cfn_work_queue_visibility_is_six_times_the_refresh_timeout(timeout: str) -> None:
    resources = _lambda(RefreshTimeout=timeout)
    assert resources["RefreshFunction"]["Properties"]["Timeout"] == timeout
    assert resources["WorkQueue"]["Properties"]["VisibilityTimeout"] >= 6 * int(timeout)


def test_cfn_work_queue_redrives_to_its_dead_letter_queue_after_five_receives_at_least() -> None:
    """AWS advises maxReceiveCount >= 5 for an SQS event source (a throttled poll counts as a
    receive); the parameter cannot go lower."""
    redrive = _lambda()["WorkQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == "<GetAtt WorkDeadLetterQueue.Arn>"
    assert int(redrive["maxReceiveCount"]) >= 5
    for template in ("lambda-stack.yaml", "master-template.yaml"):
        assert load_template(template)["Parameters"]["RefreshMaxReceiveCount"]["MinValue"] >= 5


def test_cfn_event_source_mapping_reports_partial_batch_failures_with_a_concurrency_cap() -> None:
    (mapping,) = [r for r in _lambda().values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    properties = mapping["Properties"]
    assert properties["EventSourceArn"] == "<GetAtt WorkQueue.Arn>"
    assert properties["FunctionName"] == "<Ref RefreshFunction>"
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 <= int(properties["BatchSize"]) <= 100
    assert int(properties["ScalingConfig"]["MaximumConcurrency"]) >= 2


def test_cfn_refresh_reserved_concurrency_covers_the_mapping_cap() -> None:
    """A reserved concurrency below the mapping's cap would throttle the pollers' invocations."""
    parameters = load_template("lambda-stack.yaml")["Parameters"]
    assert parameters["RefreshReservedConcurrency"]["Default"] >= parameters["RefreshMaximumConcurrency"]["Default"]


def test_cfn_work_queues_are_encrypted_at_rest() -> None:
    resources = _lambda()
    for queue in ("WorkQueue", "WorkDeadLetterQueue"):
        assert resources[queue]["Properties"]["SqsManagedSseEnabled"] is True, queue


# ---------------------------------------------------------------------------------------------
# Refresh function and its role


def test_cfn_refresh_function_runs_the_refresh_handler_with_its_own_role() -> None:
    properties = _lambda()["RefreshFunction"]["Properties"]
    assert properties["Handler"] == "handlers.refresh.lambda_handler"
    assert properties["Role"] == "<GetAtt RefreshHandlerRole.Arn>"
    assert properties["LoggingConfig"]["LogGroup"] == "<Ref RefreshLogGroup>"


def test_cfn_refresh_function_sets_every_variable_the_code_reads() -> None:
    variables = load_template("lambda-stack.yaml")["Resources"]["RefreshFunction"]["Properties"]["Environment"]
    missing = set(config.ALL_ENV_VARS) - set(variables["Variables"])
    assert not missing


def test_cfn_refresh_role_grants_exactly_what_the_refresh_calls() -> None:
    granted = _actions_on(_lambda()["RefreshHandlerRole"])
    assert set(granted) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "kms:Decrypt",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",  # a busy scope's message comes back soon
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:Scan",
        "drs:DescribeRecoveryInstances",
        "drs:DescribeSourceServers",
        "drs:DescribeJobs",
        "ec2:DescribeInstances",
        "ec2:DescribeRegions",
        "sts:AssumeRole",
        "sts:GetCallerIdentity",
    }


def test_cfn_refresh_role_consumes_the_work_queue_only() -> None:
    granted = _actions_on(_lambda()["RefreshHandlerRole"])
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert granted[action] == ["<GetAtt WorkQueue.Arn>"], action


def test_cfn_refresh_role_writes_only_its_own_tables() -> None:
    """The cache and status tables; the execution index too, but never deleting from it; nothing
    of the orchestration's tables (the full sync, not a refresh, sets instancesTerminated)."""
    granted = _actions_on(_lambda()["RefreshHandlerRole"])
    _, outputs = _database({})
    own = {outputs["RecoveryInstancesCacheTableArn"], outputs["RecoveryInstanceSyncStatusTableArn"]}
    index = {outputs["ExecutionIndexTableArn"]}
    for action in ("dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem"):
        assert set(map(str, granted[action])) == set(map(str, own | index)), action
    assert set(map(str, granted["dynamodb:DeleteItem"])) == set(map(str, own))


@pytest.mark.parametrize(
    ("parameters", "key", "expected"),
    [
        pytest.param({"TargetOrganizationId": "o-abcdefghij"}, "aws:ResourceOrgID", "o-abcdefghij", id="org"),
        pytest.param({"TargetAccountIds": "222222222222"}, "aws:ResourceAccount", ["222222222222"], id="accounts"),
        pytest.param({}, "aws:ResourceAccount", ["111111111111"], id="hub-only"),
    ],
)
def test_cfn_refresh_role_assumes_only_target_roles(parameters: dict[str, str], key: str, expected: Any) -> None:
    role = _lambda(**parameters)["RefreshHandlerRole"]
    (statement,) = [s for s in _statements(role) if s["Action"] == "sts:AssumeRole"]
    assert statement["Condition"]["StringEquals"] == {key: expected}


def test_cfn_target_role_trusts_the_refresh_role_when_given() -> None:
    hub = "arn:aws:iam::111111111111:role/"
    values = {"HubDataManagementRoleArn": hub + "dm", "ExternalId": "ext-1"}
    template = load_template("drs-target-account-role.yaml")

    def trusted(**parameters: str) -> list[str]:
        role = render(template, {**values, **parameters}).resources()["DrsTargetAccountRole"]
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        return trust["Condition"]["ArnEquals"]["aws:PrincipalArn"]

    assert trusted() == [hub + "dm"]
    assert trusted(HubRefreshRoleArn=hub + "refresh") == [hub + "dm", hub + "refresh"]


# ---------------------------------------------------------------------------------------------
# Hub event bus, its policy and rules


def test_cfn_hub_bus_policy_is_scoped_to_the_organization() -> None:
    policy = _eventbridge(TargetOrganizationId="o-abcdefghij")["HubEventBusPolicy"]["Properties"]
    statement = policy["Statement"]
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == "<GetAtt HubEventBus.Arn>"
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}


def test_cfn_hub_bus_policy_names_the_listed_accounts_without_an_organization() -> None:
    resources = _eventbridge(TargetAccountIds="222222222222,333333333333")
    statement = resources["HubEventBusPolicy"]["Properties"]["Statement"]
    assert statement["Principal"] == {"AWS": ["222222222222", "333333333333"]}
    assert "Condition" not in statement


def test_cfn_hub_bus_admits_no_other_account_by_default() -> None:
    assert "HubEventBusPolicy" not in _eventbridge()


@pytest.mark.parametrize("rule", ["HubEventsToWorkQueue", "HubAccountEventsToWorkQueue"])
def test_cfn_event_rules_put_the_contract_events_on_the_work_queue(rule: str) -> None:
    properties = _eventbridge()[rule]["Properties"]
    assert set(properties["EventPattern"]["source"]) == {"aws.drs", "aws.ec2"}
    assert set(properties["EventPattern"]["detail-type"]) == DETAIL_TYPES
    (target,) = properties["Targets"]
    assert target["Arn"] == EVENTBRIDGE_PARAMETERS["WorkQueueArn"]


def test_cfn_forwarded_events_come_from_the_hub_bus_and_the_hubs_own_from_its_default_bus() -> None:
    resources = _eventbridge()
    assert resources["HubEventsToWorkQueue"]["Properties"]["EventBusName"] == "<Ref HubEventBus>"
    assert "EventBusName" not in resources["HubAccountEventsToWorkQueue"]["Properties"]


def test_cfn_work_queue_accepts_only_the_stacks_event_rules() -> None:
    policy = _eventbridge()["WorkQueuePolicy"]["Properties"]
    assert policy["Queues"] == [EVENTBRIDGE_PARAMETERS["WorkQueueUrl"]]
    allow, deny = policy["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        "<GetAtt HubEventsToWorkQueue.Arn>",
        "<GetAtt HubAccountEventsToWorkQueue.Arn>",
    ]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_cfn_master_wires_the_work_queue_into_the_event_stack() -> None:
    passed = load_template("master-template.yaml")["Resources"]["EventBridgeStack"]["Properties"]["Parameters"]
    assert passed["WorkQueueArn"] == {"Fn::GetAtt": ["LambdaStack", "Outputs.WorkQueueArn"]}
    assert passed["WorkQueueUrl"] == {"Fn::GetAtt": ["LambdaStack", "Outputs.WorkQueueUrl"]}
    assert passed["TargetOrganizationId"] == {"Ref": "TargetOrganizationId"}


# ---------------------------------------------------------------------------------------------
# Target accounts: forwarding (StackSet-ready)


@pytest.fixture(scope="module")
def forwarding() -> dict[str, Any]:
    return render(load_template("event-forwarding-target-account.yaml"), {"HubEventBusArn": HUB_BUS}).resources()


def test_cfn_forwarding_rule_sends_the_contract_events_to_the_hub_bus(forwarding: dict[str, Any]) -> None:
    properties = forwarding["ForwardToHub"]["Properties"]
    assert set(properties["EventPattern"]["detail-type"]) == DETAIL_TYPES
    assert "EventBusName" not in properties  # DRS and EC2 publish on the default bus
    (target,) = properties["Targets"]
    assert target["Arn"] == HUB_BUS
    assert target["RoleArn"] == "<GetAtt ForwardingRole.Arn>"


def test_cfn_forwarding_role_may_only_put_events_on_the_hub_bus(forwarding: dict[str, Any]) -> None:
    role = forwarding["ForwardingRole"]
    assert _actions_on(role) == {"events:PutEvents": [HUB_BUS]}
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "111111111111"}}


def test_cfn_forwarding_template_is_stackset_ready() -> None:
    """No fixed names (one instance per account and region) and no account-specific parameter."""
    template = load_template("event-forwarding-target-account.yaml")
    assert set(template["Parameters"]) == {"HubEventBusArn"}
    for logical_id, resource in template["Resources"].items():
        names = [key for node in walk(resource["Properties"]) if isinstance(node, dict) for key in node]
        assert not {"RoleName", "Name"} & set(names), logical_id


# ---------------------------------------------------------------------------------------------
# Alarms


@pytest.mark.parametrize(
    ("alarm", "metric", "queue"),
    [
        pytest.param("WorkDeadLetterAlarm", "ApproximateNumberOfMessagesVisible", "WorkDeadLetterQueueName", id="dlq"),
        pytest.param("WorkQueueAgeAlarm", "ApproximateAgeOfOldestMessage", "WorkQueueName", id="age"),
    ],
)
def test_cfn_work_queue_alarms(alarm: str, metric: str, queue: str) -> None:
    monitoring = load_template("monitoring-stack.yaml")
    properties = monitoring["Resources"][alarm]["Properties"]
    assert (properties["Namespace"], properties["MetricName"]) == ("AWS/SQS", metric)
    assert properties["Dimensions"] == [{"Name": "QueueName", "Value": {"Ref": queue}}]
    assert {"Ref": "AlarmTopic"} in properties["AlarmActions"]
    passed = load_template("master-template.yaml")["Resources"]["MonitoringStack"]["Properties"]["Parameters"]
    assert passed[queue] == {"Fn::GetAtt": ["LambdaStack", f"Outputs.{queue}"]}


# ---------------------------------------------------------------------------------------------
# Fan-out


def test_cfn_data_management_may_enqueue_fanout_scopes_on_the_work_queue() -> None:
    granted = _actions_on(_lambda()["DataManagementHandlerRole"])
    assert "<GetAtt WorkQueue.Arn>" in granted["sqs:SendMessage"]


@pytest.mark.parametrize("function", ["DataManagementFunction", "RefreshFunction"])
def test_cfn_fanout_settings_reach_the_sweep_and_the_workers(function: str) -> None:
    variables = _lambda(SyncFanout="auto")[function]["Properties"]["Environment"]["Variables"]
    assert variables[config.ENV_FANOUT] == "auto"
    assert variables[config.ENV_WORK_QUEUE_URL] == "<Ref WorkQueue>"


# ---------------------------------------------------------------------------------------------
# Deliveries that can fail: every rule target has a retry policy and a dead-letter queue, and the
# rules' failures are alarmed (issue 23)


def _rule_targets(resources: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {k: r["Properties"]["Targets"] for k, r in resources.items() if r["Type"] == "AWS::Events::Rule"}


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param(lambda: _eventbridge(), id="hub-standalone"),
        pytest.param(lambda: _eventbridge(OrchestrationMode="beside"), id="hub-beside"),
        pytest.param(
            lambda: render(
                load_template("event-forwarding-target-account.yaml"), {"HubEventBusArn": HUB_BUS}
            ).resources(),
            id="forwarding",
        ),
    ],
)
def test_cfn_every_rule_target_has_a_retry_policy_and_a_dead_letter_queue(resources: Any) -> None:
    resources = resources()
    targets = _rule_targets(resources)
    assert targets
    for rule, rule_targets in targets.items():
        for target in rule_targets:
            assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1, rule
            queue = target["DeadLetterConfig"]["Arn"].removeprefix("<GetAtt ").removesuffix(".Arn>")
            assert resources[queue]["Type"] == "AWS::SQS::Queue", rule
            # EventBridge may send to the queue only for this stack's rules.
            (policy,) = [
                r["Properties"]
                for r in resources.values()
                if r["Type"] == "AWS::SQS::QueuePolicy" and r["Properties"]["Queues"] == [f"<Ref {queue}>"]
            ]
            (allow,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
            assert allow["Principal"] == {"Service": "events.amazonaws.com"}
            assert f"<GetAtt {rule}.Arn>" in _as_list(allow["Condition"]["ArnEquals"]["aws:SourceArn"])


MONITORING_PARAMETERS = {
    "ProjectName": "p",
    "Environment": "e",
    "ProjectKeyArn": "k",
    "DataManagementFunctionName": "dm",
    "ExecutionFunctionName": "ex",
    "QueryFunctionName": "q",
    "RefreshFunctionName": "refresh-fn",
    "RecoveryInstancesCacheTableName": "c",
    "RecoveryInstanceSyncStatusTableName": "s",
    "RestApiName": "api",
    "ApiStageName": "e",
    "AsyncFailureQueueName": "async",
    "WorkQueueName": "work",
    "WorkDeadLetterQueueName": "work-dlq",
    "HubEventBusName": "bus",
    "EventRuleName": "events-rule",
    "HubAccountEventRuleName": "hub-rule",
}


def _monitoring(**parameters: str) -> dict[str, Any]:
    return render(load_template("monitoring-stack.yaml"), {**MONITORING_PARAMETERS, **parameters}).resources()


@pytest.mark.parametrize("schedule", ["", "schedule-rule"], ids=["beside", "standalone"])
def test_cfn_event_delivery_alarm_watches_every_rule(schedule: str) -> None:
    alarm = _monitoring(ScheduleRuleName=schedule)["EventDeliveryFailuresAlarm"]["Properties"]
    watched = {
        (
            q["MetricStat"]["Metric"]["MetricName"],
            tuple((d["Name"], d["Value"]) for d in q["MetricStat"]["Metric"]["Dimensions"]),
        )
        for q in alarm["Metrics"]
        if "MetricStat" in q
    }
    rules = [(("EventBusName", "bus"), ("RuleName", "events-rule")), (("RuleName", "hub-rule"),)]
    if schedule:
        rules.append((("RuleName", schedule),))
    assert watched == {(metric, rule) for metric in ("FailedInvocations", "InvocationsSentToDlq") for rule in rules}
    (expression,) = [q["Expression"] for q in alarm["Metrics"] if "Expression" in q]
    ids = [q["Id"] for q in alarm["Metrics"] if "MetricStat" in q]
    assert all(f"FILL({i}, 0)" in expression for i in ids)
    assert alarm["AlarmActions"] == ["<Ref AlarmTopic>"]


def test_cfn_refresh_function_errors_are_alarmed_and_on_the_dashboard() -> None:
    resources = _monitoring()
    alarm = resources["HandlerErrorsAlarm"]["Properties"]
    functions = {
        q["MetricStat"]["Metric"]["Dimensions"][0]["Value"]
        for q in alarm["Metrics"]
        if "MetricStat" in q and q["MetricStat"]["Metric"]["MetricName"] == "Errors"
    }
    assert functions == {"dm", "ex", "q", "refresh-fn"}
    (expression,) = [q["Expression"] for q in alarm["Metrics"] if "Expression" in q]
    assert "FILL(refresh, 0)" in expression
    body = resources["Dashboard"]["Properties"]["DashboardBody"]
    assert '["AWS/Lambda", "Errors", "FunctionName", "refresh-fn"' in body
    for alarm_id in ("EventDeliveryFailuresAlarm", "HandlerErrorsAlarm", "WorkDeadLetterAlarm", "WorkQueueAgeAlarm"):
        assert f"<GetAtt {alarm_id}.Arn>" in body, alarm_id
    passed = load_template("master-template.yaml")["Resources"]["MonitoringStack"]["Properties"]["Parameters"]
    assert passed["RefreshFunctionName"] == {"Fn::GetAtt": ["LambdaStack", "Outputs.RefreshFunctionName"]}


# ---------------------------------------------------------------------------------------------
# Every function, everywhere: outputs, --lambda-only, the target role's trust (issue 23)


def test_cfn_master_outputs_every_function_name_and_lambda_only_updates_them_all() -> None:
    functions = [
        k for k, r in load_template("lambda-stack.yaml")["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
    ]
    outputs = load_template("master-template.yaml")["Outputs"]
    named = {key for key in outputs if key.endswith("FunctionName")}
    assert named == {f"{function}Name" for function in functions}
    script = (ROOT / "scripts" / "deploy.sh").read_text(encoding="utf-8")
    (loop,) = re.findall(r"for output_key in ([A-Za-z ]+); do", script)
    assert set(loop.split()) == named


def _deploy_doc_commands(template: str) -> list[str]:
    doc = (ROOT / "docs" / "DEPLOY.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n(.*?)```", doc, re.S)
    return [block for block in blocks if template in block]


def test_cfn_documented_target_role_commands_trust_every_hub_role() -> None:
    """The documented deploy and StackSet commands pass every hub role the target role can trust,
    each the master's output for it: a role left out is AccessDenied for that function's syncs."""
    hub_roles = {name for name in load_template("drs-target-account-role.yaml")["Parameters"] if name.startswith("Hub")}
    assert hub_roles == {"HubDataManagementRoleArn", "HubExecutionRoleArn", "HubRefreshRoleArn"}
    commands = _deploy_doc_commands("drs-target-account-role.yaml")
    assert len(commands) >= 2  # cloudformation deploy and the StackSet
    for command in commands:
        passed = set(re.findall(r"\b(Hub\w+RoleArn)(?:=|,ParameterValue=)arn:", command))
        assert passed == hub_roles, command
    outputs = load_template("master-template.yaml")["Outputs"]
    for role in hub_roles:
        assert role.removeprefix("Hub").replace("RoleArn", "HandlerRoleArn") in outputs, role


def test_cfn_documented_forwarding_stackset_names_the_hub_bus() -> None:
    (command,) = _deploy_doc_commands("event-forwarding-target-account.yaml")
    assert "ParameterKey=HubEventBusArn" in command
    assert "HubEventBusArn" in load_template("master-template.yaml")["Outputs"]
