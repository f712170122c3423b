"""large and steady_state: a cold full sync of the large estate, the unchanged estate synced again,
and beside them the thread-pool peer's cold sync of the same estate (same simulator, same faults,
its own fresh tables)."""

from __future__ import annotations

import uuid
from typing import Any

from benchmarks import harness as h
from benchmarks.lower_bound import bound_for
from benchmarks.sizes import BenchContext
from benchmarks.variants import engine_sync, fanout_worker_batch, threadpool_sync

# The engine with default settings and the thread-pool peer.
VARIANTS = ("engine", "threadpool_boto3")
# A fan-out worker's largest batch: the refresh function's default BatchSize (10 messages,
# cfn/lambda-stack.yaml RefreshBatchSize) of the sweep's default groups (10 scopes a message).
WORKER_BATCH_MESSAGES = 10


class ScenarioBroken(RuntimeError):
    """A scenario did not do what it measures (wrong counts, failed scopes). ``sections`` keeps
    what was measured anyway, marked broken, as evidence for whoever fixes it."""

    def __init__(self, message: str, sections: dict[str, Any] | None = None):
        super().__init__(message)
        self.sections = sections or {}


def sync_pair(
    ctx: BenchContext, spec: h.EstateSpec, faults: h.Faults, *, steady_state: bool, label: str
) -> dict[str, Any]:
    """Engine (cold, optionally steady) and thread-pool peer on one estate; raw measurements."""
    out: dict[str, Any] = {}
    with h.SimulatorProcess(spec) as sim:
        estate = sim.estate()
        accounts = estate["accounts"]
        expected = int(estate["recoveryInstances"])
        history = h.seeded_execution_history(sim.endpoint_url, accounts)
        for variant in VARIANTS:
            settings = h.seeded_settings(ctx.dynamodb_url, sim, accounts, history, f"{label}-{variant[:6]}")
            sim.set_faults(faults)
            sim.reset_calls()
            ctx.log(f"{label}: {variant} on {expected:,} instances ({spec.scopes} scopes)")
            load_before = h.load_average()
            with h.external_cpu(sim.pid, ctx.dynamodb_pid) as others:
                if variant == "threadpool_boto3":
                    result = h.in_fresh_process(threadpool_sync, settings)
                else:
                    result = h.in_fresh_process(engine_sync, settings)
            result["external_cpu"] = others
            result["calls"] = sim.calls().get("byOperation", {})
            result["load_average"] = [load_before, h.load_average()]
            if variant == "engine" and steady_state:
                # The next scheduled sync, in a new container: the same tables, nothing changed in DRS.
                sim.set_faults(faults)
                sim.reset_calls()
                ctx.log(f"{label}: engine again (steady state)")
                again = h.in_fresh_process(engine_sync, settings)
                result["steady"], result["steady_report"] = again["run"], again["report"]
                result["steady_calls"] = sim.calls().get("byOperation", {})
            h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
            out[variant] = result
        out["fanout_worker"] = _worker_batch(ctx, sim, accounts, history, faults, label)
        out["expected_instances"] = expected
    return out


def _worker_batch(
    ctx: BenchContext,
    sim: h.SimulatorProcess,
    accounts: list[dict[str, Any]],
    history: list[dict[str, Any]],
    faults: h.Faults,
    label: str,
) -> dict[str, Any]:
    """A fan-out worker's cold sync of its largest batch (the first scopes of the estate, in the
    sweep's groups), in a fresh process: what its memory setting must hold."""
    from syncengine.core.config import DEFAULT_FANOUT_SCOPES_PER_MESSAGE
    from syncengine.core.models import Scope
    from syncengine.sync.fanout import group_message, scope_groups

    settings = h.seeded_settings(ctx.dynamodb_url, sim, accounts, history, f"{label}-worker")
    scopes = [Scope(a["accountId"], region) for a in accounts for region in a["regions"]]
    groups = scope_groups(scopes, DEFAULT_FANOUT_SCOPES_PER_MESSAGE)[:WORKER_BATCH_MESSAGES]
    messages = [group_message(group, uuid.uuid4().hex[:16]) for group in groups]
    sim.set_faults(faults)
    ctx.log(f"{label}: a fan-out worker's batch of {sum(len(g) for g in groups)} scopes")
    result = h.in_fresh_process(fanout_worker_batch, settings, messages)
    result["records"] = h.run_async(_record_count(settings))
    h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    result["scopes"] = sum(len(g) for g in groups)
    return result


