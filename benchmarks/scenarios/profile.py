"""profile: the large scenario's cold engine sync once more, under pyinstrument (in-process, async
aware), its text summary saved under benchmarks/results/ and self time grouped by library. Not
timed against anything: the profiler's overhead makes this run slower than the measured one."""

from __future__ import annotations

from typing import Any

from benchmarks import harness as h
from benchmarks.sizes import BenchContext
from benchmarks.variants import engine_sync

PROFILE_TEXT = "profile_large.txt"


def run(ctx: BenchContext) -> dict[str, Any]:
    spec, faults = ctx.sizes.large, ctx.sizes.large_faults
    path = ctx.results_dir / PROFILE_TEXT
    with h.SimulatorProcess(spec) as sim:
        accounts = sim.estate()["accounts"]
        history = h.seeded_execution_history(sim.endpoint_url, accounts)
        settings = h.seeded_settings(ctx.dynamodb_url, sim, accounts, history, "profile")
        sim.set_faults(faults)
        ctx.log(f"profile: engine cold sync of {spec.instances:,} instances under pyinstrument")
        result = h.in_fresh_process(engine_sync, settings, profile_to=str(path))
        h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    summary = result.get("profile", {})
    return {
        "profile": {
            "instances": result["report"]["instances_found"],
            "profiled_wall_s": round(result["run"]["wall_s"], 2),
            "profiled_cpu_s": round(result["run"]["cpu_s"], 2),
            "text": f"benchmarks/results/{PROFILE_TEXT}",
            **summary,
        }
    }
