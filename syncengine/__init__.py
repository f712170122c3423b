"""Recovery Instance Sync: a DynamoDB cache of every AWS DRS recovery instance.

The public API is re-exported here; ``tests/unit/test_public_api.py`` checks the list.
"""

from __future__ import annotations

from syncengine.config import RetrySettings, SyncSettings, TableNames
from syncengine.engine import (
    SyncProgress,
    deadline_from_lambda,
    get_cached_records,
    get_records_by_execution,
    get_sync_status,
    run_blocking,
    sync_all,
    sync_scope,
)
from syncengine.errors import (
    AccessDeniedError,
    AwsError,
    ConfigurationError,
    ExecutionNotFoundError,
    InvalidRequestError,
    NotFoundError,
    RecoveryPlanNotFoundError,
    SyncEngineError,
    SyncInProgressError,
)
from syncengine.models import (
    RecoveryInstanceRecord,
    RunStatus,
    Scope,
    ScopeResult,
    SyncReport,
    SyncStatus,
)

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "AwsError",
    "ConfigurationError",
    "ExecutionNotFoundError",
    "InvalidRequestError",
    "NotFoundError",
    "RecoveryInstanceRecord",
    "RecoveryPlanNotFoundError",
    "RetrySettings",
    "RunStatus",
    "Scope",
    "ScopeResult",
    "SyncEngineError",
    "SyncInProgressError",
    "SyncProgress",
    "SyncReport",
    "SyncSettings",
    "SyncStatus",
    "TableNames",
    "__version__",
    "deadline_from_lambda",
    "get_cached_records",
    "get_records_by_execution",
    "get_sync_status",
    "run_blocking",
    "sync_all",
    "sync_scope",
]
