"""latency_bound: many scopes, each under a tight per-scope rate limit and high latency. The
estate's lower bound comes from the simulator's parameters (``benchmarks.lower_bound``); the engine
runs every scope at once, the thread-pool peer 32 at a time.

The full run also measures the issue's example parameters (2 requests/s, bucket of 2) on the same
estate, where the bound is pure latency: it shows how far a 2-core machine's CPU is from it.
"""

from __future__ import annotations

from typing import Any

from benchmarks import harness as h
from benchmarks.lower_bound import bound_for
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.sizes import BenchContext
from benchmarks.variants import engine_sync, threadpool_sync


def measure(
    ctx: BenchContext,
    sim: h.SimulatorProcess,
    accounts: list[dict[str, Any]],
    history: list[dict[str, Any]],
    faults: h.Faults,
    label: str,
) -> dict[str, Any]:
    """Engine and thread-pool peer under ``faults``, each on fresh tables; raw numbers."""
    spec = sim.spec
    bound = bound_for(spec, faults)
    measured: dict[str, Any] = {"bound": bound}
    for variant in ("engine", "threadpool_boto3"):
        settings = h.seeded_settings(ctx.dynamodb_url, sim, accounts, history, f"{label}-{variant[:10]}")
        sim.set_faults(faults)
        sim.reset_calls()
        ctx.log(f"{label}: {variant} on {spec.scopes} scopes (bound {bound.seconds:.2f} s)")
        if variant != "threadpool_boto3":
            result = h.in_fresh_process(engine_sync, settings)
            values = {
                "wall_s": result["run"]["wall_s"],
                "cpu_s": result["run"]["cpu_s"],
                "timeline": result["timeline"],
                "report": result["report"],
            }
        else:
            result = h.in_fresh_process(threadpool_sync, settings)
            values = {"wall_s": result["run"]["wall_s"], "cpu_s": result["run"]["cpu_s"], "report": result["report"]}
        calls = sim.calls()
        values["throttled_calls"] = h.throttled_calls(calls)
        values["calls"] = calls.get("byOperation", {})
        measured[variant] = values
        h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    return measured


def summary(spec: h.EstateSpec, faults: h.Faults, measured: dict[str, Any]) -> dict[str, Any]:
    engine, peer, bound = measured["engine"], measured["threadpool_boto3"], measured["bound"]
    return {
        "scopes": spec.scopes,
        "instances": spec.instances,
        "instances_per_scope": spec.instances_per_scope,
        "latency_ms": faults.latency_ms,
        "tps_per_scope": faults.tps_per_scope,
        "burst_per_scope": faults.burst_per_scope,
        "retry_after_s": faults.retry_after_seconds,
        "engine_s": round(engine["wall_s"], 2),
        "engine_cpu_s": round(engine["cpu_s"], 2),
        "engine_timeline": engine["timeline"],
        "lower_bound_s": round(bound.seconds, 3),
        "lower_bound": bound.to_json(),
        "threadpool_boto3_s": round(peer["wall_s"], 2),
        "threadpool_boto3_cpu_s": round(peer["cpu_s"], 2),
        "threadpool_boto3_failed_scopes": peer["report"]["scopes_failed"],
        "engine_throttled_calls": engine["throttled_calls"],
        "threadpool_boto3_throttled_calls": peer["throttled_calls"],
        "engine_aws_calls": engine["calls"],
        "threadpool_boto3_aws_calls": peer["calls"],
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    sizes = ctx.sizes
    spec, faults = sizes.latency, sizes.latency_faults
    with h.SimulatorProcess(spec) as sim:
        estate = sim.estate()
        accounts = estate["accounts"]
        expected = int(estate["recoveryInstances"])
        history = h.seeded_execution_history(sim.endpoint_url, accounts)
        main = measure(ctx, sim, accounts, history, faults, "latency_bound")
        example = None
        if sizes.latency_issue_example is not None:
            example = measure(ctx, sim, accounts, history, sizes.latency_issue_example, "latency_bound-example")
    section = summary(spec, faults, main)
    section["dynamodb"] = ctx.dynamodb_backend
    if example is not None:
        section["issue_example"] = summary(spec, sizes.latency_issue_example, example)
    report = main["engine"]["report"]
    if report["scopes_failed"] or report["instances_found"] != expected:
        section["broken"] = f"engine under rate limits: {report}"[:1000]
        raise ScenarioBroken(section["broken"], {"latency_bound": section})
    ctx.log(
        f"latency_bound: engine {section['engine_s']} s, bound {section['lower_bound_s']} s, "
        f"peer {section['threadpool_boto3_s']} s"
    )
    return {"latency_bound": section}
