"""latency_bound: many scopes, each under a tight per-scope rate limit and high latency. The
estate's lower bound comes from the simulator's parameters (``benchmarks.lower_bound``); the engine
runs every scope at once, the thread-pool peer 32 at a time."""

from __future__ import annotations

from typing import Any

from benchmarks import harness as h
from benchmarks.lower_bound import estate_lower_bound
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.sizes import BenchContext
from benchmarks.variants import engine_sync, threadpool_sync


def run(ctx: BenchContext) -> dict[str, Any]:
    spec, faults = ctx.sizes.latency, ctx.sizes.latency_faults
    bound = estate_lower_bound(
        accounts=spec.accounts,
        instances_per_scope=spec.instances_per_scope,
        latency_s=faults.latency_ms / 1000,
        tps=faults.tps_per_scope,
        burst=faults.burst_per_scope,
    )
    measured: dict[str, Any] = {}
    timeline: dict[str, Any] = {}
    cpu = 0.0
    with h.SimulatorProcess(spec) as sim:
        estate = sim.estate()
        accounts = estate["accounts"]
        expected = int(estate["recoveryInstances"])
        history = h.seeded_execution_history(sim.endpoint_url, accounts)
        for variant in ("engine", "threadpool_boto3"):
            settings = h.seeded_settings(ctx.dynamodb_url, sim, accounts, history, f"lat-{variant[:6]}")
            sim.set_faults(faults)
            sim.reset_calls()
            ctx.log(f"latency_bound: {variant} on {spec.scopes} scopes (bound {bound.seconds:.2f} s)")
            if variant == "engine":
                result = h.in_fresh_process(engine_sync, settings)
                report, wall = result["cold_report"], result["cold"]["wall_s"]
                found, failed = report["instances_found"], report["scopes_failed"]
                timeline, cpu = result["cold_timeline"], result["cold"]["cpu_s"]
            else:
                result = h.in_fresh_process(threadpool_sync, settings)
                report, wall = result["report"], result["run"]["wall_s"]
                found, failed = report["instances_found"], report["scopes_failed"]
            calls = sim.calls()
            measured[variant] = {
                "wall_s": wall,
                "found": found,
                "failed_scopes": failed,
                "throttled_calls": h.throttled_calls(calls),
                "calls": calls.get("byOperation", {}),
                "report": report,
            }
            h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    engine, peer = measured["engine"], measured["threadpool_boto3"]
    if engine["failed_scopes"] or engine["found"] != expected:
        raise ScenarioBroken(f"engine under rate limits: {engine['report']}")
    section = {
        "scopes": spec.scopes,
        "instances": expected,
        "instances_per_scope": spec.instances_per_scope,
        "latency_ms": faults.latency_ms,
        "tps_per_scope": faults.tps_per_scope,
        "burst_per_scope": faults.burst_per_scope,
        "retry_after_s": faults.retry_after_seconds,
        "engine_s": round(engine["wall_s"], 2),
        "engine_cpu_s": round(cpu, 2),
        "engine_timeline": timeline,
        "lower_bound_s": round(bound.seconds, 3),
        "lower_bound": bound.to_json(),
        "threadpool_boto3_s": round(peer["wall_s"], 2),
        "threadpool_boto3_failed_scopes": peer["failed_scopes"],
        "engine_throttled_calls": engine["throttled_calls"],
        "threadpool_boto3_throttled_calls": peer["throttled_calls"],
        "engine_aws_calls": engine["calls"],
        "threadpool_boto3_aws_calls": peer["calls"],
        "dynamodb": ctx.dynamodb_backend,
    }
    ctx.log(
        f"latency_bound: engine {section['engine_s']} s, bound {section['lower_bound_s']} s, "
        f"peer {section['threadpool_boto3_s']} s"
    )
    return {"latency_bound": section}
