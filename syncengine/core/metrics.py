"""CloudWatch embedded-metric-format (EMF) output, through Powertools for AWS Lambda's metrics.

One JSON line per flush on stdout; CloudWatch turns it into metrics without a PutMetricData call.
Powertools builds and validates the document (``EphemeralMetrics``: no state shared between
emitters); its import costs the read path nothing, which loads Powertools already.
Every metric name lives here so the monitoring stack's alarms and dashboard can be checked
against what the code really emits (tests/unit/test_cfn_*).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import IO, Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

NAMESPACE = "RecoveryInstanceSync"
DIMENSION_NAME = "Environment"

# Sync runs (engine).
SYNC_DURATION = "SyncDuration"  # Milliseconds
INSTANCES_UPDATED = "InstancesUpdated"  # Count
INSTANCES_UNCHANGED = "InstancesUnchanged"  # Count
INSTANCES_DELETED = "InstancesDeleted"  # Count
SCOPES_SYNCED = "ScopesSynced"  # Count
SCOPES_FAILED = "ScopesFailed"  # Count
SYNC_ERRORS = "SyncErrors"  # Count: scopes failed + runs that failed outright
THROTTLE_RETRIES = "ThrottleRetries"  # Count: AWS calls retried after throttling
DYNAMODB_THROTTLES = "DynamoDBThrottles"  # Count: DynamoDB throttles and unprocessed items/keys seen
SCOPES_NOT_ENABLED = "ScopesNotEnabled"  # Count: scopes in opt-in regions the account has not enabled
SCOPES_REMOVED = "ScopesRemoved"  # Count: scopes no longer configured, deleted by a full sync
# 1 per full sync that finished having synced at least one scope; the monitoring stack alarms
# when none arrives for 15 minutes (the schedule stopped, or every run crashes or fails).
FULL_SYNC_HEARTBEAT = "FullSyncHeartbeat"  # Count
# Syncs skipped because a lease was held: a full sync finding another one running (1), or the
# scopes of a run skipped because another sync of the scope did not finish in time.
SYNCS_SKIPPED = "SyncsSkipped"  # Count
# Cache reads (handlers).
CACHE_QUERY_LATENCY = "CacheQueryLatency"  # Milliseconds
# A lookup is one plan server asked about; a miss one the cache cannot vouch for (its scope has no
# successful sync within SYNC_STALE_AFTER_SECONDS). A server without an instance is a hit. The
# miss-rate alarm divides the sums (misses / lookups); CacheMissRate is the per-request figure.
CACHE_LOOKUPS = "CacheLookups"  # Count
CACHE_HITS = "CacheHits"  # Count: lookups - misses
CACHE_MISSES = "CacheMisses"  # Count
CACHE_MISS_RATE = "CacheMissRate"  # Percent
# Wave-completion syncs (execution handler): never fail the wave, but are counted.
WAVE_SYNC_ERRORS = "WaveSyncErrors"  # Count
# Terminate flow.
INSTANCES_TERMINATED = "InstancesTerminated"  # Count
TERMINATE_FAILURES = "TerminateFailures"  # Count

UNITS: Mapping[str, str] = {
    SYNC_DURATION: "Milliseconds",
    INSTANCES_UPDATED: "Count",
    INSTANCES_UNCHANGED: "Count",
    INSTANCES_DELETED: "Count",
    SCOPES_SYNCED: "Count",
    SCOPES_FAILED: "Count",
    SYNC_ERRORS: "Count",
    THROTTLE_RETRIES: "Count",
    DYNAMODB_THROTTLES: "Count",
    SCOPES_NOT_ENABLED: "Count",
    SCOPES_REMOVED: "Count",
    FULL_SYNC_HEARTBEAT: "Count",
    SYNCS_SKIPPED: "Count",
    CACHE_QUERY_LATENCY: "Milliseconds",
    CACHE_LOOKUPS: "Count",
    CACHE_HITS: "Count",
    CACHE_MISSES: "Count",
    CACHE_MISS_RATE: "Percent",
    WAVE_SYNC_ERRORS: "Count",
    INSTANCES_TERMINATED: "Count",
    TERMINATE_FAILURES: "Count",
}
METRIC_NAMES = frozenset(UNITS)


def emf_document(
    metrics: Mapping[str, float],
    *,
    namespace: str = NAMESPACE,
    environment: str = "dev",
    properties: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One EMF document, built by Powertools' metrics (its validation, its document layout: a
    metric's value is a list of its data points); unknown metric names are a bug and raise
    ``KeyError``."""
    document = EphemeralMetrics(namespace=namespace)
    document.add_dimension(name=DIMENSION_NAME, value=environment)
    for name, value in metrics.items():
        document.add_metric(name=name, unit=MetricUnit(UNITS[name]), value=value)
    for key, value in (properties or {}).items():
        document.add_metadata(key=key, value=value)
    return document.serialize_metric_set()


class MetricsEmitter:
    """Writes EMF lines when enabled (in Lambda); a no-op otherwise so the CLI stays readable."""

    def __init__(
        self,
        *,
        enabled: bool,
        namespace: str = NAMESPACE,
        environment: str = "dev",
        stream: IO[str] | None = None,
    ):
        self.enabled = enabled
        self.namespace = namespace
        self.environment = environment
        self._stream = stream

    def emit(self, metrics: Mapping[str, float], **properties: Any) -> None:
        if not self.enabled:
            return
        document = emf_document(metrics, namespace=self.namespace, environment=self.environment, properties=properties)
        stream = self._stream or sys.stdout
        stream.write(json.dumps(document, separators=(",", ":"), default=str) + "\n")
        stream.flush()
