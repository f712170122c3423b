"""Where a cold full sync's memory goes (issue 24 item 3):
``python -m benchmarks.experiments.cold_sync_memory [--accounts N] [--frames F]``.

The large scenario's estate (100 accounts x 4 regions x 125 instances, its faults) is synced cold
in a fresh process twice: once with RSS sampled every 50 ms beside the scopes' progress (how many
finished, how many have DRS's listing in hand), once under ``tracemalloc`` with a snapshot each
time the traced memory reaches a new high (at most every 2 s), whose top allocation sites (by
line, and by file) are printed. ``tracemalloc`` slows the run; the RSS run is the production one.
"""

from __future__ import annotations

import argparse
import threading
import time
import tracemalloc
from typing import Any

from benchmarks import harness as h
from benchmarks.sizes import FULL


def _sampled_sync(settings: Any) -> dict[str, Any]:
    """One cold sync with RSS sampled beside its progress: the peak and when it happened."""
    from benchmarks.variants import _quiet, _warm_container

    _quiet()
    _warm_container(settings)
    from syncengine.sync.engine import sync_all

    finished = [0]
    samples: list[tuple[float, float, int]] = []
    stop = threading.Event()
    started = time.perf_counter()

    def sample() -> None:
        while not stop.wait(0.05):
            samples.append((time.perf_counter() - started, h.rss_mb_self(), finished[0]))

    class Progress:
        def start(self, total: int) -> None:
            pass

        def advance(self, result: Any) -> None:
            finished[0] += 1

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    report = h.run_async(sync_all(settings, progress=Progress()))
    stop.set()
    thread.join()
    peak = max(samples, key=lambda s: s[1])
    timeline = [(round(t, 1), round(rss), done) for t, rss, done in samples[:: max(len(samples) // 40, 1)]]
    return {
        "status": report.status.value,
        "instances": report.instances_found,
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(h.peak_rss_mb_self(), 1),
        "peak_sample": {"t_s": round(peak[0], 1), "rss_mb": round(peak[1]), "scopes_finished": peak[2]},
        "timeline": timeline,
    }


def _traced_sync(settings: Any, frames: int) -> dict[str, Any]:
    """One cold sync under tracemalloc; the snapshot at the highest traced memory, summarised."""
    from benchmarks.variants import _quiet, _warm_container

    _quiet()
    _warm_container(settings)
    from syncengine.sync.engine import sync_all

    tracemalloc.start(frames)
    best: dict[str, Any] = {"size": 0, "snapshot": None}
    stop = threading.Event()

    def watch() -> None:
        last = 0.0
        while not stop.wait(0.1):
            current, _ = tracemalloc.get_traced_memory()
            if current > best["size"] * 1.05 and time.monotonic() - last > 2.0:
                best["size"] = current
                best["snapshot"] = tracemalloc.take_snapshot()
                last = time.monotonic()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    report = h.run_async(sync_all(settings))
    stop.set()
    thread.join()
    _, peak = tracemalloc.get_traced_memory()
    snapshot = best["snapshot"]
    tracemalloc.stop()
    out: dict[str, Any] = {"status": report.status.value, "traced_peak_mb": round(peak / 2**20, 1)}
    if snapshot is not None:
        snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        out["snapshot_mb"] = round(best["size"] / 2**20, 1)
        out["by_line"] = [
            (str(stat.traceback[0]), round(stat.size / 2**20, 1), stat.count)
            for stat in snapshot.statistics("lineno")[:30]
        ]
        out["by_file"] = [
            (stat.traceback[0].filename, round(stat.size / 2**20, 1)) for stat in snapshot.statistics("filename")[:15]
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments.cold_sync_memory")
    parser.add_argument("--accounts", type=int, default=FULL.large.accounts)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--skip-traced", action="store_true")
    parser.add_argument("--steady", action="store_true", help="also the steady-state sync after a cold one")
    args = parser.parse_args()
    h.isolate_from_aws()
    from devtools.localdb import embedded_dynamodb

    spec = h.EstateSpec(args.accounts, FULL.large.regions, FULL.large.instances_per_scope)
    with embedded_dynamodb(prefer="auto") as db, h.SimulatorProcess(spec) as sim:
        accounts = sim.estate()["accounts"]
        history = h.seeded_execution_history(sim.endpoint_url, accounts)
        runs = [("rss", _sampled_sync, (), {})]
        if args.steady:
            runs.append(("rss, steady state", _sampled_sync, (), {}))
        if not args.skip_traced:
            runs.append(("traced", _traced_sync, (args.frames,), {}))
        for name, function, extra, overrides in runs:
            settings = h.seeded_settings(db.endpoint_url, sim, accounts, history, "mem", **overrides)
            sim.set_faults(FULL.large_faults)
            if "steady" in name:
                from syncengine.sync.engine import sync_all

                h.run_async(sync_all(settings))
                sim.set_faults(FULL.large_faults)
            result = h.in_fresh_process(function, settings, *extra)
            h.run_async(h.drop_tables(db.endpoint_url, settings.tables))
            print(f"== {name}", flush=True)
            for key, value in result.items():
                if isinstance(value, list):
                    print(f"{key}:")
                    for row in value:
                        print(f"  {row}")
                else:
                    print(f"{key}: {value}")


if __name__ == "__main__":
    main()
