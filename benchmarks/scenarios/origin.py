"""origin: the original sequential N+1 sync beside the engine on a small estate (before/after)."""

from __future__ import annotations

from typing import Any

from benchmarks import harness as h
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.sizes import BenchContext
from benchmarks.variants import engine_sync, sequential_sync


def run(ctx: BenchContext) -> dict[str, Any]:
    spec, faults = ctx.sizes.origin, ctx.sizes.origin_faults
    with h.SimulatorProcess(spec) as sim:
        estate = sim.estate()
        accounts = estate["accounts"]
        expected = int(estate["recoveryInstances"])
        history = h.seeded_execution_history(sim.endpoint_url, accounts)
        measured: dict[str, Any] = {}
        for variant in ("engine", "original"):
            settings = h.seeded_settings(ctx.dynamodb_url, sim, accounts, history, f"origin-{variant[:6]}")
            sim.set_faults(faults)
            sim.reset_calls()
            ctx.log(f"origin: {variant} on {expected} instances")
            if variant == "engine":
                result = h.in_fresh_process(engine_sync, settings)
                wall, found = result["run"]["wall_s"], result["report"]["instances_found"]
            else:
                result = h.in_fresh_process(sequential_sync, settings)
                wall, found = result["run"]["wall_s"], result["report"]["instances_found"]
            calls = sim.calls()
            measured[variant] = {"wall_s": wall, "found": found, "aws_calls": int(calls.get("total", 0))}
            h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    for variant, values in measured.items():
        if values["found"] != expected:
            raise ScenarioBroken(f"origin {variant} found {values['found']} of {expected}")
    engine, original = measured["engine"], measured["original"]
    section = {
        "instances": expected,
        "scopes": spec.scopes,
        "latency_ms": faults.latency_ms,
        "engine_s": round(engine["wall_s"], 2),
        "original_s": round(original["wall_s"], 2),
        "speedup": round(original["wall_s"] / engine["wall_s"], 1) if engine["wall_s"] else None,
        "engine_aws_calls": engine["aws_calls"],
        "original_aws_calls": original["aws_calls"],
    }
    ctx.log(f"origin: engine {section['engine_s']} s, original {section['original_s']} s")
    return {"origin": section}
