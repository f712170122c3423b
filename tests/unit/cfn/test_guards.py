"""Least privilege and operational guards, on the rendered templates (tests/cfn_render.py):
AssumeRole bounded to the organization or listed accounts, no write on an index, Scan only
where a table is listed, termination opt-in per target account, partition-built ARNs, reserved
concurrency, failure destinations of asynchronous invocations and the schedule's DLQ."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.cfn_render import render
from tests.cfn_yaml import CFN_DIR, load_template, walk
from tests.unit.cfn.test_existing_orchestration import LAMBDA_PARAMETERS, _database

ROLES = ("DataManagementHandlerRole", "ExecutionHandlerRole", "QueryHandlerRole")
WRITE = re.compile(r"dynamodb:(Put|Update|Delete|BatchWrite|TransactWrite)")


def _lambda(**parameters: str) -> dict[str, Any]:
    declared = load_template("lambda-stack.yaml")["Parameters"]
    tables = {name: value for name, value in _database({})[1].items() if name in declared}
    return render(load_template("lambda-stack.yaml"), {**LAMBDA_PARAMETERS, **tables, **parameters}).resources()


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _assume(resources: dict[str, Any], role: str) -> dict[str, Any]:
    (statement,) = [s for s in _statements(resources[role]) if "sts:AssumeRole" in _as_list(s["Action"])]
    return statement


@pytest.mark.parametrize("role", ["DataManagementHandlerRole", "ExecutionHandlerRole"])
@pytest.mark.parametrize(
    ("parameters", "condition"),
    [
        pytest.param(
            {"TargetOrganizationId": "o-abcdefghij"},
            {"StringEquals": {"aws:ResourceOrgID": "o-abcdefghij"}},
            id="organization",
        ),
        pytest.param(
            {"TargetAccountIds": "222222222222,333333333333"},
            {"StringEquals": {"aws:ResourceAccount": ["222222222222", "333333333333"]}},
            id="accounts",
        ),
        pytest.param({}, {"StringEquals": {"aws:ResourceAccount": ["111111111111"]}}, id="hub-only"),
    ],
)
def test_cfn_assume_role_is_bounded(role: str, parameters: dict[str, str], condition: dict[str, Any]) -> None:
    assert _assume(_lambda(**parameters), role)["Condition"] == condition


@pytest.mark.parametrize("role", ROLES)
def test_cfn_no_write_on_an_index(role: str) -> None:
    for statement in _statements(_lambda()[role]):
        if any("/index/" in str(resource) for resource in _as_list(statement["Resource"])):
            assert _as_list(statement["Action"]) == ["dynamodb:Query"], statement


@pytest.mark.parametrize("role", ROLES)
def test_cfn_scan_only_on_listed_tables(role: str) -> None:
    """Scan where the code lists a table (target accounts, the execution index); nowhere else."""
    for statement in _statements(_lambda()[role]):
        if "dynamodb:Scan" in _as_list(statement["Action"]):
            assert _as_list(statement["Resource"]) in (
                ["<GetAtt TargetAccountsTable.Arn>"],
                ["<GetAtt ExecutionHistoryTable.Arn>"],
            ), statement


def test_cfn_sync_roles_may_list_enabled_regions() -> None:
    resources = _lambda()
    for role in ("DataManagementHandlerRole", "ExecutionHandlerRole"):
        actions = {a for s in _statements(resources[role]) for a in _as_list(s["Action"])}
        assert {"ec2:DescribeRegions", "drs:DescribeJobs"} <= actions, role


def _target_role_actions(**parameters: str) -> set[str]:
    values = {"HubDataManagementRoleArn": "arn:aws:iam::111111111111:role/x", "ExternalId": "ext-1", **parameters}
    role = render(load_template("drs-target-account-role.yaml"), values).resources()["DrsTargetAccountRole"]
    return {a for s in _statements(role) for a in _as_list(s["Action"])}


def test_cfn_target_role_termination_is_opt_in() -> None:
    read_only = _target_role_actions()
    assert not {a for a in read_only if "Terminate" in a or "Delete" in a}
    assert {"drs:DescribeJobs", "ec2:DescribeRegions"} <= read_only
    assert {"drs:TerminateRecoveryInstances", "ec2:TerminateInstances"} <= _target_role_actions(AllowTermination="true")


@pytest.mark.parametrize("name", sorted(path.name for path in CFN_DIR.glob("*.yaml")))
def test_cfn_arns_are_built_from_the_partition(name: str) -> None:
    """No literal arn:aws: outside a parameter's pattern: GovCloud and China have their own."""
    template = load_template(name)
    for node in walk({key: value for key, value in template.items() if key != "Parameters"}):
        if isinstance(node, str):
            assert "arn:aws:" not in node, (name, node[:120])


@pytest.mark.parametrize(
    ("function", "parameter", "default"),
    [
        ("DataManagementFunction", "DataManagementReservedConcurrency", 5),
        ("ExecutionFunction", "ExecutionReservedConcurrency", 10),
        ("QueryFunction", "QueryReservedConcurrency", 20),
    ],
)
def test_cfn_reserved_concurrency(function: str, parameter: str, default: int) -> None:
    assert _lambda()[function]["Properties"]["ReservedConcurrentExecutions"] == default
    assert "ReservedConcurrentExecutions" not in _lambda(**{parameter: "-1"})[function]["Properties"]


@pytest.mark.parametrize("function", ["DataManagementFunction", "ExecutionFunction"])
def test_cfn_async_invocations_have_a_failure_destination(function: str) -> None:
    configs = [
        r["Properties"]
        for r in _lambda().values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig" and r["Properties"]["FunctionName"] == f"<Ref {function}>"
    ]
    (config,) = configs
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == "<GetAtt AsyncFailureQueue.Arn>"
    assert config["MaximumRetryAttempts"] <= 1


def test_cfn_schedule_target_has_retry_policy_and_dlq() -> None:
    template = load_template("eventbridge-stack.yaml")
    parameters = {
        "ProjectName": "p",
        "Environment": "e",
        "DataManagementFunctionArn": "f",
        "WorkQueueArn": "q",
        "WorkQueueUrl": "u",
    }
    resources = render(template, parameters).resources()
    (target,) = resources["RecoveryInstanceSyncSchedule"]["Properties"]["Targets"]
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 300, "MaximumRetryAttempts": 2}
    assert target["DeadLetterConfig"]["Arn"] == "<GetAtt ScheduleDeadLetterQueue.Arn>"
    (allow, _deny) = resources["ScheduleDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": "<GetAtt RecoveryInstanceSyncSchedule.Arn>"}}
