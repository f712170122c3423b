"""The acceptance path: handlers.data_management.lambda_handler driven with real-shaped API
Gateway, EventBridge and direct events, against the simulator (DRS/EC2/STS) and real DynamoDB
servers. Only the self-invoke is a seam (moto runs Lambda invocations only with docker)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import dependencies
from handlers.data_management import lambda_handler
from handlers.operations import RunFailedError
from syncengine.core.config import SyncSettings
from syncengine.sync.engine import open_runtime
from tests.events_loader import (
    FakeLambdaContext,
    load_event,
    response_headers,
    response_json,
    with_body,
    with_path_parameter,
)
from tests.integration.test_handlers_support import (
    REGION,
    cache,
    endpoint_env,
    estate_settings,
    execution_item,
    job_executions,
    launch_jobs,
    live_instances,
    plan_scenario,
    scan,
    seed_estate,
    seed_plan,
)

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend

DESCRIBE_OPERATIONS = ("DescribeRecoveryInstances", "DescribeSourceServers", "DescribeJobs")
SYNC_EVENT = {"operation": "sync_recovery_instances"}


@dataclass
class SelfInvocations:
    """The self-invoke seam: records what Lambda would have been asked to run."""

    payloads: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, function: str, payload: Any, settings: SyncSettings) -> None:
        self.payloads.append(dict(payload))


@dataclass
class World:
    sim: Any
    settings: SyncSettings
    scenario: dict[str, Any]
    terminate_expected: set[str]
    invocations: SelfInvocations

    @property
    def hub(self) -> str:
        return self.sim.estate.hub_account_id

    @property
    def target(self) -> str:
        return next(a.account_id for a in self.sim.estate.accounts if not a.is_hub)


def invoke(event: Any) -> dict[str, Any]:
    return lambda_handler(event, FakeLambdaContext())


def build_world(ddb: Any, make_simulator: Any) -> Iterator[World]:
    sim = make_simulator(
        accounts=2,
        regions=(REGION,),
        instances_per_scope=20,
        idle_servers_per_scope=2,
        seed=31,
        max_servers_per_job=5,
        drill_fraction=1.0,
    )
    estate_config = estate_settings(ddb, sim)
    hub = sim.estate.hub_account_id
    target = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    # exec-cross: one wave in each account; the other jobs get an execution each.
    cross_jobs = [launch_jobs(sim.estate, hub)[0], launch_jobs(sim.estate, target)[0]]
    crossing = {job["jobID"] for job in cross_jobs}
    executions = [e for e in job_executions(sim.estate) if e["waves"][0]["jobId"] not in crossing]
    executions.append(execution_item("exec-cross", "plan-cross", cross_jobs))
    scenario = plan_scenario(sim.estate)

    async def seed() -> None:
        await seed_estate(estate_config, sim.estate, executions)
        await seed_plan(estate_config, scenario)

    asyncio.run(seed())
    invocations = SelfInvocations()
    dependencies.configure(settings=estate_config, invoke_self=invocations)
    expected = {p["recoveryInstanceID"] for job in cross_jobs for p in job["participatingServers"]}
    try:
        yield World(sim, estate_config, scenario, expected, invocations)
    finally:
        dependencies.reset()


@pytest.fixture
def world(ddb_moto: Any, make_simulator: Any) -> Iterator[World]:
    yield from build_world(ddb_moto, make_simulator)


@pytest.fixture
def world_any_backend(ddb: Any, make_simulator: Any) -> Iterator[World]:
    yield from build_world(ddb, make_simulator)


def full_sync(world: World) -> dict[str, Any]:
    report = invoke(SYNC_EVENT)
    assert report["status"] == "SUCCESS", report
    return report


# -- check existing instances ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["apigw_rest_check_existing", "apigw_http_check_existing"])
def test_handler_check_existing_returns_the_plans_servers_with_instances(world_any_backend: World, name: str) -> None:
    """One explicit and one tag-selected group: exactly their servers that have an instance."""
    world = world_any_backend
    full_sync(world)
    world.sim.calls.reset()

    response = invoke(with_path_parameter(load_event(name), "planId", "plan-mixed"))

    body = response_json(response)
    assert response["statusCode"] == 200
    assert response_headers(response)["content-type"] == "application/json"
    expected = world.scenario["expected"]
    assert {e["sourceServerId"] for e in body["existingInstances"]} == expected
    assert (body["hasExistingInstances"], body["instanceCount"], body["planId"]) == (True, len(expected), "plan-mixed")
    live = live_instances(world.sim.estate)
    for entry in body["existingInstances"]:
        job = live[entry["sourceServerId"]]["jobID"]
        assert entry["sourceExecutionId"] == (
            "exec-cross" if entry["recoveryInstanceId"] in world.terminate_expected else f"exec-{job}"
        )
    assert world.sim.calls.count() == 0


def test_handler_check_existing_unknown_plan_is_404(world: World) -> None:
    response = invoke(with_path_parameter(load_event("apigw_rest_check_existing"), "planId", "no-such-plan"))

    assert response["statusCode"] == 404
    body = response_json(response)
    assert (body["error"], body["planId"]) == ("RECOVERY_PLAN_NOT_FOUND", "no-such-plan")
    assert body["message"]


# -- on-demand and scheduled sync -----------------------------------------------------------------


def test_handler_scoped_sync_post_returns_the_report(world: World) -> None:
    event = with_body(load_event("apigw_rest_sync_scoped"), {"accountId": world.hub, "region": REGION})

    response = invoke(event)

    report = response_json(response)
    assert response["statusCode"] == 200
    assert (report["status"], report["scopesSynced"], report["scopesFailed"]) == ("SUCCESS", 1, 0)
    cached = asyncio.run(cache(world.settings))
    assert set(cached) == set(live_instances(world.sim.estate, world.hub, REGION))


@pytest.mark.parametrize(
    "name", ["apigw_rest_sync_bad_account", "apigw_rest_sync_malformed_json", "apigw_rest_sync_unknown_region"]
)
def test_handler_sync_bad_request_is_400(world: World, name: str) -> None:
    response = invoke(load_event(name))

    body = response_json(response)
    assert response["statusCode"] == 400
    assert body["error"] == "INVALID_REQUEST"
    assert body["message"].endswith(".")
    assert world.sim.calls.count() == 0


def test_handler_full_sync_post_starts_itself_asynchronously(world: World) -> None:
    """202 at once; the queued self-invocation is the sync operation, which then runs in full."""
    response = invoke(load_event("apigw_rest_sync_full"))

    assert response["statusCode"] == 202
    assert response_json(response)["status"] == "STARTED"
    assert world.invocations.payloads == [{**SYNC_EVENT, "trigger": "self-invoke"}]
    assert world.sim.calls.count(service="drs") == 0

    report = invoke(world.invocations.payloads[0])

    assert (report["status"], report["scopesSynced"]) == ("SUCCESS", 2)


def test_handler_full_sync_while_lease_held(world: World) -> None:
    """The API answers 409; the schedule skips cleanly."""

    async def hold_lease() -> None:
        async with open_runtime(world.settings) as rt:
            await rt.status.acquire_full_sync_lease("another-run")

    asyncio.run(hold_lease())

    response = invoke(load_event("apigw_rest_sync_full"))
    scheduled = invoke(load_event("eventbridge_scheduled"))

    assert response["statusCode"] == 409
    assert response_json(response)["error"] == "SYNC_IN_PROGRESS"
    assert world.invocations.payloads == []
    assert (scheduled["status"], scheduled["error"]) == ("SKIPPED", "SYNC_IN_PROGRESS")


def test_handler_scheduled_event_runs_a_full_sync(world: World) -> None:
    report = invoke(load_event("eventbridge_scheduled"))

    assert (report["status"], report["scopesSynced"]) == ("SUCCESS", 2)
    assert len(asyncio.run(cache(world.settings))) == world.sim.estate.total_recovery_instances()


def test_handler_scheduled_run_with_an_unreadable_target_accounts_table_is_a_lambda_error(world: World) -> None:
    """The real engine cannot read its configuration: the scheduled invocation raises (a Lambda
    error the alarms and the failure destination see) instead of returning a body nobody reads."""
    broken = dataclasses.replace(world.settings.tables, target_accounts="no-such-target-accounts-table")
    dependencies.configure(settings=world.settings.with_changes(tables=broken), invoke_self=world.invocations)

    with pytest.raises(RunFailedError, match="ResourceNotFoundException"):
        invoke(load_event("eventbridge_scheduled"))


# -- status and direct operations ------------------------------------------------------------------


def test_handler_status_route_and_direct_status_agree(world: World) -> None:
    full_sync(world)

    response = invoke(load_event("apigw_rest_status"))
    direct = invoke(load_event("direct_status"))

    routed = response_json(response)
    assert response["statusCode"] == 200
    assert routed["status"] == "healthy"
    assert {(s["accountId"], s["region"]) for s in routed["scopes"]} == {(world.hub, REGION), (world.target, REGION)}
    assert "statusCode" not in direct
    assert direct == routed


def test_handler_status_after_a_scoped_sync_keeps_the_full_run_fields(world_any_backend: World) -> None:
    """GET status: the run fields stay the full sync's, the scoped run is lastScopedSync, no stale scope."""
    world = world_any_backend
    full = full_sync(world)
    first = response_json(invoke(load_event("apigw_rest_status")))
    scoped = response_json(
        invoke(with_body(load_event("apigw_rest_sync_scoped"), {"accountId": world.hub, "region": REGION}))
    )

    response = invoke(load_event("apigw_rest_status"))

    body = response_json(response)
    assert response["statusCode"] == 200 and body["status"] == "healthy"
    assert body["lastSyncTime"] == first["lastSyncTime"] == full["finishedAt"]
    assert body["scopesSynced"] == 2 and body["staleScopes"] == 0
    assert body["lastScopedSync"]["runId"] == scoped["runId"]
    assert body["lastScopedSync"]["scopesSynced"] == 1


