"""The small estate the read and terminate scenarios share the shape of: a few accounts and
regions, its recovery instances listed through the simulator's DRS API, and a synced cache."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import harness as h
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.variants import engine_sync
from devtools.seed import target_account_items
from syncengine.core.config import SyncSettings


@dataclass(frozen=True)
class ScopeInstances:
    account_id: str
    region: str
    # (sourceServerID, recoveryInstanceID), in DRS's order.
    instances: tuple[tuple[str, str], ...]


def scope_instances(simulator_url: str, accounts: Sequence[Mapping[str, Any]]) -> list[ScopeInstances]:
    """Every scope's recovery instances, through DRS DescribeRecoveryInstances in each account."""
    sts = h.boto3_client("sts", simulator_url)
    scopes = []
    for account in accounts:
        credentials = h.assumed_credentials(sts, account)
        for region in account["regions"]:
            drs = h.boto3_client("drs", simulator_url, region, **credentials)
            pairs = [
                (ri["sourceServerID"], ri["recoveryInstanceID"])
                for page in drs.get_paginator("describe_recovery_instances").paginate(filters={})
                for ri in page.get("items", [])
            ]
            scopes.append(ScopeInstances(account["accountId"], region, tuple(pairs)))
    return scopes


def accounts_by_id(accounts: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """target-accounts items by account id (what the live algorithm reads to assume roles)."""
    return {item["accountId"]: item for item in target_account_items(accounts)}


def sync_cache(settings: SyncSettings, expected: int) -> None:
    """One engine sync (not measured) so the cache holds the estate."""
    result = h.in_fresh_process(engine_sync, settings)
    report = result["report"]
    if report["status"] != "SUCCESS" or report["instances_found"] != expected:
        raise ScenarioBroken(f"cache sync before the scenario: {report}")
