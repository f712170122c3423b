"""Security against real servers: ExternalId on every AssumeRole, no secret in any log line of a
real sync, ids validated before any call, and DynamoDB expressions built only from ``#name`` /
``:value`` placeholders (inspected on the wire through the fault proxy's request recording)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from devtools.faultproxy import DynamoFaultProxy, RecordedRequest
from syncengine.aws.sessions import SessionPurpose
from syncengine.core.errors import AccessDeniedError, InvalidRequestError
from syncengine.core.logging import configure_logging
from syncengine.core.models import RunStatus
from syncengine.core.retry import CallContext
from syncengine.plans.check_existing import check_existing_instances
from syncengine.refresh.waves import sync_wave
from syncengine.sync.engine import (
    get_cached_records,
    get_records_by_execution,
    get_sync_status,
    open_runtime,
    sync_all,
    sync_scope,
)
from syncengine.tables.accounts import load_targets
from syncengine.terminate.instances import terminate_execution_instances
from tests.fixtures.simulator import HUB_SECRET_ACCESS_KEY, NO_RETRY, client_kwargs
from tests.integration.engine_support import cache_items, engine_settings, seed
from tests.integration.test_handlers_support import (
    execution_item,
    launch_jobs,
    plan_scenario,
    seed_estate,
    seed_plan,
)

ESTATE: dict[str, Any] = {"accounts": 3, "regions": ("us-east-1", "eu-west-1"), "instances_per_scope": 6}
NOISY_LOGGERS = ("botocore", "aiobotocore", "aiohttp", "urllib3")


# -- ExternalId ------------------------------------------------------------------------------------


@pytest.mark.parametrize("external_id", [pytest.param(None, id="missing"), pytest.param("wrong", id="wrong")])
def test_simulated_sts_refuses_assume_role_without_the_right_external_id(make_simulator, external_id) -> None:
    """The fake enforces the trust policy's ExternalId condition, so an engine that forgot it fails."""
    sim = make_simulator(seed=71, **ESTATE)
    target = next(a for a in sim.estate.accounts if not a.is_hub)
    sts = boto3.client("sts", config=NO_RETRY, **client_kwargs(sim))
    params: dict[str, Any] = {"RoleArn": target.role_arn, "RoleSessionName": "security-test"}
    if external_id is not None:
        params["ExternalId"] = external_id

    with pytest.raises(ClientError) as caught:
        sts.assume_role(**params)

    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    granted = sts.assume_role(**{**params, "ExternalId": target.external_id})
    assert granted["Credentials"]["SessionToken"]


async def test_sync_all_passes_each_accounts_external_id(ddb_moto, make_simulator) -> None:
    """Every target account is assumed successfully, once, so the engine sent the right ExternalId."""
    sim = make_simulator(seed=72, **ESTATE)
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)

    report = await sync_all(settings)

    targets = [a.account_id for a in sim.estate.accounts if not a.is_hub]
    assert report.status is RunStatus.SUCCESS
    assert sim.calls.count(service="sts", operation="AssumeRole", outcome="Success") == len(targets)
    assert sim.calls.count(service="sts", operation="AssumeRole") == len(targets)
    for account_id in targets:
        assert sim.calls.count(service="drs", account_id=account_id, outcome="Success") > 0


async def test_sync_all_uses_the_external_id_from_the_target_accounts_table(ddb_moto, make_simulator) -> None:
    """The ExternalId sent is the table's: a wrong one in the item is refused, a removed one is not
    invented; the account with the right one still syncs."""
    sim = make_simulator(seed=73, **ESTATE)
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)
    wrong, missing = [a.account_id for a in sim.estate.accounts if not a.is_hub]
    async with open_runtime(settings) as rt:
        table = settings.tables.target_accounts
        await rt.dynamo.call(
            "update_item",
            TableName=table,
            Key={"accountId": {"S": wrong}},
            UpdateExpression="SET #ext = :ext",
            ExpressionAttributeNames={"#ext": "externalId"},
            ExpressionAttributeValues={":ext": {"S": "not-the-external-id"}},
        )
        await rt.dynamo.call(
            "update_item",
            TableName=table,
            Key={"accountId": {"S": missing}},
            UpdateExpression="REMOVE #ext",
            ExpressionAttributeNames={"#ext": "externalId"},
        )

    report = await sync_all(settings)

    failed = {(e.account_id, e.error_type) for e in report.errors}
    assert failed == {(wrong, "AccessDenied"), (missing, "AccessDenied")}
    assert report.scopes_synced == 2  # the hub's two regions


