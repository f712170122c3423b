"""What one fan-out worker's batch costs (``python -m benchmarks.experiments.fanout_worker [ACCOUNTS]
[--profile FILE]``): the fanout benchmark's CPU, one batch at a time.

The fanout scenario's estate kind (``benchmarks/scenarios/fanout.py``: one instance a scope, a
DRS token per 20 s per scope, 200 ms a call) with ``ACCOUNTS`` accounts (default 32: 128 scopes,
16 messages), swept onto moto's SQS and taken by one worker process in one batch, as the scenario
runs it. Printed: the batch's wall time and CPU seconds, the AWS calls the simulator answered and
the DynamoDB calls the worker made, by operation. With ``--profile``, the batch runs under
pyinstrument and its text summary goes to FILE (the profiler's overhead shows in the CPU then).

Run it on two commits (a worktree and ``PYTHONPATH``) to see where a change moved the workers'
CPU: same estate, same calls, so the difference is per call.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from typing import Any

from benchmarks import harness as h
from benchmarks.scenarios import fanout

DEFAULT_ACCOUNTS = 32
# The worker runs in a spawned interpreter: ``main`` hands it the profile's path in the environment.
PROFILE_ENV = "FANOUT_WORKER_PROFILE"


def worker_main(settings: Any, queue: Any, sqs_url: str, batch: int, ready: Any, stop: Any, report: Any) -> None:
    """``fanout.worker_main``, reporting one batch's CPU and DynamoDB calls (and its profile)."""
    import boto3

    from syncengine.core.logging import configure_logging

    configure_logging(level="WARNING")
    from devtools.event_source import EventSourcePoller
    from handlers import dependencies
    from handlers.refresh import lambda_handler
    from syncengine.dynamodb.client import CallObserver

    class Counted(CallObserver):
        def __init__(self) -> None:
            self.calls: Counter[str] = Counter()

        def before(self, operation: str, params: dict[str, Any]) -> None:
            self.calls[operation] += 1

    dependencies.configure(settings=settings)
    sqs = boto3.client("sqs", endpoint_url=sqs_url, region_name=queue.region)
    poller = EventSourcePoller(
        sqs, queue, lambda_handler, batch_size=batch, batch_window_s=fanout.BATCH_WINDOW_S, idle_wait_s=1
    )
    ready.set()
    while not stop.is_set():
        messages = poller.receive_batch()
        if not messages:
            continue
        counted, profiler = Counted(), None
        profile_to = os.environ.get(PROFILE_ENV, "")
        if profile_to:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001, async_mode="disabled")
            profiler.start()
        began, cpu = time.monotonic(), time.process_time()
        with counted.observing():
            outcome = poller.invoke(messages)
        wall, cpu = time.monotonic() - began, time.process_time() - cpu
        if profiler is not None:
            profiler.stop()
            with open(profile_to, "w", encoding="utf-8") as out:
                out.write(profiler.output_text(unicode=False, color=False, show_all=True))
        report.put(
            {
                "invoked_at": began,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "messages": len(messages),
                "failed": len(outcome.failed),
                "dynamodb_calls": dict(sorted(counted.calls.items())),
            }
        )


def run(accounts: int) -> dict[str, Any]:
    import boto3

    from devtools.event_source import create_work_queue
    from devtools.localdb import embedded_dynamodb
    from syncengine.core.models import Scope

    spec = h.EstateSpec(accounts=accounts, regions=fanout.REGIONS, instances_per_scope=1)
    with (
        embedded_dynamodb(prefer="auto") as db,
        h.SimulatorProcess(spec) as sim,
        fanout.sqs_server_process() as (sqs_url, sqs_pid),
    ):
        estate = sim.estate()["accounts"]
        scopes = [Scope(a["accountId"], region) for a in estate for region in fanout.REGIONS]
        settings = h.seeded_settings(db.endpoint_url, sim, estate, [], "fanout-worker")
        sqs = boto3.client("sqs", endpoint_url=sqs_url, region_name=fanout.REGIONS[0])
        queue = create_work_queue(sqs, "experiment-fanout-worker", visibility_timeout_s=900)
        settings = settings.with_changes(
            fanout="on", work_queue_url=queue.url, endpoint_urls=(*settings.endpoint_urls, ("sqs", sqs_url))
        )
        sim.set_faults(fanout.FAULTS)
        sim.reset_calls()
        pids = {"simulator": sim.pid, "dynamodb": db.pid, "sqs": sqs_pid}
        measured = fanout.measure(settings, queue, sqs_url, 1, fanout.batch_size(scopes, 1), pids)
        calls = sim.calls()
    return {
        "scopes": len(scopes),
        "wall_s": measured["wall_s"],
        "cpu_s": measured["cpu_s"],
        "invocations": measured["invocations"],
        "aws_calls": calls.get("byOperation", {}),
        "throttled_calls": h.throttled_calls(calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("accounts", nargs="?", type=int, default=DEFAULT_ACCOUNTS)
    parser.add_argument("--profile", metavar="FILE", help="pyinstrument's text summary of the batch")
    args = parser.parse_args()
    h.isolate_from_aws()
    if args.profile:
        os.environ[PROFILE_ENV] = os.path.abspath(args.profile)
    fanout.worker_main = worker_main  # the scenario's measure() spawns this module's worker
    print(json.dumps(run(args.accounts), indent=1))


if __name__ == "__main__":
    main()
