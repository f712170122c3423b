"""Recovery Instance Sync: a DynamoDB cache of every AWS DRS recovery instance.

The public API is re-exported here; ``tests/unit/test_public_api.py`` checks the list.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the module that defines it. Imported on first access (PEP 562): importing one
# submodule (``syncengine.logging``, say) must not import the whole engine, or the read-only
# handler's cold start would load the sync machinery it never runs.
_EXPORTS = {
    "RetrySettings": "syncengine.config",
    "SyncSettings": "syncengine.config",
    "TableNames": "syncengine.config",
    "SyncProgress": "syncengine.runtime",
    "get_cached_records": "syncengine.reads",
    "get_records_by_execution": "syncengine.reads",
    "get_sync_status": "syncengine.reads",
    "run_blocking": "syncengine.resident",
    "sync_all": "syncengine.engine",
    "sync_scope": "syncengine.engine",
    "AccessDeniedError": "syncengine.errors",
    "AwsError": "syncengine.errors",
    "ConfigurationError": "syncengine.errors",
    "ExecutionNotFoundError": "syncengine.errors",
    "InvalidRequestError": "syncengine.errors",
    "NotFoundError": "syncengine.errors",
    "RecoveryPlanNotFoundError": "syncengine.errors",
    "SyncEngineError": "syncengine.errors",
    "SyncInProgressError": "syncengine.errors",
    "RecoveryInstanceRecord": "syncengine.models",
    "RunStatus": "syncengine.models",
    "Scope": "syncengine.models",
    "ScopeResult": "syncengine.models",
    "SyncReport": "syncengine.models",
    "SyncStatus": "syncengine.models",
}

if TYPE_CHECKING:  # pragma: no cover
    from syncengine.config import RetrySettings, SyncSettings, TableNames
    from syncengine.engine import sync_all, sync_scope
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
    from syncengine.reads import get_cached_records, get_records_by_execution, get_sync_status
    from syncengine.resident import run_blocking
    from syncengine.runtime import SyncProgress


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'syncengine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
    "get_cached_records",
    "get_records_by_execution",
    "get_sync_status",
    "run_blocking",
    "sync_all",
    "sync_scope",
]
