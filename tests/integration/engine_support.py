"""Helpers shared by the engine's integration tests: settings pointing at a simulator and a
DynamoDB backend, seeding, and reading the whole cache back (tests may scan; the engine never)."""

from __future__ import annotations

from typing import Any

from devtools.seed import execution_items, put_items, target_account_items
from syncengine.core.config import RetrySettings, SyncSettings
from syncengine.dynamodb.seam import from_item
from syncengine.sync.engine import open_runtime

FAST_RETRY = RetrySettings(max_attempts=8, base_delay=0.01, max_delay=0.2)


def engine_settings(ddb: Any, sim: Any, **overrides: Any) -> SyncSettings:
    regions = tuple(sorted({r for a in sim.estate.accounts for r in a.regions}))
    values: dict[str, Any] = {
        "regions": regions,
        "endpoint_urls": (
            ("drs", sim.endpoint_url),
            ("dynamodb", ddb.endpoint_url),
            ("ec2", sim.endpoint_url),
            ("sts", sim.endpoint_url),
        ),
        "retry": FAST_RETRY,
        "scope_lease_wait": 5.0,
    }
    values.update(overrides)
    return ddb.settings(**values)


def launch_jobs(estate: Any) -> list[dict[str, Any]]:
    return [
        {**job, "accountId": account.account_id, "region": region}
        for account in estate.accounts
        for region in account.regions
        for job in estate.jobs(account.account_id, region)
        if job.get("type") == "LAUNCH"
    ]


async def seed(settings: SyncSettings, estate: Any, *, executions: list[dict[str, Any]] | None = None) -> None:
    accounts = [account.to_json() for account in estate.accounts]
    async with open_runtime(settings) as rt:
        await put_items(rt.dynamo, settings.tables.target_accounts, target_account_items(accounts))
        history = execution_items(launch_jobs(estate)) if executions is None else executions
        await put_items(rt.dynamo, settings.tables.execution_history, history)


async def cache_items(settings: SyncSettings) -> dict[str, dict[str, Any]]:
    async with open_runtime(settings) as rt:
        items = await rt.dynamo.scan_all(settings.tables.cache)
    return {item["sourceServerId"]: item for item in items}


async def put_raw(settings: SyncSettings, table: str, items: list[dict[str, Any]]) -> None:
    async with open_runtime(settings) as rt:
        await put_items(rt.dynamo, table, items)


def decode(item: dict[str, Any]) -> dict[str, Any]:
    return from_item(item)
