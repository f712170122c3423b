"""The scaling plot of RESULTS.md: cold full-sync time against estate size for the engine, the
thread-pool peer and the lower bound (plus the engine's CPU seconds, which is what it tracks)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

PLOT_NAME = "sync_scaling.png"


def plot_scaling(document: Mapping[str, Any], path: Path) -> Path | None:
    """Write the PNG; None when the document has no scaling points."""
    points = (document.get("scaling") or {}).get("points") or []
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [p["instances"] for p in points]
    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    axes.plot(
        x, [p["threadpool_boto3_s"] for p in points], "s-", color="tab:orange", label="boto3 + ThreadPoolExecutor(32)"
    )
    axes.plot(x, [p["engine_s"] for p in points], "o-", color="tab:blue", label="engine (asyncio, defaults: 1 process)")
    axes.plot(x, [p["engine_cpu_s"] for p in points], "o:", color="tab:blue", alpha=0.6, label="engine CPU seconds")
    axes.plot(
        x, [p["lower_bound_s"] for p in points], "^--", color="tab:green", label="lower bound (latency + rate limits)"
    )
    axes.axhline(60, color="tab:red", linewidth=0.8, linestyle="-.", label="goal: 60 s")
    machine = document.get("machine") or {}
    large = document.get("large") or {}
    axes.set_title(
        f"Cold full sync vs estate size ({large.get('latency_ms', 50):.0f} ms latency, "
        f"{machine.get('cpus', '?')} cores, DynamoDB: {machine.get('dynamodb', '?')})"
    )
    axes.set_xlabel("recovery instances")
    axes.set_ylabel("seconds")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    axes.set_xlim(left=0)
    axes.set_ylim(bottom=0)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