# -- least privilege per session -------------------------------------------------------------------


def policy_actions(policy: str | None) -> set[str]:
    assert policy is not None, "every AssumeRole passes a session policy"
    document = json.loads(policy)
    return {
        a for st in document["Statement"] for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    }


async def test_sync_sessions_are_describe_only_and_named_after_caller_and_purpose(ddb_moto, make_simulator) -> None:
    """Each sync AssumeRole passes a describe-only session policy and a session name that says
    who and why (``ris-<function>-sync``), so CloudTrail names the caller."""
    sim = make_simulator(seed=74, **ESTATE)
    settings = engine_settings(ddb_moto, sim, caller="drs-orchestration-refresh-prod")
    await seed(settings, sim.estate)

    report = await sync_all(settings)

    assert report.status is RunStatus.SUCCESS
    assumed = sim.credentials.assumed_roles()
    assert len(assumed) == 2
    for role in assumed:
        assert role.session_name == "ris-drs-orchestration-refresh-prod-sync"
        actions = policy_actions(role.policy)
        assert actions and all(a.split(":")[1].startswith("Describe") for a in actions)


async def test_sync_session_cannot_terminate_and_terminate_session_is_apart(ddb_moto, make_simulator) -> None:
    """The session policy is enforced (effective permissions are the intersection): a sync
    session's TerminateRecoveryInstances is denied even though the role allows it; the terminate
    path's session, cached apart in the same run, is named apart and may terminate."""
    sim = make_simulator(seed=75, **ESTATE)
    settings = engine_settings(ddb_moto, sim, caller="data-management")
    await seed(settings, sim.estate)
    account = next(a for a in sim.estate.accounts if not a.is_hub)
    victim = next(iter(sim.estate.recovery_instances(account.account_id, "us-east-1")))["recoveryInstanceID"]

    async with open_runtime(settings) as rt:
        (target,) = [t for t in await load_targets(rt.aws, rt.dynamo, settings) if t.account_id == account.account_id]
        sync_drs = await rt.aws.client("drs", "us-east-1", target)
        with pytest.raises(AccessDeniedError):
            await rt.aws.call(
                sync_drs,
                "terminate_recovery_instances",
                CallContext("drs:TerminateRecoveryInstances", account.account_id, "us-east-1"),
                recoveryInstanceIDs=[victim],
            )
        terminate_drs = await rt.aws.client("drs", "us-east-1", target, SessionPurpose.TERMINATE)
        answer = await rt.aws.call(
            terminate_drs,
            "terminate_recovery_instances",
            CallContext("drs:TerminateRecoveryInstances", account.account_id, "us-east-1"),
            recoveryInstanceIDs=[victim],
        )

    assert answer["job"]["jobID"]
    names = [r.session_name for r in sim.credentials.assumed_roles()]
    assert names == ["ris-data-management-sync", "ris-data-management-terminate"]
    terminate_policy = policy_actions(sim.credentials.assumed_roles()[1].policy)
    assert "drs:TerminateRecoveryInstances" in terminate_policy
    assert "drs:TerminateRecoveryInstances" not in policy_actions(sim.credentials.assumed_roles()[0].policy)


# -- secrets in logs -------------------------------------------------------------------------------


class IssuedSecrets:
    """Wraps the simulator's credential store to remember every secret it hands out."""

    def __init__(self, sim: Any) -> None:
        self.values: list[str] = []
        store = sim.credentials
        issue = store.issue

        def recording_issue(*args: Any, **kwargs: Any) -> Any:
            session = issue(*args, **kwargs)
            self.values += [session.secret_access_key, session.session_token]
            return session

        store.issue = recording_issue


def assert_no_secret(text: str, secrets: list[str]) -> None:
    assert "Signature=" not in text
    assert HUB_SECRET_ACCESS_KEY not in text
    for secret in secrets:
        assert secret not in text, "an issued secret key or session token reached the logs"


