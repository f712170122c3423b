"""What every scenario needs: the simulator in its own process, an embedded DynamoDB, fresh tables,
seeding, settings pointing the engine at both, and measurement of one variant in a fresh process.

Measurement model: the orchestrator (``benchmarks.run``) owns the simulator process and the
DynamoDB server; each measured variant (engine, thread-pool peer, original, ...) runs in a fresh
``spawn`` worker process. The worker's ``getrusage(RUSAGE_SELF)`` and ``ru_maxrss`` are then the
variant's own CPU time and peak RSS, never the simulator's, DynamoDB's or another variant's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from syncengine.core.config import SyncSettings, TableNames

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
HOME_REGION = "us-east-1"
# Generating 50,000 recovery instances takes ~3 s; the margin covers a loaded machine.
SIMULATOR_START_TIMEOUT = 120.0
SIMULATOR_STOP_TIMEOUT = 10.0
# Every measured variant must finish within this, so a hung run fails instead of hanging CI.
WORKER_TIMEOUT = 900.0


def isolate_from_aws() -> None:
    """Fake credentials and a dead default endpoint for this process and every child: nothing
    started by the benchmarks can reach a real AWS endpoint, whatever the caller's environment."""
    os.environ["AWS_ACCESS_KEY_ID"] = "AKIABENCHHUBACCESSKEY"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "bench-secret-access-key"  # noqa: S105 - a fake, by design
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ.pop(name, None)
    os.environ["AWS_DEFAULT_REGION"] = HOME_REGION
    os.environ["AWS_REGION"] = HOME_REGION
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    # A client built without an explicit endpoint hits a closed loopback port and fails at once.
    os.environ["AWS_ENDPOINT_URL"] = f"http://{LOOPBACK}:9"
    for name in ("AWS_ENDPOINT_URL_DRS", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(name, None)


# -- the simulator, in its own process ----------------------------------------------------------


@dataclass(frozen=True)
class EstateSpec:
    """The estate the simulator generates: ``accounts`` counts the hub."""

    accounts: int
    regions: tuple[str, ...]
    instances_per_scope: int
    seed: int = 7

    @property
    def scopes(self) -> int:
        return self.accounts * len(self.regions)

    @property
    def instances(self) -> int:
        return self.scopes * self.instances_per_scope


@dataclass(frozen=True)
class Faults:
    """The simulator's fault settings a scenario uses (``POST /_simulator/faults``)."""

    latency_ms: float = 0.0
    tps_per_scope: float = 0.0
    burst_per_scope: float = 0.0
    retry_after_seconds: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "latencyMs": self.latency_ms,
            "tpsPerScope": self.tps_per_scope,
            "burstPerScope": self.burst_per_scope,
            "retryAfterSeconds": self.retry_after_seconds,
        }


class SimulatorProcess:
    """``python -m syncengine simulate`` in a child process, ready when its ready-file appears."""

    def __init__(self, spec: EstateSpec):
        self.spec = spec
        self.endpoint_url = ""
        self.hub_account_id = ""
        self.pid = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="bench-sim-")
        self._log = Path(self._dir.name) / "simulator.log"

    def __enter__(self) -> SimulatorProcess:
        ready = Path(self._dir.name) / "ready.json"
        command = [
            sys.executable,
            "-m",
            "syncengine",
            "simulate",
            "--port",
            "0",
            "--accounts",
            str(self.spec.accounts),
            "--regions",
            ",".join(self.spec.regions),
            "--instances-per-scope",
            str(self.spec.instances_per_scope),
            "--seed",
            str(self.spec.seed),
            "--ready-file",
            str(ready),
        ]
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + SIMULATOR_START_TIMEOUT
        while not ready.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                output = self._log.read_text(errors="replace")[-2000:]
                self.__exit__(None, None, None)
                raise RuntimeError(f"simulator did not start: {output or 'no output'}")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        self.endpoint_url = str(info["endpointUrl"])
        self.hub_account_id = str(info["hubAccountId"])
        self.pid = int(info["pid"])
        return self

    def __exit__(self, *exc_info: object) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=SIMULATOR_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None
        self._dir.cleanup()

    # control routes

    def control(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - a loopback URL we started ourselves
            self.endpoint_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.loads(response.read())

    def estate(self) -> dict[str, Any]:
        return dict(self.control("GET", "/_simulator/estate"))

    def calls(self) -> dict[str, Any]:
        return dict(self.control("GET", "/_simulator/calls"))

    def reset_calls(self) -> None:
        self.control("POST", "/_simulator/calls/reset", {})

    def set_faults(self, faults: Faults) -> None:
        """Apply ``faults`` from a clean state (the simulator resets its token buckets)."""
        self.control("POST", "/_simulator/faults/reset", {})
        self.control("POST", "/_simulator/faults", faults.to_json())

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)


