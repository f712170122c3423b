"""cost: what one steady-state sync of the reference estate costs, and a month of them (issue 24).

The reference estate (``--full``: 50 accounts x 4 regions x 300 instances; ``--quick``: 5 accounts)
with an execution history (the estate's executions, naming half of its launch jobs, padded with
executions of other plans to ``cost_history``) is synced cold and once more (which marks the jobs
no execution names, runs the early rebuild they ask for, and attributes every scope once against
the stored index), then the index is rebuilt (the hourly rebuild; its own cost is measured and
priced per hour). Then 0.1% of the instances change in EC2 (a new
Name tag) and one sync is measured, twice, each after its own 0.1% of changes:

1. timed, in a fresh process with the engine's production settings (fast paths on), as a warm
   Lambda container runs it: its wall time is the invocation's billed duration;
2. counted, in this process through ``benchmarks.capacity.DynamoCounter``: DynamoDB read and
   write units per table as DynamoDB reports them (``ReturnConsumedCapacity=TOTAL`` on every
   call), and the simulator's count of DRS, EC2 and STS calls.

Priced by ``benchmarks.pricing`` (every constant there, with its page): Lambda GB-seconds at the
data-management function's memory from cfn/lambda-stack.yaml, a 5-minute schedule for 30 days.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from benchmarks import harness as h
from benchmarks import pricing
from benchmarks.capacity import DynamoCounter
from benchmarks.scenarios.history_cost import padding
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.sizes import BenchContext
from benchmarks.variants import engine_sync
from syncengine.core.config import SyncSettings
from syncengine.sync.engine import open_runtime, sync_all
from syncengine.sync.execution_sync import index_table

# The share of instances that changes between two syncs (issue 24: 0.1%).
CHANGED_FRACTION = 0.001
# The large scenario's faults: 50 ms a call, 5 requests a second per scope.
FAULTS = h.Faults(latency_ms=50, tps_per_scope=5)
# The review's estimate this scenario answers (issue 24), shown beside the measurement.
REVIEW_ESTIMATE_USD = (64.0, 80.0)


async def _ec2_instance_ids(settings: SyncSettings) -> list[str]:
    """Every cached record's EC2 instance id, sorted (what the changes pick from)."""
    async with open_runtime(settings) as rt:
        items = await rt.dynamo.scan_all(settings.tables.cache, ProjectionExpression="ec2InstanceId")
    return sorted(str(item["ec2InstanceId"]) for item in items if item.get("ec2InstanceId"))


