"""The results document (``benchmarks/results/latest.json``): required keys, goals, the machine.

Issue 6 fixes the keys every full run must write; ``check_required`` is what the unit test and
the runner both hold the document to. Goals are evaluated here, once, so RESULTS.md, the console
summary and the JSON never disagree on what passed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LATEST = RESULTS_DIR / "latest.json"
QUICK = RESULTS_DIR / "quick.json"

REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "large": (
        "instances",
        "accounts",
        "regions_per_account",
        "engine_s",
        "threadpool_boto3_s",
        "cpu_s",
        "peak_rss_mb",
        "dynamodb",
    ),
    "steady_state": ("engine_s", "items_written"),
    "latency_bound": ("scopes", "engine_s", "lower_bound_s", "threadpool_boto3_s"),
    "read": ("servers", "cache_p50_ms", "cache_p99_ms", "live_p50_ms", "cache_dynamodb_calls_per_check"),
    "cold_read": ("processes", "p50_ms", "p99_ms", "interpreter_p50_ms"),
    "terminate": ("instances", "engine_s", "drs_describe_calls"),
    "events": ("events", "p50_ms", "p99_ms", "drs_calls_per_event"),
    "fanout": ("scopes", "lower_bound_s", "workers"),
    "history_cost": (
        "history_items",
        "sync_read_units",
        "sync_read_units_ratio",
        "sync_history_read_units",
        "sync_index_calls",
        "rebuild_history_read_units",
    ),
    "cost": ("instances", "per_sync", "read_units_per_instance", "monthly_usd", "monthly_usd_by_item"),
    "origin": ("instances", "engine_s", "original_s"),
    "machine": (),
}
SCENARIOS = tuple(name for name in REQUIRED_KEYS if name != "machine")


def missing_keys(document: Mapping[str, Any], scenarios: tuple[str, ...] = SCENARIOS) -> list[str]:
    """``scenario.key`` paths the document lacks (a scenario that broke counts as missing)."""
    missing: list[str] = []
    for scenario in (*scenarios, "machine"):
        section = document.get(scenario)
        if not isinstance(section, Mapping):
            missing.append(scenario)
            continue
        missing.extend(f"{scenario}.{key}" for key in REQUIRED_KEYS[scenario] if key not in section)
    return missing


@dataclass(frozen=True)
class Goal:
    scenario: str
    name: str
    # Human-readable target, e.g. "< 60 s".
    target: str
    check: Callable[[Mapping[str, Any]], bool]
    # The measured value shown beside the target.
    shown: Callable[[Mapping[str, Any]], str]


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


GOALS: tuple[Goal, ...] = (
    Goal("large", "instances", ">= 50,000", lambda r: r["instances"] >= 50_000, lambda r: f"{r['instances']:,}"),
    Goal("large", "cold full sync", "< 60 s", lambda r: r["engine_s"] < 60, lambda r: f"{r['engine_s']:.1f} s"),
    Goal(
        "large",
        "thread-pool peer no faster",
        "peer >= engine",
        lambda r: r["threadpool_boto3_s"] >= r["engine_s"],
        lambda r: f"peer {r['threadpool_boto3_s']:.1f} s vs {r['engine_s']:.1f} s",
    ),
    Goal(
        "steady_state",
        "items written",
        "<= 1% of instances",
        lambda r: r["items_written"] <= 0.01 * r.get("instances", 0),
        lambda r: f"{r['items_written']} of {r.get('instances', 0):,}",
    ),
    Goal(
        "latency_bound",
        "within 1.25x of the bound",
        "<= 1.25x",
        lambda r: r["engine_s"] <= 1.25 * r["lower_bound_s"],
        lambda r: (
            f"{_ratio(r['engine_s'], r['lower_bound_s']):.2f}x ({r['engine_s']:.1f} s / {r['lower_bound_s']:.1f} s)"
        ),
    ),
    Goal(
        "latency_bound",
        "within 1.08x of the bound (issue 16)",
        "<= 1.08x",
        lambda r: r["engine_s"] <= 1.08 * r["lower_bound_s"],
        lambda r: f"{_ratio(r['engine_s'], r['lower_bound_s']):.3f}x",
    ),
    Goal(
        "latency_bound",
        "faster than the thread-pool peer",
        ">= 3x",
        lambda r: r["threadpool_boto3_s"] >= 3 * r["engine_s"],
        lambda r: f"{_ratio(r['threadpool_boto3_s'], r['engine_s']):.1f}x",
    ),
    Goal("read", "cache p99", "< 300 ms", lambda r: r["cache_p99_ms"] < 300, lambda r: f"{r['cache_p99_ms']:.1f} ms"),
    Goal(
        "read",
        "warm cache p99 (issue 16)",
        "<= 20 ms",
        lambda r: r["cache_p99_ms"] <= 20,
        lambda r: f"{r['cache_p99_ms']:.1f} ms",
    ),
    Goal(
        "cold_read",
        "cold p50 above the interpreter",
        "<= 250 ms",
        lambda r: r["p50_ms"] <= 250,
        lambda r: f"{r['p50_ms']:.0f} ms (+{r['interpreter_p50_ms']:.0f} ms interpreter)",
    ),
    Goal(
        "read",
        "live p50 / cache p50",
        ">= 50x",
        lambda r: r["live_p50_ms"] >= 50 * r["cache_p50_ms"],
        lambda r: f"{_ratio(r['live_p50_ms'], r['cache_p50_ms']):.0f}x",
    ),
    Goal("events", "event-to-cache p99", "< 2 s", lambda r: r["p99_ms"] < 2000, lambda r: f"{r['p99_ms']:.0f} ms"),
    Goal(
        "fanout",
        "8 workers / lower bound",
        "<= 1.5x",
        lambda r: r["workers"]["8"] <= 1.5 * r["lower_bound_s"],
        lambda r: f"{_ratio(r['workers']['8'], r['lower_bound_s']):.2f}x",
    ),
    Goal(
        "history_cost",
        "sync reads, history 10x",
        "<= 1.1x",
        lambda r: r["sync_read_units_ratio"] is not None and r["sync_read_units_ratio"] <= 1.1,
        lambda r: f"{r['sync_read_units_ratio']}x ({r['sync_read_units'][0]} -> {r['sync_read_units'][1]} RCU)",
    ),
    Goal(
        "cost",
        "steady sync read units per instance",
        "< 0.05",
        lambda r: r["read_units_per_instance"] < 0.05,
        lambda r: f"{r['read_units_per_instance']} ({r['per_sync']['read_units']} RCU / {r['instances']:,})",
    ),
    Goal(
        "cost",
        "a month at the 5-minute schedule",
        "<= $20",
        lambda r: r["monthly_usd"] <= 20,
        lambda r: f"${r['monthly_usd']}",
    ),
    Goal("terminate", "100 instances", "< 10 s", lambda r: r["engine_s"] < 10, lambda r: f"{r['engine_s']:.2f} s"),
    Goal(
        "terminate",
        "DRS describe calls",
        "0",
        lambda r: r["drs_describe_calls"] == 0,
        lambda r: str(r["drs_describe_calls"]),
    ),
)


def evaluate_goals(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every goal whose scenario ran: target, measured value, and pass/miss; a broken scenario's
    goals are listed as broken (not passed), whatever its numbers say."""
    outcomes = []
    for goal in GOALS:
        section = document.get(goal.scenario)
        if not isinstance(section, Mapping):
            continue
        if section.get("broken"):
            outcomes.append(
                {
                    "scenario": goal.scenario,
                    "goal": goal.name,
                    "target": goal.target,
                    "measured": "broken",
                    "pass": False,
                    "broken": True,
                }
            )
            continue
        try:
            passed = bool(goal.check(section))
            shown = goal.shown(section)
        except (KeyError, TypeError, ZeroDivisionError):
            continue
        outcomes.append(
            {
                "scenario": goal.scenario,
                "goal": goal.name,
                "target": target_text(goal),
                "measured": shown,
                "pass": passed,
            }
        )
    return outcomes


