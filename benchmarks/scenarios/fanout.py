"""fanout: the full sync fanned out over the work queue (SYNC_FANOUT=on) to 1, 4 and 8 local
workers, on a latency-bound estate of 2,000 scopes (200 with --quick); wall time against the
estate's lower bound.

The estate is the latency_bound scenario's kind (one DRS token per 20 s per scope, 200 ms per
call: every scope waits ~20 s on its rate limit) with one instance per scope. The queue is moto's
SQS; each worker is a process running ``devtools.event_source`` (what Lambda's event source
mapping does) with ``handlers.refresh.lambda_handler``: one worker is one Lambda concurrency
slot, handling one batch of ``BATCH_SIZE`` scope messages at a time. Wall time: from the sweep's
start until the run record counts every scope (the last worker wrote the summary). Baseline
beside it: the lower bound of the estate (``benchmarks.lower_bound``; no implementation can beat
it), and the 1-worker run.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from benchmarks import harness as h
from benchmarks.lower_bound import bound_for
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.sizes import BenchContext

ACCOUNTS = 500
# --quick (CI) proves the path on a tenth of the estate in about a minute; --full measures 2,000 scopes.
QUICK_ACCOUNTS = 50
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2")
TPS_PER_SCOPE = 0.05
FAULTS = h.Faults(latency_ms=200, tps_per_scope=TPS_PER_SCOPE, burst_per_scope=1, retry_after_seconds=1 / TPS_PER_SCOPE)
# Messages per invocation. SQS event source mappings take up to 10,000 with a batching window;
# 500 keeps one round per worker at 4 workers and more (the deployed default is 10).
BATCH_SIZE = 500
# moto's ReceiveMessage takes ~0.3 s on a queue of 2,000 messages (10 per call): a window long
# enough to gather a full batch, as Lambda's pollers do in milliseconds.
BATCH_WINDOW_S = 8.0
WORKERS = (1, 4, 8)
RUN_TIMEOUT_S = 600.0
IDLE_STOP_S = 3.0


def worker_main(settings: Any, queue: Any, sqs_url: str, ready: Any, stop: Any) -> None:
    """One local worker: poll the queue and invoke the refresh function until told to stop."""
    import boto3

    from syncengine.logging import configure_logging

    configure_logging(level="WARNING")  # one summary line per scope would flood the run's output
    from devtools.event_source import EventSourcePoller
    from handlers import dependencies
    from handlers.refresh import lambda_handler

    dependencies.configure(settings=settings)
    sqs = boto3.client("sqs", endpoint_url=sqs_url, region_name=queue.region)
    poller = EventSourcePoller(sqs, queue, lambda_handler, batch_size=BATCH_SIZE, batch_window_s=BATCH_WINDOW_S)
    ready.set()
    while not stop.is_set():
        if poller.poll_once() is None:
            time.sleep(0.2)


async def _fanout_progress(settings: Any) -> dict[str, Any] | None:
    from syncengine.engine import open_runtime

    async with open_runtime(settings) as rt:
        return await rt.status.fanout_run()


def measure(settings: Any, queue: Any, sqs_url: str, workers: int) -> dict[str, Any]:
    from syncengine.engine import get_sync_status, sync_all

    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    readies = [context.Event() for _ in range(workers)]
    processes = [
        context.Process(target=worker_main, args=(settings, queue, sqs_url, ready, stop), daemon=True)
        for ready in readies
    ]
    for process in processes:
        process.start()
    try:
        for ready in readies:
            if not ready.wait(120):
                raise ScenarioBroken("fanout: a worker did not start")
        started = time.monotonic()
        sweep = h.run_async(sync_all(settings))
        while True:
            record = h.run_async(_fanout_progress(settings)) or {}
            if int(record.get("finished", -1)) >= int(record.get("total", 0)) > 0:
                break
            if time.monotonic() - started > RUN_TIMEOUT_S:
                raise ScenarioBroken(f"fanout: {workers} workers did not finish in {RUN_TIMEOUT_S:.0f} s: {record}")
            time.sleep(0.25)
        wall = time.monotonic() - started
    finally:
        stop.set()
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    status = h.run_async(get_sync_status(settings)).to_dict()
    if status["status"] != "healthy" or status["scopesSynced"] != sweep.scopes_enqueued:
        raise ScenarioBroken(f"fanout: {workers} workers: status {status['status']}, {status['scopesSynced']} synced")
    return {"wall_s": round(wall, 2), "sweep_s": round(sweep.duration_ms / 1000, 2)}


def run(ctx: BenchContext) -> dict[str, Any]:
    import boto3

    from devtools.event_source import create_work_queue
    from devtools.localdb import moto_server

    account_count = ACCOUNTS if ctx.sizes.mode == "full" else QUICK_ACCOUNTS
    spec = h.EstateSpec(accounts=account_count, regions=REGIONS, instances_per_scope=1)
    bound = bound_for(spec, FAULTS)
    measured: dict[str, Any] = {}
    with h.SimulatorProcess(spec) as sim, moto_server() as sqs_server:
        accounts = sim.estate()["accounts"]
        sqs = boto3.client("sqs", endpoint_url=sqs_server.endpoint_url, region_name=REGIONS[0])
        for workers in WORKERS:
            settings = h.seeded_settings(ctx.dynamodb_url, sim, accounts, [], f"fanout-{workers}")
            queue = create_work_queue(sqs, f"bench-fanout-{workers}", visibility_timeout_s=900)
            settings = settings.with_changes(
                fanout="on",
                work_queue_url=queue.url,
                endpoint_urls=(*settings.endpoint_urls, ("sqs", sqs_server.endpoint_url)),
            )
            sim.set_faults(FAULTS)
            sim.reset_calls()
            ctx.log(f"fanout: {spec.scopes} scopes, {workers} worker(s), batches of {BATCH_SIZE}")
            measured[str(workers)] = measure(settings, queue, sqs_server.endpoint_url, workers)
            measured[str(workers)]["throttled_calls"] = h.throttled_calls(sim.calls())
            ctx.log(f"fanout: {workers} worker(s): {measured[str(workers)]['wall_s']} s (bound {bound.seconds:.1f} s)")
            h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    return {
        "fanout": {
            "scopes": spec.scopes,
            "lower_bound_s": round(bound.seconds, 3),
            "workers": {n: values["wall_s"] for n, values in measured.items()},
            "runs": measured,
            "batch_size": BATCH_SIZE,
            "batch_window_s": BATCH_WINDOW_S,
            "latency_ms": FAULTS.latency_ms,
            "tps_per_scope": FAULTS.tps_per_scope,
            "dynamodb": ctx.dynamodb_backend,
        }
    }