async def test_no_secret_reaches_the_logs_of_a_real_sync(
    ddb_moto, make_simulator, restored_logging, capsys, caplog
) -> None:
    """A DEBUG sync with failures on the way (a denied account, throttling, expired sessions): neither
    the structlog events nor the rendered stderr nor stdlib logging show a secret key, a session
    token or a signature."""
    # Configured here, not in a fixture: the JSON lines must go to the stderr capsys captures.
    configure_logging(json=True, level="DEBUG", force=True)
    caplog.set_level(logging.DEBUG)
    sim = make_simulator(seed=74, **ESTATE)
    issued = IssuedSecrets(sim)
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)
    denied = next(a.account_id for a in sim.estate.accounts if not a.is_hub)

    with capture_logs() as events:
        await sync_all(settings)
    sim.set_faults(throttleRate=0.3, accessDeniedAccounts=[denied], retryAfterSeconds=0)
    await sync_all(settings)
    sim.set_faults(throttleRate=0.0, accessDeniedAccounts=[])
    sim.expire_credentials()
    await sync_all(settings)

    assert len(issued.values) >= 2, "the syncs assumed roles"
    assert events, "capture_logs saw the first sync"
    rendered = capsys.readouterr()
    assert '"event": "sync_finished"' in rendered.err
    assert_no_secret(repr(events), issued.values)
    assert_no_secret(rendered.err + rendered.out, issued.values)
    assert_no_secret(caplog.text, issued.values)


# -- ids validated before any call -------------------------------------------------------------------


@pytest.mark.parametrize(
    "server_ids",
    [
        pytest.param(["not-a-server"], id="no-prefix"),
        pytest.param(["s-123"], id="too-short"),
        pytest.param(["s-0123456789abcdef0\n"], id="trailing-newline"),
        pytest.param(["i-0123456789abcdef0"], id="instance-id"),
        pytest.param([""], id="empty"),
    ],
)
async def test_sync_scope_rejects_malformed_server_ids_before_any_call(ddb_moto, make_simulator, server_ids) -> None:
    """A wave's server ids are input: a malformed one is refused (InvalidRequestError), not sent to DRS."""
    sim = make_simulator(seed=75, **ESTATE)
    settings = engine_settings(ddb_moto, sim)
    await seed(settings, sim.estate)
    sim.calls.reset()

    with pytest.raises(InvalidRequestError):
        await sync_scope(settings, sim.estate.hub_account_id, "us-east-1", server_ids)

    assert sim.calls.count(service="drs") == 0


# -- DynamoDB expressions ---------------------------------------------------------------------------

EXPRESSION_KEYS = (
    "KeyConditionExpression",
    "ConditionExpression",
    "UpdateExpression",
    "ProjectionExpression",
    "FilterExpression",
)
# What an expression may contain besides placeholders: keywords, functions, operators.
KEYWORDS = {"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE"}
FUNCTIONS = {
    "attribute_exists",
    "attribute_not_exists",
    "attribute_type",
    "begins_with",
    "contains",
    "size",
    "if_not_exists",
    "list_append",
}
TOKEN = re.compile(r"\s*(#\w+|:\w+|[A-Za-z_]\w*|<>|<=|>=|[=<>(),+\-.\[\]]|\d+|\S)")


def expression_problems(request: RecordedRequest) -> list[str]:
    """Everything in a request's expressions that is not a placeholder, keyword or operator, and
    every placeholder that is used but not defined or defined but not used."""
    problems: list[str] = []
    parts = [request.body]
    parts += [spec for spec in (request.body.get("RequestItems") or {}).values() if isinstance(spec, dict)]
    for part in parts:
        names = set(part.get("ExpressionAttributeNames") or {})
        values = set(part.get("ExpressionAttributeValues") or {})
        used: set[str] = set()
        for key in EXPRESSION_KEYS:
            expression = part.get(key)
            if expression is None:
                continue
            previous = ""
            for token in TOKEN.findall(expression):
                if token.startswith(("#", ":")):
                    used.add(token)
                    if token not in (names if token.startswith("#") else values):
                        problems.append(f"{request.operation}.{key}: {token} is not defined")
                elif token.isdigit():
                    if previous != "[":
                        problems.append(f"{request.operation}.{key}: literal number {token!r}")
                elif re.fullmatch(r"[A-Za-z_]\w*", token):
                    if token.upper() not in KEYWORDS and token not in FUNCTIONS:
                        problems.append(f"{request.operation}.{key}: bare name {token!r} in {expression!r}")
                elif token not in {"=", "<>", "<", "<=", ">", ">=", "(", ")", ",", "+", "-", "[", "]", "."}:
                    problems.append(f"{request.operation}.{key}: unexpected {token!r} in {expression!r}")
                previous = token
        unused = (names | values) - used
        if unused:
            problems.append(f"{request.operation}: defined but unused {sorted(unused)}")
    return problems


