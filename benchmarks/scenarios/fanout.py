"""fanout: the full sync fanned out over the work queue (SYNC_FANOUT=on) to 1, 4 and 8 local
workers, on a latency-bound estate of 2,000 scopes (200 with --quick); wall time against the
estate's lower bound.

The estate is the latency_bound scenario's kind (one DRS token per 20 s per scope, 200 ms per
call: every scope waits ~20 s on its rate limit) with one instance per scope. The queue is moto's
SQS; the sweep packs the scopes in messages of ``SCOPES_PER_MESSAGE`` (the product default, an
account's regions together); each worker is a process running ``devtools.event_source`` (what
Lambda's event source mapping does, long polling) with ``handlers.refresh.lambda_handler``: one
worker is one Lambda concurrency slot, handling one batch at a time. Wall time: from the sweep's
start until the run record counts every scope (the last worker wrote the summary). Baseline
beside it: the lower bound of the estate (``benchmarks.lower_bound``; no implementation can beat
it), and the 1-worker run.

Batch size and window, from scopes and workers: every scope of this estate waits ~20 s on its DRS
rate limit, so a second round of batches costs another 20 s. Deployed, Lambda's pollers start
five concurrent batches and add up to 300 a minute, up to ``MaximumConcurrency``
(https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html): 250 messages in
batches of 10 are all in flight at once. Here concurrency is capped at ``workers``, so the batch
size is ``ceil(messages / workers)`` (one round, as the deployed mapping achieves by scaling out),
and the window (``BATCH_WINDOW_S``, 3 s; Lambda requires at least 1 s above 10 messages,
MaximumBatchingWindowInSeconds in the CreateEventSourceMapping API reference) must outlast the
sweep's enqueueing: a batch invoked half full leaves messages for a second round, 20 s later. The
last worker's batch is short and waits the window out. One worker alone cannot receive 250
messages from moto within the window: its run takes two rounds (a baseline, not the goal). moto's
SQS server runs in its own process, as SQS does: in this one it would share the interpreter lock
with the sweep.

Measured costs behind these choices (``benchmarks/RESULTS.md``, "fanout"): moto's SQS spends
O(queue length) per message sent and received (its retention check recomputes every queue
attribute), 0.78 s per ReceiveMessage on 2,000 messages; groups of up to 10 scopes (an account's
4 regions together: 8 a message) keep the queue at 250 messages, ~2 s of moto CPU a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import queue as queue_module
import time
from collections.abc import Iterator
from typing import Any

from benchmarks import harness as h
from benchmarks.lower_bound import bound_for
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.sizes import BenchContext
from syncengine.core.config import DEFAULT_FANOUT_SCOPES_PER_MESSAGE
from syncengine.core.models import Scope
from syncengine.sync.fanout import scope_groups

ACCOUNTS = 500
# --quick (CI) proves the path on a tenth of the estate in about a minute; --full measures 2,000 scopes.
QUICK_ACCOUNTS = 50
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2")
TPS_PER_SCOPE = 0.05
FAULTS = h.Faults(latency_ms=200, tps_per_scope=TPS_PER_SCOPE, burst_per_scope=1, retry_after_seconds=1 / TPS_PER_SCOPE)
# The sweep's messages carry the product's default group of scopes.
SCOPES_PER_MESSAGE = DEFAULT_FANOUT_SCOPES_PER_MESSAGE
# Long enough for the sweep to enqueue every message (~1 s here) so that every batch but the last
# fills; the last, short one waits it out (Lambda accepts 1 s or more above 10 messages).
BATCH_WINDOW_S = 3.0
# Long polling while the queue is empty (SQS WaitTimeSeconds, whole seconds).
IDLE_WAIT_S = 1
WORKERS = (1, 4, 8)
RUN_TIMEOUT_S = 600.0
PROGRESS_POLL_S = 0.25


def batch_size(scopes: list[Scope], workers: int) -> int:
    """Messages per invocation so that ``workers`` concurrent batches take every message at once."""
    messages = len(scope_groups(scopes, SCOPES_PER_MESSAGE))
    return max(1, math.ceil(messages / workers))


def worker_main(settings: Any, queue: Any, sqs_url: str, batch: int, ready: Any, stop: Any, report: Any) -> None:
    """One local worker: poll the queue and invoke the refresh function until told to stop; each
    invocation's timing (monotonic clock, shared by the machine's processes) goes to ``report``."""
    import boto3

    from syncengine.core.logging import configure_logging

    configure_logging(level="WARNING")  # one summary line per scope would flood the run's output
    from devtools.event_source import EventSourcePoller
    from handlers import dependencies
    from handlers.refresh import lambda_handler

    dependencies.configure(settings=settings)
    sqs = boto3.client("sqs", endpoint_url=sqs_url, region_name=queue.region)
    poller = EventSourcePoller(
        sqs, queue, lambda_handler, batch_size=batch, batch_window_s=BATCH_WINDOW_S, idle_wait_s=IDLE_WAIT_S
    )
    ready.set()
    while not stop.is_set():
        messages = poller.receive_batch()  # an empty queue answers after the long poll's IDLE_WAIT_S
        if not messages:
            continue
        began, cpu = time.monotonic(), time.process_time()
        outcome = poller.invoke(messages)
        report.put(
            {
                "invoked_at": began,
                "wall_s": round(time.monotonic() - began, 2),
                "cpu_s": round(time.process_time() - cpu, 2),
                "messages": len(messages),
                "failed": len(outcome.failed),
            }
        )


async def _sweep_until_counted(settings: Any, started: float) -> tuple[Any, float]:
    """The sweep, then the run record read every PROGRESS_POLL_S (one runtime, as one client
    would) until it counts every scope; the sweep's report and the wall time."""
    from syncengine.sync.engine import open_runtime, sync_all

    sweep = await sync_all(settings)
    async with open_runtime(settings) as rt:
        while True:
            record = await rt.status.fanout_run() or {}
            if int(record.get("finished", -1)) >= int(record.get("total", 0)) > 0:
                return sweep, time.monotonic() - started
            if time.monotonic() - started > RUN_TIMEOUT_S:
                raise ScenarioBroken(f"fanout: not finished in {RUN_TIMEOUT_S:.0f} s: {record}")
            await asyncio.sleep(PROGRESS_POLL_S)


