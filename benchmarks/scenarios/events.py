"""events: event-to-cache latency of the refresh function under a steady event rate, and DRS calls
per event.

A producer thread changes the simulated estate at a steady rate (EC2 stop/start of cached
recovery instances, through ``/_simulator/ec2``); the simulator records the EC2 state-change
event of each change. A poller does what an SQS event source mapping does: it collects what
arrived for up to ``BATCH_WINDOW_S`` (at most ``MAX_BATCH`` messages), invokes
``handlers.refresh.lambda_handler`` with the SQS batch shape, and repeats. Latency of an event:
from the moment its change was made to the end of the invocation that wrote it to the cache.

Baseline beside it, on the same stream: batches of one message (no coalescing), the DRS calls a
handler without coalescing would make. The SQS queue itself (moto) belongs to the fan-out part of
issue 14; the poller here stands in for it with the same batch semantics.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from typing import Any

from benchmarks import harness as h
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.scenarios.small_estate import sync_cache
from benchmarks.sizes import BenchContext
from handlers import dependencies
from syncengine.core.config import SyncSettings
from syncengine.sync.engine import open_runtime

BATCH_WINDOW_S = 0.2
MAX_BATCH = 10  # SQS's default batch size for a Lambda event source mapping
INSTANCES = 40


def sqs_batch(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"bench-{index}",
                "receiptHandle": f"bench-{index}",
                "body": json.dumps(event),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:bench-refresh",
                "awsRegion": "us-east-1",
            }
            for index, event in enumerate(events)
        ]
    }


async def cached_states(settings: SyncSettings) -> dict[str, str]:
    """EC2 instance id -> cached EC2 state (``ec2InstanceState``, EC2's lower-case name), of the first
    ``INSTANCES`` records by source server."""
    async with open_runtime(settings) as rt:
        items = await rt.dynamo.scan_all(settings.tables.cache)
    chosen = sorted(items, key=lambda item: item["sourceServerId"])[:INSTANCES]
    return {item["ec2InstanceId"]: item["ec2InstanceState"] for item in chosen}


class Producer(threading.Thread):
    """Toggles instances between stopped and running at ``rate`` changes a second."""

    def __init__(self, sim: h.SimulatorProcess, states: Mapping[str, str], count: int, rate: float) -> None:
        super().__init__(name="events-producer", daemon=True)
        self.sim, self.count, self.rate = sim, count, rate
        self.states = dict(states)
        # (instance, state) -> when each such change was made, oldest first.
        self.changed_at: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            start = time.monotonic()
            instances = itertools.cycle(sorted(self.states))
            for index, instance in zip(range(self.count), instances, strict=False):
                time.sleep(max(0.0, start + index / self.rate - time.monotonic()))
                state = "stopped" if self.states[instance] == "running" else "running"
                self.changed_at[(instance, state)].append(time.monotonic())
                self.sim.control("POST", "/_simulator/ec2", {"instanceId": instance, "changes": {"state": state}})
                self.states[instance] = state
        except BaseException as exc:  # reported by the poller
            self.error = exc


def deliver_stream(sim: h.SimulatorProcess, producer: Producer, max_batch: int) -> list[float]:
    """Poll, batch and invoke until the producer is done and every event was delivered."""
    from handlers.refresh import lambda_handler

    latencies: list[float] = []
    pending: list[dict[str, Any]] = []
    producer.start()
    while True:
        producing = producer.is_alive()
        if not pending:
            time.sleep(BATCH_WINDOW_S)
        pending += sim.control("POST", "/_simulator/events/drain")["events"]
        if not pending:
            if producing:
                continue
            break
        batch, pending = pending[:max_batch], pending[max_batch:]
        answer = lambda_handler(sqs_batch(batch), None)
        if answer["batchItemFailures"]:
            raise ScenarioBroken(f"events: messages failed: {answer}")
        done = time.monotonic()
        for event in batch:
            key = (event["detail"]["instance-id"], event["detail"]["state"])
            latencies.append(done - producer.changed_at[key].popleft())
    if producer.error is not None:
        raise ScenarioBroken(f"events: the producer failed: {producer.error}")
    return latencies


def measure(
    sim: h.SimulatorProcess, states: Mapping[str, str], count: int, rate: float, max_batch: int
) -> dict[str, Any]:
    sim.control("POST", "/_simulator/events/drain")
    sim.reset_calls()
    producer = Producer(sim, states, count, rate)
    latencies = deliver_stream(sim, producer, max_batch)
    if len(latencies) != count:
        raise ScenarioBroken(f"events: {len(latencies)} of {count} events delivered")
    by_operation: Mapping[str, int] = sim.calls().get("byOperation", {})
    drs = sum(n for operation, n in by_operation.items() if operation.startswith("drs:Describe"))
    return {
        "events": count,
        "p50_ms": round(h.percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(h.percentile(latencies, 0.99) * 1000, 1),
        "drs_calls_per_event": round(drs / count, 3),
        "final_states": dict(producer.states),
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    sizes = ctx.sizes
    count, rate = (200, 10.0) if sizes.mode == "full" else (40, 5.0)
    with h.SimulatorProcess(sizes.small) as sim:
        estate = sim.estate()
        settings = h.seeded_settings(ctx.dynamodb_url, sim, estate["accounts"], [], "events")
        sync_cache(settings, int(estate["recoveryInstances"]))
        start = h.run_async(cached_states(settings))
        sim.set_faults(sizes.small_faults)
        dependencies.configure(settings=settings)
        try:
            ctx.log(f"events: {count} EC2 state changes at {rate:g}/s, batches of up to {MAX_BATCH}")
            coalesced = measure(sim, start, count, rate, MAX_BATCH)
            ctx.log("events: baseline, batches of one message")
            single = measure(sim, coalesced["final_states"], count, rate, 1)
            cached = h.run_async(cached_states(settings))
        finally:
            dependencies.reset()
        h.run_async(h.drop_tables(ctx.dynamodb_url, settings.tables))
    if cached != single["final_states"]:
        raise ScenarioBroken("events: the cache does not hold the instances' final states")
    section = {
        **{k: v for k, v in coalesced.items() if k != "final_states"},
        "rate_per_s": rate,
        "batch_window_ms": int(BATCH_WINDOW_S * 1000),
        "max_batch": MAX_BATCH,
        "unbatched": {k: v for k, v in single.items() if k != "final_states"},
        "simulator_latency_ms": sizes.small_faults.latency_ms,
        "dynamodb": ctx.dynamodb_backend,
    }
    ctx.log(
        f"events: p50 {section['p50_ms']} ms, p99 {section['p99_ms']} ms, "
        f"{section['drs_calls_per_event']} DRS calls/event (unbatched {single['drs_calls_per_event']})"
    )
    return {"events": section}
