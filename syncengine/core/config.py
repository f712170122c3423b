"""Settings of the engine: one frozen value object, every environment variable named here.

Standard AWS SDK configuration (credentials chain, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` and the
per-service ``AWS_ENDPOINT_URL_DRS`` / ``_EC2`` / ``_STS`` / ``_DYNAMODB``) is not read here: botocore
honours it unchanged, so the engine never invents endpoint variables of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from syncengine.core.errors import ConfigurationError

# Environment variables naming the tables (the same names in CloudFormation and in code).
ENV_CACHE_TABLE = "RECOVERY_INSTANCES_CACHE_TABLE"
ENV_STATUS_TABLE = "RECOVERY_INSTANCE_SYNC_STATUS_TABLE"
ENV_TARGET_ACCOUNTS_TABLE = "TARGET_ACCOUNTS_TABLE"
ENV_EXECUTION_HISTORY_TABLE = "EXECUTION_HISTORY_TABLE"
ENV_RECOVERY_PLANS_TABLE = "RECOVERY_PLANS_TABLE"
ENV_PROTECTION_GROUPS_TABLE = "PROTECTION_GROUPS_TABLE"
ENV_EXECUTION_INDEX_TABLE = "EXECUTION_INDEX_TABLE"
# The orchestration's DRS region-status table (key ``region``, ``serverCount``): where an account
# whose item lists no regions is synced (cfn/dynamodb/tables-stack.yaml of the orchestration,
# DRSRegionStatusTable; its functions get it as DRS_REGION_STATUS_TABLE). Optional: unset, such an
# account is synced in the configured regions.
ENV_DRS_REGION_STATUS_TABLE = "DRS_REGION_STATUS_TABLE"

# Tunables.
ENV_PROJECT_NAME = "PROJECT_NAME"
ENV_ENVIRONMENT = "ENVIRONMENT"
ENV_SYNC_REGIONS = "SYNC_REGIONS"
ENV_INCLUDE_CURRENT_ACCOUNT = "SYNC_INCLUDE_CURRENT_ACCOUNT"
ENV_DEFAULT_ROLE_NAME = "CROSS_ACCOUNT_ROLE_NAME"
ENV_MAX_CONCURRENCY = "SYNC_MAX_CONCURRENCY"
ENV_PER_SCOPE_CONCURRENCY = "SYNC_PER_SCOPE_CONCURRENCY"
ENV_MAX_ATTEMPTS = "SYNC_MAX_ATTEMPTS"
ENV_DEADLINE_SECONDS = "SYNC_DEADLINE_SECONDS"
ENV_METRICS_NAMESPACE = "METRICS_NAMESPACE"
ENV_STALE_AFTER_SECONDS = "SYNC_STALE_AFTER_SECONDS"
ENV_FANOUT = "SYNC_FANOUT"
ENV_FANOUT_THRESHOLD = "SYNC_FANOUT_THRESHOLD"
ENV_WORK_QUEUE_URL = "SYNC_WORK_QUEUE_URL"
ENV_EXECUTION_INDEX_REBUILD_SECONDS = "EXECUTION_INDEX_REBUILD_SECONDS"
ENV_REGION_PROBE_SECONDS = "SYNC_REGION_PROBE_SECONDS"
ENV_HOME_REGION = "AWS_REGION"
ENV_HOME_REGION_FALLBACK = "AWS_DEFAULT_REGION"

ALL_ENV_VARS = (
    ENV_CACHE_TABLE,
    ENV_STATUS_TABLE,
    ENV_TARGET_ACCOUNTS_TABLE,
    ENV_EXECUTION_HISTORY_TABLE,
    ENV_RECOVERY_PLANS_TABLE,
    ENV_PROTECTION_GROUPS_TABLE,
    ENV_EXECUTION_INDEX_TABLE,
    ENV_DRS_REGION_STATUS_TABLE,
    ENV_PROJECT_NAME,
    ENV_ENVIRONMENT,
    ENV_SYNC_REGIONS,
    ENV_INCLUDE_CURRENT_ACCOUNT,
    ENV_DEFAULT_ROLE_NAME,
    ENV_MAX_CONCURRENCY,
    ENV_PER_SCOPE_CONCURRENCY,
    ENV_MAX_ATTEMPTS,
    ENV_DEADLINE_SECONDS,
    ENV_METRICS_NAMESPACE,
    ENV_STALE_AFTER_SECONDS,
    ENV_FANOUT,
    ENV_FANOUT_THRESHOLD,
    ENV_WORK_QUEUE_URL,
    ENV_EXECUTION_INDEX_REBUILD_SECONDS,
    ENV_REGION_PROBE_SECONDS,
)
"""The variables the code reads (besides AWS SDK ones); CloudFormation must set the table ones."""

DEFAULT_PROJECT_NAME = "drs-orchestration"
DEFAULT_ENVIRONMENT = "dev"
DEFAULT_ROLE_NAME = "DRSOrchestrationRole"
DEFAULT_HOME_REGION = "us-east-1"
DEFAULT_METRICS_NAMESPACE = "RecoveryInstanceSync"
# aiobotocore signs a request before it waits for a pooled connection; a request queued for
# ~5 minutes fails with "Signature expired". The global limiter therefore never exceeds the pool.
DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_MAX_POOL_CONNECTIONS = 64
# DRS and EC2 rate limits are per account per region: a few requests in flight per scope is
# what a scope's token bucket sustains without throttling.
DEFAULT_PER_SCOPE_CONCURRENCY = 3
DEFAULT_MAX_ATTEMPTS = 8
# Fan-out of the scheduled full sync over the work queue (syncengine.sync.fanout): off, on, or auto
# (on from this many scopes: below it one invocation syncs everything faster than a queue round).
FANOUT_MODES = ("off", "on", "auto")
DEFAULT_FANOUT = "off"
DEFAULT_FANOUT_THRESHOLD = 500
# The execution index (syncengine.tables.execution_index.table) is rebuilt from a full Scan of the execution
# history at most this often; between rebuilds it is refreshed by key (wave events, terminate).
DEFAULT_EXECUTION_INDEX_REBUILD_SECONDS = 3600.0
# Without the orchestration's region-status table, a full sync asks each account where DRS is in
# use at most this often (syncengine.tables.region_discovery) and syncs only there in between.
DEFAULT_REGION_PROBE_SECONDS = 3600.0
# Scopes a fan-out message carries (syncengine.sync.fanout); at most what the refresh function accepts
# in a scope group message (a few KB; SQS takes 256 KB a message).
DEFAULT_FANOUT_SCOPES_PER_MESSAGE = 10
MAX_FANOUT_SCOPES_PER_MESSAGE = 100
DEFAULT_RETRY_BASE_DELAY = 0.25
DEFAULT_RETRY_MAX_DELAY = 20.0
DEFAULT_WRITE_CONCURRENCY = 16
# Recovery instances whose discovered data a run holds at once (syncengine.sync.pipeline): a scope
# describes its instances only once admitted, and leaves when its writes are done. Memory is
# proportional to it, not to the estate (benchmarks/RESULTS.md, "Memory").
DEFAULT_MAX_INSTANCES_IN_FLIGHT = 5_000
DEFAULT_LAMBDA_DEADLINE_MARGIN = 20.0
DEFAULT_SCOPE_LEASE_WAIT = 30.0
# A lease's lifetime when its holder has no deadline (the CLI); a run with a deadline (Lambda)
# holds its leases until that deadline plus LEASE_MARGIN_SECONDS, never longer.
DEFAULT_LEASE_SECONDS = 900.0
# Past the deadline a holder still runs its shielded cleanup (at most 15 s) and, in Lambda, is
# killed lambda_deadline_margin (20 s) later: a lease ending this long after the deadline outlives both.
LEASE_MARGIN_SECONDS = 30.0
# A configured scope with no successful sync for this long makes the status "degraded" and cannot
# vouch for its servers in check-existing (three missed 5-minute schedules).
DEFAULT_STALE_AFTER_SECONDS = 900.0
DEFAULT_CLEANUP_SECONDS = 15.0
# A refresh or fan-out message whose scope another sync holds comes back this soon (SQS
# ChangeMessageVisibility: 0..43200 s), not after the queue's visibility timeout.
DEFAULT_BUSY_RETRY_SECONDS = 30
MAX_VISIBILITY_TIMEOUT_SECONDS = 43_200
# botocore's own retries off (one attempt): tenacity (syncengine.core.retry) is the only retry layer,
# and a non-idempotent call (terminate, a self-invoke) must never be repeated by the SDK.
NO_SDK_RETRIES = {"total_max_attempts": 1, "mode": "standard"}
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
# DescribeSourceServers' sourceServerIDs filter and EC2 filter values both cap at 200.
DRS_FILTER_MAX_IDS = 200
EC2_FILTER_MAX_IDS = 200
TERMINATE_MAX_IDS = 100


@dataclass(frozen=True)
class TableNames:
    cache: str
    status: str
    target_accounts: str
    execution_history: str
    recovery_plans: str
    protection_groups: str
    execution_index: str

    @classmethod
    def for_project(cls, project_name: str, environment: str) -> TableNames:
        """The names CloudFormation gives the tables: ``${ProjectName}-<name>-${Environment}``."""

        def name(base: str) -> str:
            return f"{project_name}-{base}-{environment}"

        return cls(
            cache=name("recovery-instances"),
            status=name("recovery-instance-sync-status"),
            target_accounts=name("target-accounts"),
            execution_history=name("execution-history"),
            recovery_plans=name("recovery-plans"),
            protection_groups=name("protection-groups"),
            execution_index=name("execution-index"),
        )

    def env(self) -> dict[str, str]:
        """The environment variables that select these tables."""
        return {
            ENV_CACHE_TABLE: self.cache,
            ENV_STATUS_TABLE: self.status,
            ENV_TARGET_ACCOUNTS_TABLE: self.target_accounts,
            ENV_EXECUTION_HISTORY_TABLE: self.execution_history,
            ENV_RECOVERY_PLANS_TABLE: self.recovery_plans,
            ENV_PROTECTION_GROUPS_TABLE: self.protection_groups,
            ENV_EXECUTION_INDEX_TABLE: self.execution_index,
        }


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base_delay: float = DEFAULT_RETRY_BASE_DELAY
    max_delay: float = DEFAULT_RETRY_MAX_DELAY


DEFAULT_RETRY = RetrySettings()


@dataclass(frozen=True)
class SyncSettings:
    """Everything a run needs to know. Build with ``from_env()``; explicit arguments win."""

    tables: TableNames = field(
        default_factory=lambda: TableNames.for_project(DEFAULT_PROJECT_NAME, DEFAULT_ENVIRONMENT)
    )
    home_region: str = DEFAULT_HOME_REGION
    environment: str = DEFAULT_ENVIRONMENT
    # Regions used for accounts whose item lists none; empty means every region where DRS exists.
    regions: tuple[str, ...] = ()
    # The orchestration's region-status table (not ours: never created by our stacks); when set,
    # accounts whose item lists no regions are synced where it lists servers (syncengine.tables.accounts).
    drs_region_status_table: str | None = None
    include_current_account: bool = True
    default_role_name: str = DEFAULT_ROLE_NAME
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS
    per_scope_concurrency: int = DEFAULT_PER_SCOPE_CONCURRENCY
    write_concurrency: int = DEFAULT_WRITE_CONCURRENCY
    # Instances a run holds discovered data of at once (no variable: the default fits the
    # functions' memory; tests set it).
    max_instances_in_flight: int = DEFAULT_MAX_INSTANCES_IN_FLIGHT
    retry: RetrySettings = DEFAULT_RETRY
    # Wall-clock budget of one run in seconds; None = no deadline (Lambda sets one from context).
    deadline_seconds: float | None = None
    lambda_deadline_margin: float = DEFAULT_LAMBDA_DEADLINE_MARGIN
    # How long shielded cleanup (status writes, lease releases) may run past the deadline when
    # there is one: a caller with a hard limit (an API request: API Gateway's 29 s) shortens it and
    # its deadline together, so deadline plus cleanup fits the limit.
    cleanup_seconds: float = DEFAULT_CLEANUP_SECONDS
    scope_lease_wait: float = DEFAULT_SCOPE_LEASE_WAIT
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    # Seconds after which a scope without a successful sync is stale (SYNC_STALE_AFTER_SECONDS).
    stale_after_seconds: float = DEFAULT_STALE_AFTER_SECONDS
    # How soon a busy scope's message comes back (no variable: the default is deployed).
    busy_retry_seconds: int = DEFAULT_BUSY_RETRY_SECONDS
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    # Emit CloudWatch embedded-metric-format lines (on in Lambda; off for the CLI by default).
    emit_metrics: bool = False
    # SYNC_FANOUT: the scheduled full sync enqueues its scopes in small groups on the work queue
    # (SYNC_WORK_QUEUE_URL) for the refresh function's workers: "off", "on", or "auto" (from
    # ``fanout_threshold`` scopes).
    fanout: str = DEFAULT_FANOUT
    fanout_threshold: int = DEFAULT_FANOUT_THRESHOLD
    # Scopes per fan-out message (syncengine.sync.fanout): small groups, an account's regions together;
    # fewer messages cost fewer SQS calls and invocations. No variable: tests and benchmarks set it.
    fanout_scopes_per_message: int = DEFAULT_FANOUT_SCOPES_PER_MESSAGE
    work_queue_url: str | None = None
    # EXECUTION_INDEX_REBUILD_SECONDS: the least time between two full rebuilds of the execution
    # index (each one Scan of the execution history, after a sync's scopes).
    execution_index_rebuild_seconds: float = DEFAULT_EXECUTION_INDEX_REBUILD_SECONDS
    # SYNC_REGION_PROBE_SECONDS: the least time between two region probes of an account whose
    # item lists no regions, when no region-status table is configured.
    region_probe_seconds: float = DEFAULT_REGION_PROBE_SECONDS
    # Explicit per-service endpoints ((service, url), ...) for tests and the demo. Empty in
    # production: botocore then resolves AWS_ENDPOINT_URL_<SERVICE> / AWS_ENDPOINT_URL itself.
    endpoint_urls: tuple[tuple[str, str], ...] = ()
    # Who calls AWS, for assumed-role session names (syncengine.aws.sessions): the Lambda function's
    # name (AWS_LAMBDA_FUNCTION_NAME), "cli" for the command line, else "local".
    caller: str = "local"

    def endpoint_url(self, service: str) -> str | None:
        for name, url in self.endpoint_urls:
            if name == service:
                return url
        return None

    def __post_init__(self) -> None:
        positive = (
            "max_concurrency",
            "max_pool_connections",
            "per_scope_concurrency",
            "write_concurrency",
            "max_instances_in_flight",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_concurrency > self.max_pool_connections:
            raise ConfigurationError(
                "max_concurrency must not exceed max_pool_connections: requests signed while waiting "
                "for a pooled connection expire"
            )
        if self.retry.max_attempts < 1:
            raise ConfigurationError("retry.max_attempts must be at least 1")
        if self.cleanup_seconds <= 0:
            raise ConfigurationError(f"cleanup_seconds must be positive, got {self.cleanup_seconds}")
        if self.stale_after_seconds <= 0:
            raise ConfigurationError(f"stale_after_seconds must be positive, got {self.stale_after_seconds}")
        if self.fanout not in FANOUT_MODES:
            raise ConfigurationError(f"{ENV_FANOUT} must be one of {', '.join(FANOUT_MODES)}, got {self.fanout!r}")
        if self.execution_index_rebuild_seconds <= 0:
            raise ConfigurationError(
                f"execution_index_rebuild_seconds must be positive, got {self.execution_index_rebuild_seconds}"
            )
        if not 0 <= self.busy_retry_seconds <= MAX_VISIBILITY_TIMEOUT_SECONDS:
            raise ConfigurationError(f"busy_retry_seconds must be 0 to 43200, got {self.busy_retry_seconds}")
        if self.fanout_threshold < 1:
            raise ConfigurationError(f"fanout_threshold must be at least 1, got {self.fanout_threshold}")
        if not 1 <= self.fanout_scopes_per_message <= MAX_FANOUT_SCOPES_PER_MESSAGE:
            raise ConfigurationError(
                f"fanout_scopes_per_message must be 1 to {MAX_FANOUT_SCOPES_PER_MESSAGE}, "
                f"got {self.fanout_scopes_per_message}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SyncSettings:
        env = os.environ if environ is None else environ
        project = env.get(ENV_PROJECT_NAME) or DEFAULT_PROJECT_NAME
        environment = env.get(ENV_ENVIRONMENT) or DEFAULT_ENVIRONMENT
        tables = _tables_from_env(env, project, environment)
        values: dict[str, Any] = {
            "tables": tables,
            "environment": environment,
            "home_region": env.get(ENV_HOME_REGION) or env.get(ENV_HOME_REGION_FALLBACK) or DEFAULT_HOME_REGION,
            "regions": _split_list(env.get(ENV_SYNC_REGIONS, "")),
            "drs_region_status_table": env.get(ENV_DRS_REGION_STATUS_TABLE) or None,
            "include_current_account": _parse_bool(env.get(ENV_INCLUDE_CURRENT_ACCOUNT), True),
            "default_role_name": env.get(ENV_DEFAULT_ROLE_NAME) or DEFAULT_ROLE_NAME,
            "metrics_namespace": env.get(ENV_METRICS_NAMESPACE) or DEFAULT_METRICS_NAMESPACE,
            "emit_metrics": bool(env.get("AWS_LAMBDA_FUNCTION_NAME")),
            "caller": env.get("AWS_LAMBDA_FUNCTION_NAME") or "local",
        }
        max_concurrency = _parse_int(env, ENV_MAX_CONCURRENCY, DEFAULT_MAX_CONCURRENCY)
        values["max_concurrency"] = max_concurrency
        values["max_pool_connections"] = max(max_concurrency, DEFAULT_MAX_POOL_CONNECTIONS)
        values["per_scope_concurrency"] = _parse_int(env, ENV_PER_SCOPE_CONCURRENCY, DEFAULT_PER_SCOPE_CONCURRENCY)
        values["retry"] = RetrySettings(max_attempts=_parse_int(env, ENV_MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS))
        deadline = env.get(ENV_DEADLINE_SECONDS)
        if deadline:
            values["deadline_seconds"] = _parse_float(ENV_DEADLINE_SECONDS, deadline)
        stale_after = env.get(ENV_STALE_AFTER_SECONDS)
        if stale_after:
            values["stale_after_seconds"] = _parse_seconds(ENV_STALE_AFTER_SECONDS, stale_after)
        values["fanout"] = (env.get(ENV_FANOUT) or DEFAULT_FANOUT).strip().lower()
        values["fanout_threshold"] = _parse_int(env, ENV_FANOUT_THRESHOLD, DEFAULT_FANOUT_THRESHOLD)
        values["work_queue_url"] = env.get(ENV_WORK_QUEUE_URL) or None
        rebuild = env.get(ENV_EXECUTION_INDEX_REBUILD_SECONDS)
        if rebuild:
            values["execution_index_rebuild_seconds"] = _parse_seconds(ENV_EXECUTION_INDEX_REBUILD_SECONDS, rebuild)
        probe = env.get(ENV_REGION_PROBE_SECONDS)
        if probe:
            values["region_probe_seconds"] = _parse_seconds(ENV_REGION_PROBE_SECONDS, probe)
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigurationError(f"unknown settings: {', '.join(sorted(unknown))}")
        values.update(overrides)
        return cls(**values)

    def with_changes(self, **changes: Any) -> SyncSettings:
        return replace(self, **changes)


def _split_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse_bool(raw: str | None, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"expected a boolean, got {raw!r}")


def _parse_float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from exc


def _parse_seconds(name: str, raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number of seconds, got {raw[:40]!r}") from exc
    if not seconds > 0:
        raise ConfigurationError(f"{name} must be positive, got {raw[:40]!r}")
    return seconds


def _parse_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from exc


def _tables_from_env(env: Mapping[str, str], project: str, environment: str) -> TableNames:
    """Each table's name from its variable, else the project's default name."""
    defaults = TableNames.for_project(project, environment)
    return TableNames(
        cache=env.get(ENV_CACHE_TABLE) or defaults.cache,
        status=env.get(ENV_STATUS_TABLE) or defaults.status,
        target_accounts=env.get(ENV_TARGET_ACCOUNTS_TABLE) or defaults.target_accounts,
        execution_history=env.get(ENV_EXECUTION_HISTORY_TABLE) or defaults.execution_history,
        recovery_plans=env.get(ENV_RECOVERY_PLANS_TABLE) or defaults.recovery_plans,
        protection_groups=env.get(ENV_PROTECTION_GROUPS_TABLE) or defaults.protection_groups,
        execution_index=env.get(ENV_EXECUTION_INDEX_TABLE) or defaults.execution_index,
    )