def measure(
    settings: Any, queue: Any, sqs_url: str, workers: int, batch: int, pids: dict[str, int | None]
) -> dict[str, Any]:
    from syncengine.sync.engine import get_sync_status

    context = multiprocessing.get_context("spawn")
    stop, report = context.Event(), context.Queue()
    readies = [context.Event() for _ in range(workers)]
    processes = [
        context.Process(target=worker_main, args=(settings, queue, sqs_url, batch, ready, stop, report), daemon=True)
        for ready in readies
    ]
    for process in processes:
        process.start()
    try:
        for ready in readies:
            if not ready.wait(120):
                raise ScenarioBroken("fanout: a worker did not start")
        cpu_before = _cpu_seconds(pids, processes)
        started = time.monotonic()
        sweep, wall = h.run_async(_sweep_until_counted(settings, started))
        cpu = {name: round(after - cpu_before[name], 2) for name, after in _cpu_seconds(pids, processes).items()}
    finally:
        stop.set()
        for process in processes:
            process.join(IDLE_WAIT_S + 10)
            if process.is_alive():
                process.kill()
    status = h.run_async(get_sync_status(settings)).to_dict()
    if status["status"] != "healthy" or status["scopesSynced"] != sweep.scopes_enqueued:
        raise ScenarioBroken(f"fanout: {workers} workers: status {status['status']}, {status['scopesSynced']} synced")
    invocations = sorted(_drain(report), key=lambda i: i["invoked_at"])
    for invocation in invocations:
        invocation["invoked_at"] = round(invocation["invoked_at"] - started, 2)
    sweep_s = round(sweep.duration_ms / 1000, 2)
    return {"wall_s": round(wall, 2), "sweep_s": sweep_s, "cpu_s": cpu, "invocations": invocations}


