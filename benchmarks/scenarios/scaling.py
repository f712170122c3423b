"""Sync time against estate size (the plot of RESULTS.md): smaller estates of the large scenario's
shape (same regions and scope size, fewer accounts), engine and thread-pool peer each, plus the
large point itself when this run measured it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from benchmarks.harness import EstateSpec, Faults
from benchmarks.lower_bound import bound_for
from benchmarks.scenarios.large import ScenarioBroken, problems, sync_pair
from benchmarks.sizes import BenchContext


def run(ctx: BenchContext) -> dict[str, Any]:
    sizes = ctx.sizes
    faults = sizes.large_faults
    points: list[dict[str, Any]] = []
    for accounts in sizes.scaling_accounts:
        spec = replace(sizes.large, accounts=accounts)
        raw = sync_pair(ctx, spec, faults, steady_state=False, label=f"scale{accounts}")
        broken = problems(raw, steady_state=False)
        if broken:
            raise ScenarioBroken(f"scaling at {accounts} accounts: " + "; ".join(broken.values()))
        points.append(_point(spec, raw, faults))
    large = ctx.document.get("large")
    if isinstance(large, dict) and not large.get("broken"):
        points.append(
            {
                "instances": large["instances"],
                "accounts": large["accounts"],
                "engine_s": large["engine_s"],
                "engine_cpu_s": large["cpu_s"],
                "threadpool_boto3_s": large["threadpool_boto3_s"],
                "lower_bound_s": large["lower_bound_s"],
            }
        )
    points.sort(key=lambda p: p["instances"])
    return {"scaling": {"points": points, "regions_per_account": len(sizes.large.regions)}}


def _point(spec: EstateSpec, raw: dict[str, Any], faults: Faults) -> dict[str, Any]:
    bound = bound_for(spec, faults)
    return {
        "instances": raw["expected_instances"],
        "accounts": spec.accounts,
        "engine_s": round(raw["engine"]["run"]["wall_s"], 2),
        "engine_cpu_s": round(raw["engine"]["run"]["cpu_s"], 2),
        "threadpool_boto3_s": round(raw["threadpool_boto3"]["run"]["wall_s"], 2),
        "lower_bound_s": round(bound.seconds, 3),
    }
