"""The measured variants, each a module-level function run in a fresh worker process
(``harness.in_fresh_process``), returning plain dicts the orchestrator records."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.harness import isolate_from_aws, measured, run_async
from syncengine.core.config import SyncSettings


def _quiet() -> None:
    isolate_from_aws()
    from syncengine.core.logging import configure_logging

    configure_logging(level="ERROR")


def _warm_container(settings: SyncSettings) -> None:
    """What the syncing functions' init phase does before their first invocation
    (``handlers.data_management``, ``handlers.refresh``): the process's shared aioboto3 Session
    with the DRS, EC2 and STS models loaded. A sync is timed as an invocation of a started container."""
    from syncengine.aws.clients import preload_service_models

    preload_service_models(settings)


def engine_sync(settings: SyncSettings, *, profile_to: str | None = None) -> dict[str, Any]:
    """One full engine sync (cold when the cache is fresh, steady-state when it is not); with
    ``profile_to``, under pyinstrument, its text summary written there."""
    _quiet()
    _warm_container(settings)
    from syncengine.sync.engine import sync_all

    timeline = ScopeTimeline()
    profiler = None
    if profile_to:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001, async_mode="enabled")
        profiler.start()
    with measured() as cold:
        timeline.begin()
        report = run_async(sync_all(settings, progress=timeline))
    result: dict[str, Any] = {
        "run": asdict(cold),
        "report": _report(report),
        "timeline": timeline.summary(),
    }
    if profiler is not None and profile_to:
        from benchmarks.profiling import summarise

        profiler.stop()
        Path(profile_to).write_text(profiler.output_text(unicode=True, color=False, show_all=False))
        result["profile"] = summarise(profiler.last_session.root_frame() if profiler.last_session else None)
    return result


class ScopeTimeline:
    """A ``SyncProgress`` that notes when each scope started and finished, relative to the run's
    start: shows whether a run is bound by its slowest scope or by a CPU tail after the waits."""

    def __init__(self) -> None:
        self._started = 0.0
        self._finished: list[tuple[float, float]] = []

    def begin(self) -> None:
        self._started = time.perf_counter()

    def start(self, total_scopes: int) -> None:
        self._planned_at = time.perf_counter() - self._started

    def advance(self, result: Any) -> None:
        now = time.perf_counter() - self._started
        self._finished.append((now - result.duration_ms / 1000, now))

    def summary(self) -> dict[str, Any]:
        if not self._finished:
            return {}
        starts = sorted(start for start, _ in self._finished)
        ends = sorted(end for _, end in self._finished)
        return {
            "scopes_planned_at_s": round(getattr(self, "_planned_at", 0.0), 2),
            "first_scope_start_s": round(starts[0], 2),
            "last_scope_start_s": round(starts[-1], 2),
            "first_scope_done_s": round(ends[0], 2),
            "median_scope_done_s": round(ends[len(ends) // 2], 2),
            "last_scope_done_s": round(ends[-1], 2),
        }


def _report(report: Any) -> dict[str, Any]:
    return {
        "status": report.status.value,
        "instances_found": report.instances_found,
        "instances_updated": report.instances_updated,
        "instances_unchanged": report.instances_unchanged,
        "instances_deleted": report.instances_deleted,
        "scopes_synced": report.scopes_synced,
        "scopes_failed": report.scopes_failed,
        "duration_ms": report.duration_ms,
        "errors": [e.to_dict() for e in report.errors[:5]],
    }


def threadpool_sync(settings: SyncSettings, workers: int = 32) -> dict[str, Any]:
    """The boto3 + ThreadPoolExecutor peer, one cold full sync."""
    _quiet()
    from benchmarks.baselines.threadpool_boto3 import sync_threadpool

    with measured() as run:
        report = sync_threadpool(settings, workers=workers)
    return {"run": asdict(run), "report": asdict(report)}


def sequential_sync(settings: SyncSettings) -> dict[str, Any]:
    """The original sequential N+1 sync."""
    _quiet()
    from benchmarks.baselines.original_sequential import sync_sequential

    with measured() as run:
        report = sync_sequential(settings)
    return {"run": asdict(run), "report": asdict(report)}


def _handler(settings: SyncSettings) -> Any:
    """The data-management handler, configured with ``settings`` through its dependency seam."""
    from handlers import data_management, dependencies

    dependencies.configure(settings=settings)
    return data_management.lambda_handler


def handler_check_existing(settings: SyncSettings, plan_id: str, repetitions: int, warmup: int = 3) -> dict[str, Any]:
    """``GET /recovery-plans/{planId}/check-existing-instances`` through the handler, timed per
    invocation (a warm container: the first ``warmup`` invocations are not counted)."""
    import json
    import time

    from benchmarks.events import LambdaContext, check_existing_event

    _quiet()
    _warm_container(settings)
    sent = count_dynamodb_requests()
    handler = _handler(settings)
    timings_ms: list[float] = []
    body: dict[str, Any] = {}
    with measured() as run:
        for index in range(warmup + repetitions):
            if index == warmup:
                sent.clear()
            started = time.perf_counter()
            response = handler(check_existing_event(plan_id), LambdaContext())
            elapsed = (time.perf_counter() - started) * 1000
            if response.get("statusCode") != 200:
                raise RuntimeError(f"check-existing answered {response.get('statusCode')}: {response.get('body')}")
            if index >= warmup:
                timings_ms.append(elapsed)
            body = json.loads(response["body"])
    return {
        "timings_ms": timings_ms,
        "instance_count": body.get("instanceCount"),
        "run": asdict(run),
        "checks": repetitions,
        "dynamodb_calls": sum(sent.values()),
        "dynamodb_calls_by_operation": dict(sent),
    }


def count_dynamodb_requests() -> Counter[str]:
    """Every DynamoDB request this process sends from now on (retries included), by operation:
    a listener on the engine's DynamoDB client (syncengine.dynamodb.client)."""
    from syncengine.dynamodb.client import REQUEST_LISTENERS

    sent: Counter[str] = Counter()

    def count(operation: str) -> None:
        sent[operation] += 1

    REQUEST_LISTENERS.append(count)
    return sent