def _cpu_seconds(pids: dict[str, int | None], workers: list[Any]) -> dict[str, float]:
    """CPU so far of the simulator, the DynamoDB server, moto's SQS server, this process (the
    sweep and the progress reads) and the workers together."""
    values = {name: h.process_cpu_seconds(pid) for name, pid in pids.items()}
    values["sweep"] = h.cpu_seconds_self()
    values["workers"] = sum(h.process_cpu_seconds(p.pid) for p in workers)
    return values


def _drain(report: Any) -> list[dict[str, Any]]:
    items = []
    while True:
        try:
            items.append(report.get(timeout=1))
        except queue_module.Empty:
            return items


def _sqs_server_main(conn: Any, stop: Any) -> None:
    from devtools.localdb import moto_server

    with moto_server() as server:
        conn.send((server.endpoint_url, os.getpid()))
        stop.wait()


@contextlib.contextmanager
def sqs_server_process() -> Iterator[tuple[str, int]]:
    """moto's server (SQS) in a process of its own: its endpoint and pid."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    stop = context.Event()
    process = context.Process(target=_sqs_server_main, args=(child, stop), daemon=True)
    process.start()
    try:
        if not parent.poll(120):
            raise ScenarioBroken("fanout: moto's SQS server did not start")
        url, pid = parent.recv()
        yield url, pid
    finally:
        stop.set()
        process.join(10)
        if process.is_alive():
            process.kill()


def run(ctx: BenchContext) -> dict[str, Any]:
    import boto3

    from devtools.event_source import create_work_queue

    account_count = ACCOUNTS if ctx.sizes.mode == "full" else QUICK_ACCOUNTS
    spec = h.EstateSpec(accounts=account_count, regions=REGIONS, instances_per_scope=1)
    bound = bound_for(spec, FAULTS)
    measured: dict[str, Any] = {}
    with h.SimulatorProcess(spec) as sim, sqs_server_process() as (sqs_url, sqs_pid):
        accounts = sim.estate()["accounts"]
        scopes = [Scope(a["accountId"], region) for a in accounts for region in REGIONS]
        sqs = boto3.client("sqs", endpoint_url=sqs_url, region_name=REGIONS[0])
        for workers in WORKERS:
            settings = h.seeded_settings(ctx.dynamodb_url, sim, accounts, [], f"fanout-{workers}")
            queue = create_work_queue(sqs, f"bench-fanout-{workers}", visibility_timeout_s=900)
            settings = settings.with_changes(
                fanout="on",
                work_queue_url=queue.url,
                endpoint_urls=(*settings.endpoint_urls, ("sqs", sqs_url)),
            )
            sim.set_faults(FAULTS)
            sim.reset_calls()
            batch = batch_size(scopes, workers)
            ctx.log(f"fanout: {spec.scopes} scopes, {workers} worker(s), batches of {batch} messages")
            pids = {"simulator": sim.pid, "dynamodb": ctx.dynamodb_pid, "sqs": sqs_pid}
            measured[str(workers)] = measure(settings, queue, sqs_url, workers, batch, pids)
            measured[str(workers)]["batch_size"] = batch
            measured[str(workers)]["load_average"] = h.load_average()
            measured[str(workers)]["throttled_calls"] = h.throttled_calls(sim.calls())
            ctx.log(f"fanout: {workers} worker(s): {measured[str(workers)]['wall_s']} s (bound {bound.seconds:.1f} s)")
            h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    return {
        "fanout": {
            "scopes": spec.scopes,
            "lower_bound_s": round(bound.seconds, 3),
            "workers": {n: values["wall_s"] for n, values in measured.items()},
            "runs": measured,
            "scopes_per_message": SCOPES_PER_MESSAGE,
            "batch_window_s": BATCH_WINDOW_S,
            "latency_ms": FAULTS.latency_ms,
            "tps_per_scope": FAULTS.tps_per_scope,
            "dynamodb": ctx.dynamodb_backend,
        }
    }