def test_handler_unknown_operation_is_invalid_operation(world: World) -> None:
    result = invoke(load_event("direct_unknown_operation"))

    assert result["error"] == "INVALID_OPERATION"


# -- terminate -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["apigw_rest_terminate", "apigw_http_terminate"])
def test_handler_terminate_ends_exactly_the_executions_instances(world_any_backend: World, name: str) -> None:
    """Both accounts' instances of the execution, none other, with zero DRS describe calls."""
    world = world_any_backend
    full_sync(world)
    before = asyncio.run(cache(world.settings))
    world.sim.calls.reset()

    response = invoke(with_path_parameter(load_event(name), "executionId", "exec-cross"))

    body = response_json(response)
    assert response["statusCode"] == 200
    assert {t["recoveryInstanceId"] for t in body["terminated"]} == world.terminate_expected
    assert {t["accountId"] for t in body["terminated"]} == {world.hub, world.target}
    assert body["totalFailed"] == 0
    assert sum(world.sim.calls.count(service="drs", operation=op) for op in DESCRIBE_OPERATIONS) == 0
    assert world.sim.calls.count(service="ec2") == 0
    assert all(world.sim.estate.recovery_instance(ri) is None for ri in world.terminate_expected)
    after = asyncio.run(cache(world.settings))
    remaining = {r["recoveryInstanceId"] for r in after.values()}
    assert remaining == {r["recoveryInstanceId"] for r in before.values()} - world.terminate_expected