async def _record_count(settings: Any) -> int:
    from syncengine.sync.engine import open_runtime

    async with open_runtime(settings) as rt:
        return len(await rt.dynamo.scan_all(settings.tables.cache, ProjectionExpression="sourceServerId"))


def problems(out: dict[str, Any], *, steady_state: bool) -> dict[str, str]:
    """Section name -> why its numbers are void (empty when the runs did what they measure)."""
    found: dict[str, str] = {}
    expected = out["expected_instances"]
    engine = out["engine"]
    cold = engine["report"]
    if cold["status"] != "SUCCESS" or cold["instances_found"] != expected or cold["instances_updated"] != expected:
        found["large"] = f"engine cold sync: {cold}"
    worker = out["fanout_worker"]
    if worker["failed_messages"] or not worker["records"]:
        found["large"] = f"fan-out worker: {worker['failed_messages']} messages failed, {worker['records']} records"
    peer = out["threadpool_boto3"]["report"]
    if peer["scopes_failed"] or peer["instances_found"] != expected:
        found["large"] = f"thread-pool peer: {peer}"
    if steady_state and engine["steady_report"]["status"] != "SUCCESS":
        found["steady_state"] = f"engine steady sync: {engine['steady_report']}"
    return found


def run(ctx: BenchContext) -> dict[str, Any]:
    spec, faults = ctx.sizes.large, ctx.sizes.large_faults
    raw = sync_pair(ctx, spec, faults, steady_state=True, label="large")
    engine, peer = raw["engine"], raw["threadpool_boto3"]
    instances = raw["expected_instances"]
    cold = engine["run"]
    bound = bound_for(spec, faults)
    steady = engine["steady"]
    steady_report = engine["steady_report"]
    large = {
        "instances": instances,
        "accounts": spec.accounts,
        "regions_per_account": len(spec.regions),
        "scopes": spec.scopes,
        "latency_ms": faults.latency_ms,
        "tps_per_scope": faults.tps_per_scope,
        "engine_s": round(cold["wall_s"], 2),
        "threadpool_boto3_s": round(peer["run"]["wall_s"], 2),
        "cpu_s": round(cold["cpu_s"], 2),
        "cpu_us_per_instance": round(cold["cpu_s"] / instances * 1e6, 1),
        "peak_rss_mb": round(cold["peak_rss_mb"], 1),
        "rss_before_sync_mb": round(cold["rss_before_mb"], 1),
        "threadpool_boto3_cpu_s": round(peer["run"]["cpu_s"], 2),
        "threadpool_boto3_peak_rss_mb": round(peer["run"]["peak_rss_mb"], 1),
        "fanout_worker_peak_rss_mb": round(raw["fanout_worker"]["run"]["peak_rss_mb"], 1),
        "fanout_worker_scopes": raw["fanout_worker"]["scopes"],
        "fanout_worker_instances": raw["fanout_worker"]["records"],
        "fanout_worker_s": round(raw["fanout_worker"]["run"]["wall_s"], 2),
        "lower_bound_s": round(bound.seconds, 3),
        "engine_timeline": engine["timeline"],
        "dynamodb": ctx.dynamodb_backend,
        "engine_aws_calls": engine["calls"],
        "threadpool_boto3_aws_calls": peer["calls"],
        "engine_external_cpu": engine["external_cpu"],
        "threadpool_boto3_external_cpu": peer["external_cpu"],
        "load_average": {"engine": engine["load_average"], "threadpool_boto3": peer["load_average"]},
    }
    steady_state = {
        "instances": instances,
        "engine_s": round(steady["wall_s"], 2),
        "cpu_s": round(steady["cpu_s"], 2),
        "items_written": steady_report["instances_updated"] + steady_report["instances_deleted"],
        "instances_unchanged": steady_report["instances_unchanged"],
        "scopes_failed": steady_report["scopes_failed"],
        "aws_calls": engine["steady_calls"],
    }
    steady_state["report"] = steady_report
    sections = {"large": large, "steady_state": steady_state}
    broken = problems(raw, steady_state=True)
    if broken:
        for name, reason in broken.items():
            sections[name]["broken"] = reason[:1000]
        raise ScenarioBroken("; ".join(broken.values())[:1000], sections)
    ctx.log(
        f"large: engine {large['engine_s']} s (cpu {large['cpu_s']} s), peer {large['threadpool_boto3_s']} s; "
        f"steady {steady_state['engine_s']} s, {steady_state['items_written']} written"
    )
    return sections
