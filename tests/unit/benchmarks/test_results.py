"""The benchmark results document: the keys issue 6 requires, goal evaluation, the RESULTS.md
block. No timing is asserted anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.report import BEGIN, END, render, update_results_md
from benchmarks.results import REQUIRED_KEYS, evaluate_goals, missing_keys, write_results


def complete_document() -> dict[str, Any]:
    return {
        "large": {
            "instances": 50_000,
            "accounts": 100,
            "regions_per_account": 4,
            "engine_s": 40.0,
            "threadpool_boto3_s": 90.0,
            "cpu_s": 35.0,
            "peak_rss_mb": 300.0,
            "dynamodb": "dynalite",
        },
        "steady_state": {"engine_s": 20.0, "items_written": 0, "instances": 50_000},
        "latency_bound": {"scopes": 200, "engine_s": 24.0, "lower_bound_s": 20.4, "threadpool_boto3_s": 150.0},
        "read": {
            "servers": 100,
            "cache_p50_ms": 40.0,
            "cache_p99_ms": 90.0,
            "live_p50_ms": 10_000.0,
            "cache_dynamodb_calls_per_check": 6.0,
        },
        "cold_read": {"processes": 20, "p50_ms": 300.0, "p99_ms": 400.0, "interpreter_p50_ms": 20.0},
        "terminate": {"instances": 100, "engine_s": 0.6, "drs_describe_calls": 0},
        "events": {"events": 200, "p50_ms": 600.0, "p99_ms": 1400.0, "drs_calls_per_event": 0.8},
        "fanout": {"scopes": 2000, "lower_bound_s": 20.4, "workers": {"1": 90.0, "4": 28.0, "8": 26.0}},
        "history_cost": {
            "history_items": [2000, 20000],
            "sync_read_units": [250.0, 250.0],
            "sync_read_units_ratio": 1.0,
            "sync_history_read_units": [0, 0],
            "sync_index_calls": [15, 15],
            "rebuild_history_read_units": [770.0, 7700.0],
        },
        "cost": {
            "instances": 60000,
            "changed_per_sync": 60,
            "per_sync": {
                "read_units": 2100.0,
                "write_units": 470.0,
                "aws_calls": {"drs": 800, "ec2": 400, "sts": 50},
                "lambda_gb_s": 20.0,
            },
            "read_units_per_instance": 0.035,
            "monthly_usd": 12.5,
            "monthly_usd_by_item": {"dynamodb_sync_reads": 2.27, "lambda_compute": 2.3},
            "lambda_memory_mb": 1769,
            "review_estimate_usd": [64.0, 80.0],
        },
        "origin": {"instances": 150, "engine_s": 1.0, "original_s": 20.0},
        "machine": {"cpus": 2, "dynamodb": "dynalite"},
    }


def test_write_results_has_every_required_key(tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    write_results(complete_document(), path)
    written = json.loads(path.read_text())
    assert missing_keys(written) == []
    for scenario, keys in REQUIRED_KEYS.items():
        assert set(keys) <= set(written[scenario])


def test_missing_keys_names_absent_key_and_broken_scenario() -> None:
    document = complete_document()
    del document["large"]["peak_rss_mb"]
    document["read"] = {"broken": "RuntimeError: boom"}
    missing = missing_keys(document)
    assert "large.peak_rss_mb" in missing
    assert "read.cache_p50_ms" in missing


def test_write_results_merges_over_previous_run(tmp_path: Path) -> None:
    """``--only`` refreshes one scenario and keeps the others."""
    path = tmp_path / "latest.json"
    write_results(complete_document(), path)
    write_results({"terminate": {"instances": 100, "engine_s": 0.7, "drs_describe_calls": 0}}, path)
    written = json.loads(path.read_text())
    assert written["terminate"]["engine_s"] == 0.7
    assert written["large"]["instances"] == 50_000


def test_evaluate_goals_reports_pass_and_miss() -> None:
    document = complete_document()
    document["latency_bound"]["engine_s"] = 30.0  # 1.47x the bound
    outcomes = {(g["scenario"], g["goal"]): g["pass"] for g in evaluate_goals(document)}
    assert outcomes[("large", "cold full sync")] is True
    assert outcomes[("latency_bound", "within 1.25x of the bound")] is False
    assert outcomes[("terminate", "DRS describe calls")] is True


def test_evaluate_goals_never_passes_a_broken_scenario() -> None:
    document = complete_document()
    document["read"]["broken"] = "RuntimeError: boom"
    read_goals = [g for g in evaluate_goals(document) if g["scenario"] == "read"]
    assert read_goals
    assert all(g["broken"] and not g["pass"] for g in read_goals)


def test_update_results_md_replaces_only_the_generated_block(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Results\n\nanalysis before\n\n{BEGIN}\nold numbers\n{END}\n\nanalysis after\n")
    document = complete_document()
    document["goals"] = evaluate_goals(document)
    update_results_md(path, document)
    text = path.read_text()
    assert "old numbers" not in text
    assert "analysis before" in text and "analysis after" in text
    assert render(document) in text


def test_evaluate_goals_cost_misses_above_twenty_dollars_or_reads_per_instance() -> None:
    document = complete_document()
    document["cost"].update(monthly_usd=62.45, read_units_per_instance=0.74)

    goals = [g for g in evaluate_goals(document) if g["scenario"] == "cost"]

    assert [g["pass"] for g in goals] == [False, False]


def test_render_shows_the_cost_table_beside_the_review_estimate() -> None:
    text = render(complete_document())

    assert "| dynamodb_sync_reads | 2,100.0 read units | 2.27 |" in text
    assert "review's estimate 64.0-80.0" in text


def test_evaluate_goals_history_cost_misses_when_sync_reads_grow_with_history() -> None:
    document = complete_document()
    document["history_cost"].update(sync_read_units=[250.0, 2500.0], sync_read_units_ratio=10.0)

    (goal,) = [g for g in evaluate_goals(document) if g["scenario"] == "history_cost"]

    assert goal["pass"] is False