def live_check_existing(
    settings: SyncSettings, accounts: dict[str, dict[str, Any]], plan_id: str, repetitions: int
) -> dict[str, Any]:
    """The original live algorithm for the same plan, timed per check."""
    import time

    from benchmarks.baselines.live_check import LiveChecker

    _quiet()
    checker = LiveChecker(settings, accounts)
    timings_ms: list[float] = []
    body: dict[str, Any] = {}
    for _ in range(repetitions):
        started = time.perf_counter()
        body = checker.check(plan_id)
        timings_ms.append((time.perf_counter() - started) * 1000)
    return {"timings_ms": timings_ms, "instance_count": body.get("instanceCount"), "aws_calls": checker.calls}


def handler_terminate(settings: SyncSettings, execution_id: str) -> dict[str, Any]:
    """``POST /executions/{executionId}/terminate-instances`` through the handler, once."""
    import json

    from benchmarks.events import LambdaContext, terminate_event

    _quiet()
    _warm_container(settings)
    handler = _handler(settings)
    with measured() as run:
        response = handler(terminate_event(execution_id), LambdaContext())
    if response.get("statusCode") != 200:
        raise RuntimeError(f"terminate answered {response.get('statusCode')}: {response.get('body')}")
    body = json.loads(response["body"])
    return {
        "run": asdict(run),
        "total_found": body.get("totalFound"),
        "total_terminated": body.get("totalTerminated"),
        "total_failed": body.get("totalFailed"),
        "jobs": len(body.get("jobs") or []),
    }


def fanout_worker_batch(settings: SyncSettings, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One invocation of the refresh function (a fan-out worker) on one SQS batch of scope group
    messages, as the event source mapping delivers it; its peak RSS is the worker's at that batch."""
    import json

    from benchmarks.events import LambdaContext

    _quiet()
    _warm_container(settings)
    from handlers import dependencies

    dependencies.configure(settings=settings)
    from handlers.refresh import lambda_handler

    records = [
        {
            "messageId": f"bench-{number}",
            "receiptHandle": f"bench-{number}",
            "body": json.dumps(message),
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:bench-work-queue",
            "awsRegion": "us-east-1",
        }
        for number, message in enumerate(messages)
    ]
    with measured() as run:
        answer = lambda_handler({"Records": records}, LambdaContext(remaining_ms=900_000))
    return {"run": asdict(run), "failed_messages": len(answer.get("batchItemFailures") or [])}