def process_cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) another process used so far; 0 when unknown."""
    if not pid:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


# -- DynamoDB and settings ----------------------------------------------------------------------


def fresh_table_names(label: str) -> TableNames:
    # DynamoDB table names allow [a-zA-Z0-9_.-] only.
    safe = re.sub(r"[^a-zA-Z0-9_.-]+", "-", label).strip("-")[:40]
    return TableNames.for_project(f"bench-{safe}-{uuid.uuid4().hex[:6]}", "bench")


async def create_fresh_tables(endpoint_url: str, label: str) -> TableNames:
    from devtools.tables import create_tables

    names = fresh_table_names(label)
    await create_tables(names, endpoint_url=endpoint_url, region=HOME_REGION)
    return names


async def drop_tables(endpoint_url: str, names: TableNames) -> None:
    from devtools.tables import delete_tables

    # Frees the backend's memory between estates; names are unique, so a leftover is harmless.
    with contextlib.suppress(Exception):
        await delete_tables(names, endpoint_url=endpoint_url, region=HOME_REGION)


@dataclass(frozen=True)
class Endpoints:
    """Where the AWS services of one run live: the simulator and the DynamoDB backend."""

    simulator: str
    dynamodb: str

    def pairs(self) -> tuple[tuple[str, str], ...]:
        return (("drs", self.simulator), ("dynamodb", self.dynamodb), ("ec2", self.simulator), ("sts", self.simulator))


def engine_settings(tables: TableNames, endpoints: Endpoints, regions: Sequence[str], **overrides: Any) -> SyncSettings:
    """The engine's production defaults (retries, concurrency), pointed at the simulator and the
    local tables."""
    values: dict[str, Any] = {
        "tables": tables,
        "home_region": HOME_REGION,
        "regions": tuple(regions),
        "endpoint_urls": endpoints.pairs(),
    }
    values.update(overrides)
    return SyncSettings(**values)


# -- seeding ------------------------------------------------------------------------------------


def boto3_client(service: str, endpoint_url: str, region: str = HOME_REGION, **credentials: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region, config=config, **credentials)


def assumed_credentials(sts: Any, account: Mapping[str, Any]) -> dict[str, str]:
    """boto3 client arguments acting in ``account`` (the hub uses its own credentials)."""
    if account.get("isHub"):
        return {}
    response = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account['accountId']}:role/{account['roleName']}",
        RoleSessionName="bench-seed",
        ExternalId=account["externalId"],
    )
    creds = response["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


def launch_jobs(simulator_url: str, accounts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every LAUNCH job of the estate, read through the simulator's DRS DescribeJobs (per scope,
    acting in each account), each tagged with its ``accountId`` and ``region``."""
    sts = boto3_client("sts", simulator_url)

    def scope_jobs(account: Mapping[str, Any], region: str, credentials: dict[str, str]) -> list[dict[str, Any]]:
        drs = boto3_client("drs", simulator_url, region, **credentials)
        jobs = []
        for page in drs.get_paginator("describe_jobs").paginate(filters={}):
            jobs.extend(
                {**job, "accountId": account["accountId"], "region": region}
                for job in page.get("items", [])
                if job.get("type") == "LAUNCH"
            )
        return jobs

    work = [
        (account, region, assumed_credentials(sts, account)) for account in accounts for region in account["regions"]
    ]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda args: scope_jobs(*args), work))
    return [job for jobs in results for job in jobs]


