"""The drop-in module against the orchestration as it really is: its items (tests/fixtures/
orchestration.py), its environment variables, its frontend's reads.

The orchestration (``johnjcousens/aws-elasticdrs-orchestrator``) writes target accounts with
``roleArn`` (``DRSOrchestrationRole``), one shared ``externalId`` and no ``regions``; it lists the
regions DRS is used in in its region-status table; its waves are numbered from 0; its execution
lock is a row of the history table. ``recovery_instance_sync`` must sync and answer from that.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import recovery_instance_sync as ris
from handlers import dependencies
from syncengine.core.config import SyncSettings
from tests.fixtures.orchestration import (
    ENV_DRS_REGION_STATUS_TABLE,
    ORCHESTRATION_PROJECT_NAME,
    ORCHESTRATION_ROLE_NAME,
    SHARED_EXTERNAL_ID,
    account_context,
    execution_item,
    execution_lock_item,
    protection_group_item,
    recovery_plan_item,
    region_status_item,
    target_account_item,
)
from tests.integration.test_handlers_support import launch_jobs, put, scan

ROOT = Path(__file__).resolve().parents[2]
SYNCED_REGIONS = ("eu-west-1", "us-east-1")  # serverCount > 0 in the region-status table
IDLE_REGION = "us-west-2"  # DRS has servers there, but the orchestration's table says 0

# Every field the orchestration's frontend reads from each answer (file:line at commit 8857e560).
FRONTEND_READS = {
    # frontend/src/pages/RecoveryPlansPage.tsx:245 (hasExistingInstances, existingInstances),
    # 691/752 (sourceServerName || sourceServerId), 697 (ec2InstanceId), 704-705/733-739
    # (ec2InstanceState === 'running'), 713 (name), 718 (privateIp); services/api.ts:510-524 (region).
    "check_existing": ("hasExistingInstances", "existingInstances", "instanceCount", "planId"),
    "check_existing_instance": (
        "sourceServerId",
        "sourceServerName",
        "recoveryInstanceId",
        "ec2InstanceId",
        "ec2InstanceState",
        "name",
        "privateIp",
        "region",
    ),
    # frontend/src/components/TerminateInstancesDialog.tsx:66-67 (instances), 94 (instanceId),
    # 105 (serverName || hostname), 112/199-201 (region); services/api.ts:655-672.
    "preview": ("instances", "totalInstances", "executionId"),
    "preview_instance": ("instanceId", "serverName", "region", "recoveryInstanceId"),
    # frontend/src/pages/ExecutionDetailsPage.tsx:282 (alreadyTerminated, only when true),
    # 285/293 (totalTerminated), 288-291 (jobs[].jobId, jobs[0].region), 300-301 (totalFailed).
    "terminate": ("totalTerminated", "totalFailed", "jobs"),
    "terminate_job": ("jobId", "region"),
    # frontend/src/pages/ExecutionDetailsPage.tsx:201-207, 459-466 (execution.instancesTerminated).
    "execution_after_terminate": ("instancesTerminated",),
}


@dataclass
class Orchestration:
    sim: Any
    settings: SyncSettings
    env: dict[str, str]
    hub: str
    target: str
    plan_id: str
    execution_id: str
    launched: set[str]


def orchestration_env(ddb: Any, sim: Any, region_status_table: str) -> dict[str, str]:
    """What the orchestration's functions have (cfn/lambda/functions-stack.yaml), plus our two
    tables and the local endpoints. No SYNC_REGIONS: its functions set none."""
    return {
        **ddb.tables.env(),
        ENV_DRS_REGION_STATUS_TABLE: region_status_table,
        "PROJECT_NAME": ORCHESTRATION_PROJECT_NAME,
        "ENVIRONMENT": "test",
        "AWS_ENDPOINT_URL_DRS": sim.endpoint_url,
        "AWS_ENDPOINT_URL_EC2": sim.endpoint_url,
        "AWS_ENDPOINT_URL_STS": sim.endpoint_url,
        "AWS_ENDPOINT_URL_DYNAMODB": ddb.endpoint_url,
        "SYNC_MAX_ATTEMPTS": "3",
    }


def create_region_status_table(endpoint_url: str, name: str) -> None:
    """cfn/dynamodb/tables-stack.yaml DRSRegionStatusTable: key ``region`` (S)."""
    import boto3

    boto3.client("dynamodb", endpoint_url=endpoint_url, region_name="us-east-1").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "region", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "region", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def build(ddb: Any, make_simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Orchestration:
    sim = make_simulator(
        accounts=3,
        regions=(*SYNCED_REGIONS, IDLE_REGION),
        instances_per_scope=6,
        idle_servers_per_scope=1,
        seed=61,
        drill_fraction=1.0,
        max_servers_per_job=3,
        role_name=ORCHESTRATION_ROLE_NAME,
        external_id=SHARED_EXTERNAL_ID,
    )
    hub = sim.estate.hub_account_id
    target = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    region_status_table = f"{ddb.tables.cache}-drs-region-status"
    env = orchestration_env(ddb, sim, region_status_table)
    settings = SyncSettings.from_env(env, endpoint_urls=(("dynamodb", ddb.endpoint_url),))
    jobs = [j for j in launch_jobs(sim.estate, target) if j["region"] == "us-east-1"][:2]
    execution = execution_item("exec-orch-1", "plan-orch-1", account_context(target, hub), jobs)
    servers = [p["sourceServerID"] for job in jobs for p in job["participatingServers"]]
    group = protection_group_item("pg-orch-1", "us-east-1", target, servers)

    create_region_status_table(ddb.endpoint_url, region_status_table)

    async def seed() -> None:
        await put(
            settings,
            region_status_table,
            [
                region_status_item("us-east-1", hub, 6),
                region_status_item("eu-west-1", target, 6),
                region_status_item(IDLE_REGION, target, 0),
            ],
        )
        await put(
            settings,
            settings.tables.target_accounts,
            [target_account_item(a.account_id, hub) for a in sim.estate.accounts],
        )
        await put(settings, settings.tables.execution_history, [execution, execution_lock_item("plan-orch-1")])
        await put(settings, settings.tables.protection_groups, [group])
        await put(settings, settings.tables.recovery_plans, [recovery_plan_item("plan-orch-1", target, [group])])

    asyncio.run(seed())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    launched = {p["recoveryInstanceID"] for job in jobs for p in job["participatingServers"]}
    return Orchestration(sim, settings, env, hub, target, "plan-orch-1", "exec-orch-1", launched)


@pytest.fixture
def orchestration(ddb_moto: Any, make_simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Orchestration]:
    dependencies.reset()
    try:
        yield build(ddb_moto, make_simulator, monkeypatch)
    finally:
        dependencies.reset()


def cached(world: Orchestration) -> dict[str, dict[str, Any]]:
    return {item["sourceServerId"]: item for item in asyncio.run(scan(world.settings, world.settings.tables.cache))}


def live_in(world: Orchestration, regions: tuple[str, ...]) -> set[str]:
    return {
        ri["recoveryInstanceID"]
        for account in world.sim.estate.accounts
        for region in regions
        for ri in world.sim.estate.recovery_instances(account.account_id, region)
    }


def test_dropin_sync_all_in_a_plain_interpreter_syncs_what_the_orchestration_lists(
    orchestration: Orchestration,
) -> None:
    """The acceptance of issue 21: its items, its environment, a plain interpreter: every account
    synced (the role its item names, its shared ExternalId) in the regions its region-status
    table lists with servers, and not in the region it lists with none."""
    world = orchestration
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}, **world.env}
    script = "import json, recovery_instance_sync as r; print(json.dumps(r.sync_all_recovery_instances()))"
    done = subprocess.run(  # noqa: S603 - the test's own interpreter
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])

    assert (answer["status"], answer["errors"]) == ("SUCCESS", [])
    assert answer["regionsScanned"] == len(world.sim.estate.accounts) * len(SYNCED_REGIONS)
    assert answer["instancesUpdated"] == len(live_in(world, SYNCED_REGIONS))
    assert {r["recoveryInstanceId"] for r in cached(world).values()} == live_in(world, SYNCED_REGIONS)
    # One AssumeRole per target account (the hub uses its own credentials), every one accepted
    # by the simulator only for DRSOrchestrationRole and the shared ExternalId.
    assert world.sim.calls.count(service="sts", operation="AssumeRole") == len(world.sim.estate.accounts) - 1
    assert world.sim.calls.count(service="drs", region=IDLE_REGION) == 0


def test_dropin_answers_the_shapes_its_frontend_reads(orchestration: Orchestration) -> None:
    """Check-existing, the preview and terminate as the orchestration's pages read them, and the
    execution item afterwards still serialisable by its Decimal-only JSON encoder."""
    world = orchestration
    assert ris.sync_all_recovery_instances()["status"] == "SUCCESS"

    existing = ris.check_existing_recovery_instances(world.plan_id)
    assert set(FRONTEND_READS["check_existing"]) <= set(existing)
    assert existing["hasExistingInstances"] and existing["instanceCount"] == len(world.launched)
    for entry in existing["existingInstances"]:
        assert set(FRONTEND_READS["check_existing_instance"]) <= set(entry), entry
        assert entry["ec2InstanceState"] in {"running", "stopped"}  # EC2's lower-case names

    preview = ris.get_recovery_instances(world.execution_id)
    assert set(FRONTEND_READS["preview"]) <= set(preview)
    assert {i["recoveryInstanceId"] for i in preview["instances"]} == world.launched
    assert preview["totalInstances"] == len(preview["instances"])
    for entry in preview["instances"]:
        assert set(FRONTEND_READS["preview_instance"]) <= set(entry), entry
        assert entry["instanceId"].startswith("i-") and entry["waveNumber"] in (0, 1)

    body = ris.terminate_recovery_instances(world.execution_id)
    assert set(FRONTEND_READS["terminate"]) <= set(body)
    assert body["totalTerminated"] == len(world.launched) and "alreadyTerminated" not in body
    for job in body["jobs"]:
        assert set(FRONTEND_READS["terminate_job"]) <= set(job)

    ris.sync_all_recovery_instances()
    item = execution_item_as_boto3_reads_it(world)
    json.dumps(item, default=decimal_only)  # the orchestration's DecimalEncoder: a set would raise
    assert set(FRONTEND_READS["execution_after_terminate"]) <= set(item)
    assert item["instancesTerminated"] is True
    assert isinstance(item["terminationInitiatedAt"], Decimal) and isinstance(item["instancesTerminatedAt"], Decimal)


def decimal_only(value: Any) -> Any:
    """lambda/shared/response_utils.py DecimalEncoder.default: Decimal, else TypeError."""
    if isinstance(value, Decimal):
        return int(value) if value % 1 == 0 else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def execution_item_as_boto3_reads_it(world: Orchestration) -> dict[str, Any]:
    import boto3
    from boto3.dynamodb.types import TypeDeserializer

    client = boto3.client("dynamodb", endpoint_url=world.env["AWS_ENDPOINT_URL_DYNAMODB"], region_name="us-east-1")
    raw = client.get_item(
        TableName=world.settings.tables.execution_history,
        Key={"executionId": {"S": world.execution_id}, "planId": {"S": world.plan_id}},
    )["Item"]
    return {k: TypeDeserializer().deserialize(v) for k, v in raw.items()}


def test_dropin_seed_functions_answer_the_seeds_shapes(orchestration: Orchestration) -> None:
    """The seed's other four functions, with the orchestration's account context."""
    world = orchestration
    context = account_context(world.target, world.hub)

    result = ris.sync_recovery_instances_for_account(world.target, "us-east-1", context)
    assert result["errors"] == [] and result["instancesUpdated"] == len(
        {ri["recoveryInstanceID"] for ri in world.sim.estate.recovery_instances(world.target, "us-east-1")}
    )

    records = ris.get_recovery_instances_for_region(world.target, "us-east-1", context)
    assert {r["recoveryInstanceId"] for r in records} == {
        ri["recoveryInstanceID"] for ri in world.sim.estate.recovery_instances(world.target, "us-east-1")
    }
    assert all(
        {"sourceServerId", "ec2InstanceId", "ec2InstanceState", "accountId", "region"} <= set(r) for r in records
    )

    record = next(r for r in records if r["recoveryInstanceId"] in world.launched)
    assert ris.find_source_execution(record["sourceServerId"]) == {
        "executionId": world.execution_id,
        "planName": "plan plan-orch-1",
        "attribution": "job",
    }
    assert ris.find_source_execution("s-0000000000000dead") == {}

    details = ris.enrich_with_ec2_details(record["ec2InstanceId"], "us-east-1", world.target, context)
    ec2 = world.sim.estate.ec2_instance(record["ec2InstanceId"])
    assert (details["InstanceType"], details["PrivateIpAddress"]) == (ec2["InstanceType"], ec2["PrivateIpAddress"])
    assert ris.enrich_with_ec2_details("i-0000000000000dead", "us-east-1", world.target, context) == {
        "Name": "Recovery instance i-0000000000000dead",
        "InstanceType": "unknown",
    }

    status = ris.get_recovery_instance_sync_status()
    assert {"lastSyncTime", "instancesUpdated", "errors", "status"} <= set(status)
    assert status["status"] == "no_sync_yet"  # scoped syncs never stand for the full one


def test_dropin_errors_carry_the_status_and_body_its_handlers_answer(orchestration: Orchestration) -> None:
    world = orchestration

    with pytest.raises(ris.RecoveryInstanceSyncNotFoundError) as missing_plan:
        ris.check_existing_recovery_instances("no-such-plan")
    assert (missing_plan.value.status_code, missing_plan.value.body["error"]) == (404, "RECOVERY_PLAN_NOT_FOUND")

    with pytest.raises(ris.RecoveryInstanceSyncNotFoundError) as missing_execution:
        ris.get_recovery_instances("no-such-execution")
    assert missing_execution.value.body["error"] == "EXECUTION_NOT_FOUND"

    running = {**execution_item("exec-running", "plan-orch-1", account_context(world.target, world.hub), [])}
    running["status"] = "POLLING"  # start_wave_recovery's status while a wave runs
    asyncio.run(put(world.settings, world.settings.tables.execution_history, [running]))
    with pytest.raises(ris.RecoveryInstanceSyncConflictError) as in_progress:
        ris.terminate_recovery_instances("exec-running")
    assert in_progress.value.status_code == 409
    assert (in_progress.value.body["error"], in_progress.value.body["executionStatus"]) == (
        "EXECUTION_IN_PROGRESS",
        "POLLING",
    )

    with pytest.raises(ris.RecoveryInstanceSyncValidationError) as bad:
        ris.terminate_recovery_instances(world.execution_id, include_non_drill="yes")  # type: ignore[arg-type]
    assert bad.value.status_code == 400 and bad.value.body["message"]
    with pytest.raises(ris.RecoveryInstanceSyncValidationError):
        ris.sync_recovery_instances_for_account("12345", "us-east-1")
    assert all(issubclass(e, ris.RecoveryInstanceSyncError) for e in (ris.RecoveryInstanceSyncTimeoutError,))


def test_dropin_wave_zero_of_an_orchestration_execution_syncs_its_servers(orchestration: Orchestration) -> None:
    """A started wave keeps no protectionGroupId and is numbered from 0: the wave hook's event
    (docs/INTEGRATION.md) syncs exactly its servers, in the account the execution names."""
    from handlers.execution import lambda_handler as execution_handler
    from tests.integration.test_handlers_execution import FakeLambdaContext

    world = orchestration
    event = {"operation": "wave_completed", "executionId": world.execution_id, "planId": world.plan_id, "waveNumber": 0}

    result = execution_handler(event, FakeLambdaContext())

    assert result["status"] == "SYNCED", result
    execution = execution_item_as_boto3_reads_it(world)
    wave_zero = {s["recoveryInstanceId"] for s in execution["waves"][0]["serverStatuses"]}
    assert {c["recoveryInstanceId"] for c in cached(world).values()} == wave_zero
    assert wave_zero < world.launched