def target_text(goal: Goal) -> str:
    return goal.target


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float:
    import psutil

    return round(psutil.virtual_memory().total / 1024**3, 1)


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def _engine_tree_dirty() -> bool:
    """True when syncengine/ or handlers/ differ from the commit (others work in this checkout)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", "syncengine", "handlers"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent.parent,
        )
    except OSError:
        return False
    return bool(out.stdout.strip())


def _node_version() -> str | None:
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def machine_info(dynamodb_backend: str, mode: str) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "node": _node_version(),
        "dynamodb": dynamodb_backend,
        "packages": {name: _version(name) for name in ("aioboto3", "aiobotocore", "boto3", "botocore", "anyio")},
        "git_commit": _git_commit(),
        "engine_tree_dirty": _engine_tree_dirty(),
        "mode": mode,
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(document: dict[str, Any], path: Path) -> None:
    """Write the document (merged over an existing one, so ``--only`` refreshes one scenario)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    merged: dict[str, Any] = {}
    if path.exists():
        try:
            merged = json.loads(path.read_text())
        except json.JSONDecodeError:
            merged = {}
    merged.update(document)
    merged["goals"] = evaluate_goals(merged)
    path.write_text(json.dumps(merged, indent=2, sort_keys=False, default=str) + "\n")
