"""Shared setup of the handler, check-existing and terminate integration tests (no tests here):
settings pointing at a simulator and a DynamoDB backend, the orchestration's items built from
the simulated estate, and whole-table reads (tests may scan; the engine never does)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from devtools.seed import put_items
from syncengine.core.config import RetrySettings, SyncSettings
from syncengine.sync.engine import open_runtime
from tests.integration.engine_support import engine_settings

__test__ = False  # helpers only: keep pytest from collecting this module

FAST_RETRY = RetrySettings(max_attempts=6, base_delay=0.01, max_delay=0.2)


def estate_settings(ddb: Any, sim: Any, **overrides: Any) -> SyncSettings:
    """Settings for the tables of ``ddb`` and the simulator's DRS/EC2/STS."""
    return engine_settings(ddb, sim, **{"retry": FAST_RETRY, **overrides})


def endpoint_env(ddb: Any, sim: Any) -> dict[str, str]:
    """The environment a deployed function would have, pointed at the local fakes."""
    return {
        **ddb.env(),
        "AWS_ENDPOINT_URL_DRS": sim.endpoint_url,
        "AWS_ENDPOINT_URL_EC2": sim.endpoint_url,
        "AWS_ENDPOINT_URL_STS": sim.endpoint_url,
        "SYNC_REGIONS": ",".join(sorted({r for a in sim.estate.accounts for r in a.regions})),
        "SYNC_MAX_ATTEMPTS": "6",
    }


def target_account_items(estate: Any) -> list[dict[str, Any]]:
    """The hub is the current account (own credentials); every other account has a role
    (``roleArn``: the field sync reads first) and an external id."""
    items = []
    for account in estate.accounts:
        item: dict[str, Any] = {
            "accountId": account.account_id,
            "accountName": account.name,
            "status": "active",
            "regions": list(account.regions),
        }
        if account.is_hub:
            item["isCurrentAccount"] = True
        else:
            item.update(roleArn=account.role_arn, externalId=account.external_id)
        items.append(item)
    return items


def launch_jobs(estate: Any, account_id: str | None = None) -> list[dict[str, Any]]:
    """LAUNCH jobs of the estate, each with its ``accountId`` and ``region``."""
    return [
        {**job, "accountId": account.account_id, "region": region}
        for account in estate.accounts
        if account_id is None or account.account_id == account_id
        for region in account.regions
        for job in estate.jobs(account.account_id, region)
        if job.get("type") == "LAUNCH"
    ]


def execution_item(execution_id: str, plan_id: str, jobs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """An execution whose waves are the given launch jobs (one wave each, with its jobId)."""
    waves = []
    for number, job in enumerate(jobs, start=1):
        waves.append(
            {
                "waveNumber": number,
                "waveName": f"Wave {number}",
                "protectionGroupId": f"pg-{execution_id}-{number}",
                "region": job["region"],
                "accountId": job["accountId"],
                "jobId": job["jobID"],
                "status": "COMPLETED",
                "serverStatuses": [
                    {
                        "sourceServerId": p["sourceServerID"],
                        "recoveryInstanceId": p.get("recoveryInstanceID"),
                        "launchStatus": p.get("launchStatus", "LAUNCHED"),
                    }
                    for p in job.get("participatingServers", [])
                ],
            }
        )
    first = next(iter(waves), {})
    return {
        "executionId": execution_id,
        "planId": plan_id,
        "planName": f"Plan {plan_id}",
        "executionType": "DRILL",
        "status": "COMPLETED",
        "startTime": 1_750_000_000,
        "accountId": first.get("accountId", ""),
        "waves": waves,
    }


def job_executions(estate: Any) -> list[dict[str, Any]]:
    """One execution per launch job (``exec-<jobID>``), so every instance has a source execution."""
    return [execution_item(f"exec-{job['jobID']}", "plan-history", [job]) for job in launch_jobs(estate)]


async def put(settings: SyncSettings, table: str, items: Iterable[Mapping[str, Any]]) -> None:
    async with open_runtime(settings) as rt:
        await put_items(rt.dynamo, table, items)


async def seed_estate(settings: SyncSettings, estate: Any, executions: Iterable[Mapping[str, Any]] = ()) -> None:
    await put(settings, settings.tables.target_accounts, target_account_items(estate))
    await put(settings, settings.tables.execution_history, executions)


async def scan(settings: SyncSettings, table: str) -> list[dict[str, Any]]:
    async with open_runtime(settings) as rt:
        return await rt.dynamo.scan_all(table)


async def cache(settings: SyncSettings) -> dict[str, dict[str, Any]]:
    return {item["sourceServerId"]: item for item in await scan(settings, settings.tables.cache)}


def live_instances(estate: Any, account_id: str | None = None, region: str | None = None) -> dict[str, dict]:
    """sourceServerId -> the recovery instance DRS reports for it."""
    return {ri["sourceServerID"]: ri for ri in estate.recovery_instances(account_id, region)}


# -- a recovery plan over the estate -----------------------------------------------------------------

REGION = "us-east-1"


def plan_scenario(estate: Any, plan_id: str = "plan-mixed") -> dict[str, Any]:
    """A plan with one explicit protection group (a target account's servers: three with a
    recovery instance, the idle ones without) and one tag-selected group (the hub's servers of
    one application). Returns the items to seed and the servers the check must report."""
    hub = estate.hub_account_id
    target = next(a.account_id for a in estate.accounts if a.account_id != hub)
    target_live = sorted(live_instances(estate, target, REGION))
    target_idle = sorted(
        s["sourceServerID"] for s in estate.source_servers(target, REGION) if s["sourceServerID"] not in target_live
    )
    hub_servers = {s["sourceServerID"]: s for s in estate.source_servers(hub, REGION)}
    hub_live = live_instances(estate, hub, REGION)
    application = sorted(hub_servers[sid]["tags"]["Application"] for sid in hub_live)[0]
    tagged = sorted(sid for sid in hub_live if hub_servers[sid]["tags"]["Application"] == application)
    explicit = target_live[:3] + target_idle
    groups = [
        {
            "groupId": "pg-explicit",
            "groupName": "Explicit servers",
            "region": REGION,
            "accountId": target,
            "sourceServerIds": explicit,
        },
        {
            "groupId": "pg-tagged",
            "groupName": f"Application {application}",
            "region": REGION,
            "accountId": hub,
            "serverSelectionTags": {"Application": application},
        },
    ]
    plan = {
        "planId": plan_id,
        "planName": "Mixed plan",
        "waves": [
            {"waveNumber": 1, "waveName": "Explicit", "protectionGroupId": "pg-explicit"},
            {"waveNumber": 2, "waveName": "Tagged", "protectionGroupIds": ["pg-tagged"]},
        ],
    }
    return {
        "plan": plan,
        "groups": groups,
        "expected": set(target_live[:3]) | set(tagged),
        "idle": set(target_idle),
        "application": application,
    }


async def seed_plan(settings: SyncSettings, scenario: Mapping[str, Any]) -> None:
    await put(settings, settings.tables.protection_groups, scenario["groups"])
    await put(settings, settings.tables.recovery_plans, [scenario["plan"]])