def test_handler_terminate_twice_finds_nothing_the_second_time(world: World) -> None:
    full_sync(world)
    event = with_path_parameter(load_event("apigw_rest_terminate"), "executionId", "exec-cross")
    invoke(event)

    second = response_json(invoke(event))

    assert second["noInstancesFound"] is True
    assert second["totalFound"] == 0


def test_handler_terminate_unknown_execution_is_404(world: World) -> None:
    response = invoke(with_path_parameter(load_event("apigw_rest_terminate"), "executionId", "exec-nope"))

    assert response["statusCode"] == 404
    assert response_json(response)["error"] == "EXECUTION_NOT_FOUND"


def test_handler_direct_terminate_returns_the_route_body(world: World) -> None:
    full_sync(world)

    result = invoke({"operation": "terminate_recovery_instances", "executionId": "exec-cross"})

    assert result["totalTerminated"] == len(world.terminate_expected)
    assert "statusCode" not in result


def test_handler_terminate_stores_the_caller_on_each_job(world_any_backend: World) -> None:
    """The Cognito sub API Gateway passed is on every job entry of the execution item."""
    world = world_any_backend
    full_sync(world)

    body = response_json(invoke(with_path_parameter(load_event("apigw_rest_terminate"), "executionId", "exec-cross")))

    items = asyncio.run(scan(world.settings, world.settings.tables.execution_history))
    item = next(i for i in items if i["executionId"] == "exec-cross")
    assert {j["jobId"] for j in item["terminateJobs"]} == {j["jobId"] for j in body["jobs"]}
    assert {j["requestedBy"] for j in item["terminateJobs"]} == {"7d5c9a8e-0000-4000-8000-000000000001"}


