"""When a latency_bound sync's calls go out (``python -m benchmarks.experiments.latency_timeline
[--status-concurrency N] [--runs K]``): the measurement behind the latency_bound lines of RESULTS.md.

The full latency_bound estate and faults (``benchmarks/sizes.py``: 200 scopes, one DRS token per
20 s per scope, 200 ms a call) on the embedded DynamoDB; the engine alone (no thread-pool peer),
each run in a fresh process warmed as a syncing function's init phase warms it. Printed per run:
the wall and CPU time, and for each kind of call (AWS operations, DynamoDB operations by table,
the scope leases) how many, and when they started and ended (min / median / max seconds after the
sync began); then the collector's pass when the run's GC thresholds are restored.

A scope's wall is its first throttled DRS call plus the 20 s Retry-After, so the start of the last
``drs:DescribeSourceServers`` says most of where the run ends. ``--status-concurrency`` runs the
engine with another limit on its status and lease calls (``syncengine.runtime.STATUS_CONCURRENCY``).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import defaultdict
from typing import Any

from benchmarks import harness as h
from benchmarks.sizes import FULL


def timed_sync(settings: Any, status_concurrency: int | None) -> dict[str, Any]:
    """One engine sync with every AWS call, DynamoDB call and scope lease timestamped."""
    from benchmarks.variants import _quiet, _warm_container

    _quiet()
    _warm_container(settings)
    import syncengine.runtime as runtime
    from syncengine.aws.clients import AwsClients
    from syncengine.dynamodb.client import CallObserver
    from syncengine.sync.engine import sync_all
    from syncengine.tables.status import StatusStore

    if status_concurrency is not None:
        runtime.STATUS_CONCURRENCY = status_concurrency
    began = [0.0]
    spans: dict[str, list[tuple[float, float | None]]] = defaultdict(list)
    collections: list[tuple[float, float]] = []

    def now() -> float:
        return time.perf_counter() - began[0]

    def timed(kind: Any, method: str, label: Any) -> None:
        original = getattr(kind, method)

        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            started = now()
            try:
                return await original(self, *args, **kwargs)
            finally:
                spans[label(args, kwargs)].append((started, now()))

        setattr(kind, method, wrapper)

    timed(AwsClients, "call", lambda args, _kw: f"aws {args[2].operation}")
    timed(StatusStore, "take_scope_lease", lambda _args, _kw: "lease")

    tables = {name: role for role, name in vars(settings.tables).items()}

    class Sent(CallObserver):
        def before(self, operation: str, params: dict[str, Any]) -> None:
            names = [params["TableName"]] if "TableName" in params else list(params.get("RequestItems") or ())
            table = ",".join(tables.get(name, name) for name in names)
            spans[f"dynamodb {operation} {table}"].append((now(), None))

    collecting = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collecting[0] = time.perf_counter()
        elif info["generation"] > 0:
            collections.append((now(), time.perf_counter() - collecting[0]))

    gc.callbacks.append(on_gc)
    cpu = time.process_time()
    with Sent().observing():
        began[0] = time.perf_counter()
        report = h.run_async(sync_all(settings))
        wall = now()
    gc.callbacks.remove(on_gc)
    return {
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu,
        "scopes_failed": report.scopes_failed,
        "spans": dict(spans),
        "collections": collections,
    }


def _spread(values: list[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "     -      -      -"
    return f"{ordered[0]:6.2f} {ordered[len(ordered) // 2]:6.2f} {ordered[-1]:6.2f}"


def summary(run: dict[str, Any]) -> str:
    lines = [f"wall {run['wall_s']:.2f} s, CPU {run['cpu_s']:.2f} s, scopes failed {run['scopes_failed']}"]
    lines.append(f"{'calls':48} {'n':>5}   started (min med max)   ended (min med max)")
    for name, spans in sorted(run["spans"].items()):
        ends = [end for _, end in spans if end is not None]
        lines.append(f"{name[:48]:48} {len(spans):5}   {_spread([s for s, _ in spans])}   {_spread(ends)}")
    late = [f"{duration:.2f} s at {at:.2f} s" for at, duration in run["collections"] if duration > 0.05]
    lines.append(f"older-generation collections over 50 ms: {', '.join(late) or 'none'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status-concurrency", type=int, default=None)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    h.isolate_from_aws()
    from devtools.localdb import embedded_dynamodb

    spec, faults = FULL.latency, FULL.latency_faults
    with embedded_dynamodb(prefer="auto") as db, h.SimulatorProcess(spec) as sim:
        accounts = sim.estate()["accounts"]
        history = h.seeded_execution_history(sim.endpoint_url, accounts)
        for number in range(args.runs):
            settings = h.seeded_settings(db.endpoint_url, sim, accounts, history, f"timeline-{number}")
            sim.set_faults(faults)
            run = h.in_fresh_process(timed_sync, settings, args.status_concurrency)
            print(summary(run), flush=True)
            h.run_async(h.drop_tables(db.endpoint_url, settings.tables))


if __name__ == "__main__":
    main()
