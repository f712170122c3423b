"""Fill the orchestration's tables from a simulated estate: target accounts (with roles and
external ids), and an execution history whose waves name the estate's launch jobs. Used by the
demo, the tests and the benchmarks; production never seeds anything."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from syncengine.dynamodb.seam import BATCH_WRITE_MAX, Dynamo, chunked, to_item


def target_account_items(accounts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Items of the target-accounts table from ``/_simulator/estate``'s ``accounts``."""
    items = []
    for account in accounts:
        item: dict[str, Any] = {
            "accountId": account["accountId"],
            "accountName": account.get("accountName") or f"account-{account['accountId'][-4:]}",
            "status": "active",
            "regions": list(account.get("regions") or []),
        }
        if account.get("isHub"):
            item["isCurrentAccount"] = True
        else:
            item["assumeRoleName"] = account["roleName"]
            item["externalId"] = account["externalId"]
        items.append(item)
    return items


def execution_items(
    launch_jobs: Sequence[Mapping[str, Any]],
    *,
    waves_per_execution: int = 3,
    start_time: int = 1_750_000_000,
) -> list[dict[str, Any]]:
    """Execution-history items whose waves are the given LAUNCH jobs (each job dict carries the
    job's ``accountId`` and ``region``). Every other wave names its job only through
    ``serverStatuses`` (no ``jobId``), so both source-execution rules are exercised."""
    items: list[dict[str, Any]] = []
    for number, batch in enumerate(chunked(launch_jobs, waves_per_execution)):
        execution_id = f"exec-{number:05d}"
        waves = []
        for wave_number, job in enumerate(batch, start=1):
            statuses = [
                {
                    "sourceServerId": p["sourceServerID"],
                    "recoveryInstanceId": p.get("recoveryInstanceID"),
                    "launchStatus": p.get("launchStatus", "LAUNCHED"),
                }
                for p in job.get("participatingServers", [])
            ]
            wave: dict[str, Any] = {
                "waveNumber": wave_number,
                "waveName": f"Wave {wave_number}",
                "protectionGroupId": f"pg-{number:05d}-{wave_number}",
                "region": job["region"],
                "accountId": job["accountId"],
                "status": "COMPLETED",
                "serverStatuses": statuses,
            }
            if wave_number % 2 == 1:
                wave["jobId"] = job["jobID"]
            waves.append(wave)
        first = batch[0]
        items.append(
            {
                "executionId": execution_id,
                "planId": f"plan-{number % 7:03d}",
                "planName": f"Plan {number % 7}",
                "executionType": "DRILL",
                "status": "COMPLETED",
                "startTime": start_time + number * 60,
                "accountId": first["accountId"],
                "waves": waves,
            }
        )
    return items


async def put_items(dynamo: Dynamo, table: str, items: Iterable[Mapping[str, Any]]) -> int:
    count = 0
    for batch in chunked(items, BATCH_WRITE_MAX):
        await dynamo.batch_write(table, [{"PutRequest": {"Item": to_item(item)}} for item in batch])
        count += len(batch)
    return count
