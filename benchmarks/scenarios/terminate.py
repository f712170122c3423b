"""terminate: the 100 recovery instances of one execution (two scopes, one of them cross-account)
terminated through the data-management handler; the simulator counts DRS describe calls."""

from __future__ import annotations

from typing import Any

from benchmarks import harness as h
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.scenarios.small_estate import scope_instances, sync_cache
from benchmarks.sizes import BenchContext
from benchmarks.variants import handler_terminate

EXECUTION_ID = "exec-bench-terminate"
INSTANCES = 100


def execution_item(scopes: list[Any]) -> dict[str, Any]:
    """An execution whose waves launched 100 recovery instances: half in the hub's first scope,
    half in a target account's scope (so termination needs the cross-account role)."""
    half = INSTANCES // 2
    hub = scopes[0]
    target = next((s for s in scopes if s.account_id != hub.account_id and len(s.instances) >= half), None)
    if target is None or len(hub.instances) < half:
        raise ScenarioBroken("the estate has no two scopes of 50 instances in two accounts")
    waves = []
    for number, scope in enumerate((hub, target), start=1):
        waves.append(
            {
                "waveNumber": number,
                "waveName": f"Wave {number}",
                "protectionGroupId": f"pg-terminate-{number}",
                "region": scope.region,
                "accountId": scope.account_id,
                "status": "COMPLETED",
                "serverStatuses": [
                    {"sourceServerId": server, "recoveryInstanceId": ri, "launchStatus": "LAUNCHED"}
                    for server, ri in scope.instances[:half]
                ],
            }
        )
    return {
        "executionId": EXECUTION_ID,
        "planId": "plan-bench-terminate",
        "planName": "Benchmark terminate plan",
        "executionType": "DRILL",
        "status": "COMPLETED",
        "startTime": 1_750_000_000,
        "accountId": hub.account_id,
        "waves": waves,
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    sizes = ctx.sizes
    with h.SimulatorProcess(sizes.small) as sim:
        estate = sim.estate()
        accounts = estate["accounts"]
        expected = int(estate["recoveryInstances"])
        execution = execution_item(scope_instances(sim.endpoint_url, accounts))
        # Only this execution in the history: every one of its 100 instances maps to it, no other does.
        settings = h.seeded_settings(ctx.dynamodb_url, sim, accounts, [execution], "term")
        sync_cache(settings, expected)
        sim.set_faults(sizes.small_faults)
        sim.reset_calls()
        ctx.log(f"terminate: {INSTANCES} instances of {EXECUTION_ID} through the handler")
        result = h.in_fresh_process(handler_terminate, settings, EXECUTION_ID)
        calls = sim.calls()
        remaining = int(sim.estate()["recoveryInstances"])
        h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    if result["total_terminated"] != INSTANCES or remaining != expected - INSTANCES:
        raise ScenarioBroken(f"terminate: {result}, {expected - remaining} instances gone from the estate")
    by_operation = calls.get("byOperation", {})
    section = {
        "instances": INSTANCES,
        "engine_s": round(result["run"]["wall_s"], 3),
        "drs_describe_calls": h.drs_describe_calls(calls),
        "terminate_calls": int(by_operation.get("drs:TerminateRecoveryInstances", 0)),
        "assume_role_calls": int(by_operation.get("sts:AssumeRole", 0)),
        "aws_calls": by_operation,
        "jobs": result["jobs"],
        "simulator_latency_ms": sizes.small_faults.latency_ms,
        "dynamodb": ctx.dynamodb_backend,
    }
    ctx.log(f"terminate: {section['engine_s']} s, {section['drs_describe_calls']} DRS describe calls")
    return {"terminate": section}