def json_safe(value: Any) -> Any:
    """boto3 answers with datetimes; DynamoDB items want strings."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


async def put_table_items(settings: SyncSettings, table: str, items: Sequence[Mapping[str, Any]]) -> int:
    from devtools.seed import put_items
    from syncengine.sync.engine import open_runtime

    async with open_runtime(settings) as rt:
        return await put_items(rt.dynamo, table, items)


async def seed_estate(
    settings: SyncSettings,
    accounts: Sequence[Mapping[str, Any]],
    executions: Sequence[Mapping[str, Any]],
) -> None:
    """The target-accounts table from the estate, and the given execution history."""
    from devtools.seed import target_account_items

    await put_table_items(settings, settings.tables.target_accounts, target_account_items(accounts))
    await put_table_items(settings, settings.tables.execution_history, executions)


def seeded_execution_history(simulator_url: str, accounts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """An execution history naming half of the estate's LAUNCH jobs (the rest were launched by
    hand, outside any execution), as the demo seeds it."""
    from devtools.seed import execution_items

    jobs = launch_jobs(simulator_url, accounts)
    return execution_items(json_safe(jobs[::2]))


# -- measurement --------------------------------------------------------------------------------


def cpu_seconds_self() -> float:
    """CPU of this process plus its finished, waited-for children (the engine's shard workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _maxrss_mb(who: int) -> float:
    # Linux reports ru_maxrss in kilobytes (macOS in bytes).
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(who).ru_maxrss * scale / (1024 * 1024)


def peak_rss_mb_self() -> float:
    """This process's peak RSS since it started its program: Linux's ``VmHWM`` (the high-water
    mark of this address space). ``ru_maxrss`` is kept across ``execve``: a worker spawned by an
    orchestrator holding 1.3 GB reported 1.3 GB whatever it used itself (the orchestrator forks,
    then execs the new interpreter)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return _maxrss_mb(resource.RUSAGE_SELF)


def peak_rss_mb_children() -> float:
    """The largest peak RSS among this process's finished children (0 when it had none)."""
    return _maxrss_mb(resource.RUSAGE_CHILDREN)


def rss_mb_self() -> float:
    return psutil.Process().memory_info().rss / (1024 * 1024)


@dataclass
class Measurement:
    """One measured run of one variant, in its own process."""

    wall_s: float = 0.0
    # This process and its children (the engine's shard workers, when it starts any).
    cpu_s: float = 0.0
    rss_before_mb: float = 0.0
    peak_rss_mb: float = 0.0
    # The largest child's peak: a sharded sync's total is at most peak + workers x this.
    peak_rss_children_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def measured() -> Iterator[Measurement]:
    """Wall time and this process's CPU around the block; peak RSS of the process at its end."""
    result = Measurement(rss_before_mb=rss_mb_self())
    cpu = cpu_seconds_self()
    started = time.perf_counter()
    yield result
    result.wall_s = time.perf_counter() - started
    result.cpu_s = cpu_seconds_self() - cpu
    result.peak_rss_mb = peak_rss_mb_self()
    result.peak_rss_children_mb = peak_rss_mb_children()


def in_fresh_process(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``function(*args, **kwargs)`` in a new interpreter (spawn) and return its result; a
    worker still running after ``WORKER_TIMEOUT`` seconds is killed (multiprocessing.TimeoutError)."""
    context = multiprocessing.get_context("spawn")
    # Pool's exit terminates the worker, so a hung variant cannot hang the run.
    with context.Pool(processes=1) as pool:
        return pool.apply_async(function, args, kwargs).get(timeout=WORKER_TIMEOUT)


def run_async(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@contextlib.contextmanager
def external_cpu(simulator_pid: int, dynamodb_pid: int | None) -> Iterator[dict[str, float]]:
    """CPU the simulator and the DynamoDB server used during the block: they share the machine's
    cores with the measured variant, so they explain wall time beyond the variant's own CPU."""
    out: dict[str, float] = {}
    sim_before = process_cpu_seconds(simulator_pid)
    db_before = process_cpu_seconds(dynamodb_pid)
    yield out
    out["simulator_cpu_s"] = round(process_cpu_seconds(simulator_pid) - sim_before, 2)
    out["dynamodb_cpu_s"] = round(process_cpu_seconds(dynamodb_pid) - db_before, 2) if dynamodb_pid else 0.0


def seeded_settings(
    dynamodb_url: str,
    simulator: SimulatorProcess,
    accounts: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    label: str,
    **overrides: Any,
) -> SyncSettings:
    """Fresh tables on the DynamoDB backend, seeded with the estate's accounts and ``history``;
    settings pointing at them and at the simulator."""
    tables = run_async(create_fresh_tables(dynamodb_url, label))
    settings = engine_settings(
        tables, Endpoints(simulator.endpoint_url, dynamodb_url), simulator.spec.regions, **overrides
    )
    run_async(seed_estate(settings, accounts, history))
    return settings


def drs_describe_calls(calls: Mapping[str, Any]) -> int:
    """DRS Describe* calls in a ``/_simulator/calls`` snapshot."""
    return sum(n for operation, n in (calls.get("byOperation") or {}).items() if operation.startswith("drs:Describe"))


def throttled_calls(calls: Mapping[str, Any]) -> int:
    outcomes = calls.get("byOutcome") or {}
    return int(outcomes.get("ThrottlingException", 0)) + int(outcomes.get("RequestLimitExceeded", 0))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 198th smallest)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
