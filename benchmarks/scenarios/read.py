"""read: check-existing for a 100-server plan through the data-management handler (the cache),
beside the original live algorithm against the simulator with the same AWS latency."""

from __future__ import annotations

from typing import Any

from benchmarks import harness as h
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.scenarios.small_estate import accounts_by_id, scope_instances, sync_cache
from benchmarks.sizes import BenchContext
from benchmarks.variants import handler_check_existing, live_check_existing
from syncengine.core.config import SyncSettings

PLAN_ID = "plan-bench-read"
PLAN_SERVERS = 100
WAVES = 4


def plan_items(scopes: list[Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A plan of ``WAVES`` waves, each one protection group of an own scope, 100 servers in all."""
    per_wave = PLAN_SERVERS // WAVES
    chosen = [s for s in scopes if len(s.instances) >= per_wave][:WAVES]
    if len(chosen) < WAVES:
        raise ScenarioBroken(f"the estate has fewer than {WAVES} scopes of {per_wave} instances")
    groups = [
        {
            "groupId": f"pg-bench-{index}",
            "groupName": f"Bench group {index}",
            "accountId": scope.account_id,
            "region": scope.region,
            "sourceServerIds": [server for server, _ri in scope.instances[:per_wave]],
        }
        for index, scope in enumerate(chosen, start=1)
    ]
    plan = {
        "planId": PLAN_ID,
        "planName": "Benchmark plan (100 servers)",
        "waves": [
            {"waveNumber": index, "waveName": f"Wave {index}", "protectionGroupId": group["groupId"]}
            for index, group in enumerate(groups, start=1)
        ],
    }
    return plan, groups


def seeded_plan(ctx: BenchContext, sim: h.SimulatorProcess, label: str = "read") -> SyncSettings:
    """Fresh tables holding the small estate's accounts, history, the 100-server plan and its
    groups, and a synced cache; settings pointing at them."""
    estate = sim.estate()
    accounts = estate["accounts"]
    history = h.seeded_execution_history(sim.endpoint_url, accounts)
    settings = h.seeded_settings(ctx.dynamodb_url, sim, accounts, history, label)
    plan, groups = plan_items(scope_instances(sim.endpoint_url, accounts))
    h.run_async(h.put_table_items(settings, settings.tables.protection_groups, groups))
    h.run_async(h.put_table_items(settings, settings.tables.recovery_plans, [plan]))
    sync_cache(settings, int(estate["recoveryInstances"]))
    return settings


def run(ctx: BenchContext) -> dict[str, Any]:
    sizes = ctx.sizes
    with h.SimulatorProcess(sizes.small) as sim:
        accounts = sim.estate()["accounts"]
        settings = seeded_plan(ctx, sim)
        sim.set_faults(sizes.small_faults)
        sim.reset_calls()
        ctx.log(f"read: handler x{sizes.read_repetitions}")
        cache = h.in_fresh_process(handler_check_existing, settings, PLAN_ID, sizes.read_repetitions)
        cache_calls = sim.calls()
        ctx.log(f"read: live algorithm x{sizes.live_repetitions}")
        live = h.in_fresh_process(
            live_check_existing, settings, accounts_by_id(accounts), PLAN_ID, sizes.live_repetitions
        )
        h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    for name, result in (("cache", cache), ("live", live)):
        if result["instance_count"] != PLAN_SERVERS:
            raise ScenarioBroken(f"{name} check found {result['instance_count']} of {PLAN_SERVERS} instances")
    cache_ms, live_ms = cache["timings_ms"], live["timings_ms"]
    section = {
        "servers": PLAN_SERVERS,
        "repetitions": len(cache_ms),
        "cache_p50_ms": round(h.percentile(cache_ms, 0.50), 2),
        "cache_p99_ms": round(h.percentile(cache_ms, 0.99), 2),
        "cache_max_ms": round(max(cache_ms), 2),
        "cache_mean_ms": round(sum(cache_ms) / len(cache_ms), 2),
        "cache_aws_calls": int(cache_calls.get("total", 0)),
        "cache_dynamodb_calls_per_check": round(cache["dynamodb_calls"] / max(1, cache["checks"]), 2),
        "live_repetitions": len(live_ms),
        "live_p50_ms": round(h.percentile(live_ms, 0.50), 1),
        "live_max_ms": round(max(live_ms), 1),
        "live_aws_calls_per_check": live["aws_calls"] // max(1, len(live_ms)),
        "simulator_latency_ms": sizes.small_faults.latency_ms,
        "dynamodb": ctx.dynamodb_backend,
    }
    ctx.log(
        f"read: cache p50 {section['cache_p50_ms']} ms, p99 {section['cache_p99_ms']} ms, "
        f"{section['cache_dynamodb_calls_per_check']} DynamoDB calls a check; "
        f"live p50 {section['live_p50_ms']} ms"
    )
    return {"read": section}