def _change(sim: h.SimulatorProcess, instance_ids: list[str], count: int, round_number: int) -> None:
    """Give ``count`` instances, spread over the estate, a new Name tag (a change the next sync
    must write)."""
    step = max(len(instance_ids) // count, 1)
    for number, instance_id in enumerate(instance_ids[round_number::step][:count]):
        changes = {"name": f"renamed-{round_number}-{number}"}
        sim.control("POST", "/_simulator/ec2", {"instanceId": instance_id, "changes": changes})


def _aws_calls(by_operation: dict[str, int]) -> dict[str, int]:
    calls: Counter[str] = Counter()
    for operation, count in by_operation.items():
        calls[operation.partition(":")[0]] += int(count)
    return {service: calls.get(service, 0) for service in ("drs", "ec2", "sts")}


async def _counted_sync(settings: SyncSettings, counter: DynamoCounter) -> Any:
    counter.reset()
    with counter.observing():
        return await sync_all(settings)


async def _rebuild(settings: SyncSettings, counter: DynamoCounter) -> dict[str, float]:
    import time

    counter.reset()
    with counter.observing():
        async with open_runtime(settings) as rt:
            await index_table(rt.dynamo, settings).rebuild(time.time())
    return counter.totals()


def _check(report: Any, expected: int, changed: int, what: str) -> None:
    status = report["status"] if isinstance(report, dict) else report.status.value
    updated = report["instances_updated"] if isinstance(report, dict) else report.instances_updated
    if status != "SUCCESS" or updated != changed:
        raise ScenarioBroken(f"cost: the {what} sync wrote {updated} records, {changed} changed ({status})")


def run(ctx: BenchContext) -> dict[str, Any]:
    from syncengine.core.logging import configure_logging

    configure_logging(level="ERROR")  # the syncs run in this process
    spec = ctx.sizes.cost
    with h.SimulatorProcess(spec) as sim:
        estate = sim.estate()
        accounts = estate["accounts"]
        instances = int(estate["recoveryInstances"])
        estate_history = h.seeded_execution_history(sim.endpoint_url, accounts)
        history = [*estate_history, *padding(max(ctx.sizes.cost_history - len(estate_history), 0), 0)]
        settings = h.seeded_settings(ctx.dynamodb_url, sim, accounts, history, "cost")
        sim.set_faults(FAULTS)
        ctx.log(f"cost: {instances:,} instances, {len(history):,} executions; cold sync and a settling sync")
        for _ in range(2):
            report = h.run_async(sync_all(settings))
            if report.status.value != "SUCCESS":
                raise ScenarioBroken(f"cost: a settling sync failed: {report.to_dict()}")
        counter = DynamoCounter()
        rebuild = h.run_async(_rebuild(settings, counter))
        instance_ids = h.run_async(_ec2_instance_ids(settings))
        changed = max(1, round(instances * CHANGED_FRACTION))

        _change(sim, instance_ids, changed, 0)
        sim.set_faults(FAULTS)
        sim.reset_calls()
        ctx.log(f"cost: timed steady sync ({changed} instances changed)")
        timed = h.in_fresh_process(engine_sync, settings)
        _check(timed["report"], instances, changed, "timed")
        timed_calls = _aws_calls(sim.calls().get("byOperation", {}))

        _change(sim, instance_ids, changed, 1)
        sim.set_faults(FAULTS)
        sim.reset_calls()
        ctx.log("cost: counted steady sync")
        counted = h.run_async(_counted_sync(settings, counter))
        _check(counted, instances, changed, "counted")
        calls = _aws_calls(sim.calls().get("byOperation", {}))
        tables = settings.tables
        by_table = {
            name: counter.of(table)
            for name, table in (
                ("cache", tables.cache),
                ("status", tables.status),
                ("execution_index", tables.execution_index),
                ("execution_history", tables.execution_history),
                ("target_accounts", tables.target_accounts),
            )
        }
        totals = counter.totals()
        h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    section = _section(
        instances=instances,
        scopes=spec.scopes,
        executions=len(history),
        changed=changed,
        totals=totals,
        by_table=by_table,
        calls=calls,
        timed=timed,
        timed_calls=timed_calls,
        rebuild=rebuild,
    )
    section["dynamodb"] = ctx.dynamodb_backend
    ctx.log(
        f"cost: {section['per_sync']['read_units']} read units ({section['read_units_per_instance']} per instance), "
        f"{section['per_sync']['write_units']} write units, {section['per_sync']['lambda_gb_s']} GB-s; "
        f"${section['monthly_usd']}/month"
    )
    return {"cost": section}


def _section(
    *,
    instances: int,
    scopes: int,
    executions: int,
    changed: int,
    totals: dict[str, float],
    by_table: dict[str, dict[str, float]],
    calls: dict[str, int],
    timed: dict[str, Any],
    timed_calls: dict[str, int],
    rebuild: dict[str, float],
) -> dict[str, Any]:
    setting = pricing.data_management_setting()
    wall_s = float(timed["run"]["wall_s"])
    gb_s = wall_s * setting.memory_mb / 1024
    by_item = pricing.monthly_cost(
        read_units=totals["read_units"],
        write_units=totals["write_units"],
        lambda_gb_s=gb_s,
        rebuild_read_units=rebuild["read_units"],
        rebuild_write_units=rebuild["write_units"],
        architecture=setting.architecture,
    )
    aws_calls = sum(calls.values())
    return {
        "instances": instances,
        "scopes": scopes,
        "executions": executions,
        "changed_per_sync": changed,
        "per_sync": {
            "read_units": totals["read_units"],
            "write_units": totals["write_units"],
            "dynamodb_calls": totals["calls"],
            "aws_calls": calls,
            "lambda_gb_s": round(gb_s, 2),
        },
        "read_units_per_instance": round(totals["read_units"] / instances, 4),
        "per_sync_by_table": by_table,
        "timed_sync": {
            "wall_s": round(wall_s, 2),
            "cpu_s": round(float(timed["run"]["cpu_s"]), 2),
            "peak_rss_mb": round(float(timed["run"]["peak_rss_mb"]), 1),
            "aws_calls": timed_calls,
        },
        "rebuild": rebuild,
        "lambda_memory_mb": setting.memory_mb,
        "lambda_architecture": setting.architecture,
        "syncs_per_month": pricing.SYNCS_PER_MONTH,
        "monthly_usd": round(sum(by_item.values()), 2),
        "monthly_usd_by_item": {item: round(usd, 2) for item, usd in by_item.items()},
        # Not in monthly_usd: the work queue's requests if the sync were fanned out (the reference
        # estate's 200 scopes stay in-process under SYNC_FANOUT=auto), and each additional
        # CloudTrail trail copying the target accounts' management events.
        "fanout_sqs_requests_per_sync": pricing.sqs_requests_per_sync(scopes),
        "fanout_sqs_monthly_usd": round(pricing.fanout_sqs_monthly(scopes), 2),
        "cloudtrail_per_additional_trail_monthly_usd": round(pricing.cloudtrail_monthly(aws_calls), 2),
        "review_estimate_usd": list(REVIEW_ESTIMATE_USD),
    }
