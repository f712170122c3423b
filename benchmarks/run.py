"""Run the benchmarks: ``python -m benchmarks.run --quick|--full [--only SCENARIO ...]``.

``--quick`` is CI-sized (the whole suite within 3 minutes on 2 cores) and writes
``benchmarks/results/quick.json``; ``--full`` is the measurement: ``benchmarks/results/latest.json``,
the scaling plot and the generated block of ``benchmarks/RESULTS.md``. The exit status is non-zero
only when a scenario breaks (an exception, wrong counts, failed scopes), never because a number
missed its goal: goals are reported, not enforced.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.results import LATEST, QUICK, RESULTS_DIR, machine_info, missing_keys, write_results
from benchmarks.sizes import FULL, BenchContext, Sizes
from benchmarks.sizes import QUICK as QUICK_SIZES

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"

# Scenario name -> module under benchmarks.scenarios; in running order. large also writes
# steady_state; scaling reuses large's point, so it runs after it.
ORDER = (
    "large",
    "scaling",
    "profile",
    "latency_bound",
    "read",
    "cold_read",
    "terminate",
    "events",
    "fanout",
    "history_cost",
    "cost",
    "origin",
)
ALIASES = {"steady_state": "large"}
# Document sections each scenario writes (a broken scenario marks all of them broken).
SECTIONS = {"large": ("large", "steady_state")}
# A worker running longer than this is killed and its scenario reported broken.
WORKER_TIMEOUT = {"quick": 120.0, "full": 900.0}


def selected_scenarios(sizes: Sizes, only: Sequence[str]) -> list[str]:
    if only:
        wanted = {ALIASES.get(name, name) for name in only}
        unknown = wanted - set(ORDER)
        if unknown:
            raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from {', '.join(ORDER)}")
        return [name for name in ORDER if name in wanted]
    names = list(ORDER)
    if not sizes.scaling_accounts:
        names.remove("scaling")
    if not sizes.profile:
        names.remove("profile")
    return names


def run_scenarios(sizes: Sizes, names: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    from devtools.localdb import embedded_dynamodb

    broken: list[str] = []
    with embedded_dynamodb(prefer="auto") as db:
        document: dict[str, Any] = {"machine": machine_info(db.backend, sizes.mode)}
        ctx = BenchContext(
            sizes=sizes,
            dynamodb_url=db.endpoint_url,
            dynamodb_backend=db.backend,
            dynamodb_pid=db.pid,
            results_dir=RESULTS_DIR,
            document=document,
        )
        started = time.monotonic()
        for name in names:
            print(f"[{time.monotonic() - started:6.1f} s] {name}", flush=True)
            module = importlib.import_module(f"benchmarks.scenarios.{name}")
            try:
                produced = module.run(ctx)
            except Exception as exc:  # a broken scenario is reported and fails the run
                broken.append(name)
                traceback.print_exc()
                for section in SECTIONS.get(name, (name,)):
                    document[section] = {"broken": f"{type(exc).__name__}: {exc}"[:1000]}
                # What was measured before it broke stays, marked broken, as evidence.
                document.update(getattr(exc, "sections", {}) or {})
            else:
                # Which code and when: a later ``--only`` run merges into the same file.
                stamp = {key: document["machine"][key] for key in ("git_commit", "engine_tree_dirty", "started_at")}
                for section in produced.values():
                    section["measured"] = stamp
                document.update(produced)
        document["machine"]["load_average_end"] = harness.load_average()
        document["machine"]["duration_s"] = round(time.monotonic() - started, 1)
    return document, broken


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="CI-sized: the suite within 3 minutes")
    mode.add_argument("--full", action="store_true", help="the full measurement (latest.json, RESULTS.md)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help=f"run only these scenarios (repeatable; {', '.join((*ORDER, *ALIASES))})",
    )
    args = parser.parse_args(argv)
    harness.isolate_from_aws()
    sizes = QUICK_SIZES if args.quick else FULL
    harness.WORKER_TIMEOUT = WORKER_TIMEOUT[sizes.mode]
    names = selected_scenarios(sizes, [n for value in args.only for n in value.split(",") if n])
    print(f"benchmarks ({sizes.mode}): {', '.join(names)}; {os.cpu_count()} cores", flush=True)
    document, broken = run_scenarios(sizes, names)
    if not args.only:
        # Every key issue 6 names must be there; a missing one is a bug of this suite.
        missing = [key for key in missing_keys(document) if key.split(".")[0] not in broken]
        if missing:
            print(f"results lack required keys: {', '.join(missing)}", file=sys.stderr)
            broken.append("results")
    target = QUICK if args.quick else LATEST
    write_results(document, target)
    written = [str(target)]
    if args.full:
        import json

        from benchmarks.plot import PLOT_NAME, plot_scaling
        from benchmarks.report import update_results_md

        merged = json.loads(target.read_text())
        if plot_scaling(merged, RESULTS_DIR / PLOT_NAME):
            written.append(str(RESULTS_DIR / PLOT_NAME))
        update_results_md(RESULTS_MD, merged)
        written.append(str(RESULTS_MD))
    _print_goals(target)
    print("wrote " + ", ".join(written))
    if broken:
        print(f"BROKEN: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


def _print_goals(path: Path) -> None:
    import json

    document = json.loads(path.read_text())
    if (document.get("machine") or {}).get("mode") == "quick":
        print("  (quick run: CI-sized estates; the goals are judged on --full runs)")
    for goal in document.get("goals", []):
        mark = "BROKEN" if goal.get("broken") else "pass" if goal["pass"] else "MISS"
        print(f"  {mark:6}  {goal['scenario']:>13}  {goal['goal']:<34} {goal['target']:<20} {goal['measured']}")


if __name__ == "__main__":
    sys.exit(main())