def test_expression_checker_flags_literals_and_bare_names() -> None:
    """The checker itself: placeholders pass; inlined values and attribute names do not."""
    good = RecordedRequest(
        "Query",
        {
            "KeyConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "a"},
            "ExpressionAttributeValues": {":s": {"S": "x"}},
        },
    )
    inlined = RecordedRequest("Query", {"KeyConditionExpression": "scopeKey = 'x' AND n > 5"})
    unused = RecordedRequest(
        "GetItem", {"ProjectionExpression": "#a", "ExpressionAttributeNames": {"#a": "a", "#b": "b"}}
    )
    assert expression_problems(good) == []
    assert len(expression_problems(inlined)) >= 3
    assert expression_problems(unused) == ["GetItem: defined but unused ['#b']"]


@pytest.fixture
async def recording_proxy(ddb_moto) -> AsyncIterator[DynamoFaultProxy]:
    async with DynamoFaultProxy(ddb_moto.endpoint_url, record=True) as proxy:
        yield proxy


async def test_every_dynamodb_expression_uses_only_placeholders(ddb_moto, make_simulator, recording_proxy) -> None:
    """Every DynamoDB request of every engine path (full, scoped and wave syncs with writes and
    deletes, leases, status, batch reads, the execution index, check-existing, terminate) names
    attributes only as #name and values only as :value."""
    sim = make_simulator(seed=76, accounts=2, regions=("us-east-1",), instances_per_scope=8, idle_servers_per_scope=2)
    direct = engine_settings(ddb_moto, sim)
    hub = sim.estate.hub_account_id
    job = launch_jobs(sim.estate, hub)[0]
    await seed_estate(direct, sim.estate, [execution_item("exec-sec", "plan-sec", [job])])
    await seed_plan(direct, plan_scenario(sim.estate))
    urls = tuple((s, recording_proxy.endpoint_url if s == "dynamodb" else u) for s, u in direct.endpoint_urls)
    settings = direct.with_changes(endpoint_urls=urls)

    await sync_all(settings)
    live = sim.estate.recovery_instances(hub, "us-east-1")
    sim.estate.terminate(live[0]["recoveryInstanceID"])
    sim.estate.update_ec2(live[1]["ec2InstanceID"], private_ip="10.9.9.9")
    await sync_all(settings)
    await sync_all(settings, account_id=hub, region="us-east-1")
    await sync_scope(settings, hub, "us-east-1", [live[1]["sourceServerID"], live[0]["sourceServerID"]])
    await sync_wave(settings, "exec-sec", "plan-sec", wave_number=1)
    await get_sync_status(settings)
    await get_cached_records(settings, [ri["sourceServerID"] for ri in live])
    await get_records_by_execution(settings, "exec-sec")
    await check_existing_instances(settings, "plan-mixed")
    await terminate_execution_instances(settings, "exec-sec")

    recorded = recording_proxy.recorded
    operations = {r.operation for r in recorded}
    assert {"Query", "BatchWriteItem", "BatchGetItem", "UpdateItem", "PutItem", "DeleteItem"} <= operations
    with_expressions = [
        r
        for r in recorded
        if any(k in r.body for k in EXPRESSION_KEYS)
        or any(isinstance(s, dict) and "ProjectionExpression" in s for s in (r.body.get("RequestItems") or {}).values())
    ]
    assert len(with_expressions) >= 10
    problems = [p for r in recorded for p in expression_problems(r)]
    assert problems == []
    assert await cache_items(direct)  # the paths above really ran against the tables