@pytest.mark.parametrize("name", ["apigw_rest_execution_recovery_instances", "apigw_http_execution_recovery_instances"])
def test_handler_preview_lists_the_executions_instances_without_aws_calls(world_any_backend: World, name: str) -> None:
    world = world_any_backend
    full_sync(world)
    world.sim.calls.reset()

    response = invoke(with_path_parameter(load_event(name), "executionId", "exec-cross"))

    body = response_json(response)
    assert response["statusCode"] == 200
    assert {i["recoveryInstanceId"] for i in body["instances"]} == world.terminate_expected
    assert body["totalInstances"] == len(world.terminate_expected)
    assert world.sim.calls.count() == 0


def test_handler_terminate_running_execution_is_409(world: World) -> None:
    full_sync(world)
    asyncio.run(
        seed_estate(
            world.settings, world.sim.estate, [{**execution_item("exec-live", "plan-live", []), "status": "RUNNING"}]
        )
    )
    world.sim.calls.reset()

    response = invoke(with_path_parameter(load_event("apigw_http_terminate"), "executionId", "exec-live"))

    assert response["statusCode"] == 409
    assert response_json(response)["error"] == "EXECUTION_IN_PROGRESS"
    assert world.sim.calls.count(service="drs") == 0


# -- configuration from the environment ----------------------------------------------------------


def test_handler_reads_settings_from_the_environment(
    ddb_moto: Any, make_simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As deployed: table names and endpoints only from environment variables."""
    sim = make_simulator(accounts=1, regions=(REGION,), instances_per_scope=4, seed=32)
    for name, value in endpoint_env(ddb_moto, sim).items():
        monkeypatch.setenv(name, value)
    asyncio.run(seed_estate(estate_settings(ddb_moto, sim), sim.estate))
    dependencies.reset()
    try:
        report = invoke({**SYNC_EVENT, "accountId": sim.estate.hub_account_id, "region": REGION})
        status = invoke(load_event("apigw_http_status"))
    finally:
        dependencies.reset()

    assert (report["status"], report["instancesUpdated"]) == ("SUCCESS", 4)
    assert response_json(status)["scopes"][0]["instanceCount"] == 4


# -- junk never reaches a 500, with the real engine and DynamoDB ----------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    identifier=st.text(max_size=300) | st.sampled_from(["", " ", "\ud800", "a\x00b", "x" * 3000]),
    route=st.sampled_from(
        [
            ("apigw_rest_check_existing", "planId"),
            ("apigw_rest_terminate", "executionId"),
            ("apigw_http_check_existing", "planId"),
            ("apigw_http_terminate", "executionId"),
        ]
    ),
)
def test_handler_junk_identifiers_never_500(world: World, identifier: str, route: tuple[str, str]) -> None:
    name, parameter = route

    response = invoke(with_path_parameter(load_event(name), parameter, identifier))

    assert response["statusCode"] in (400, 404), response
    assert "Traceback" not in response["body"]
    assert response_json(response)["message"]
