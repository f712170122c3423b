"""Recovery Instance Sync: a DynamoDB cache of every AWS DRS recovery instance.

The public API is re-exported here; ``tests/unit/test_public_api.py`` checks the list.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the module that defines it. Imported on first access (PEP 562): importing one
# submodule (``syncengine.core.logging``, say) must not import the whole engine, or the read-only
# handler's cold start would load the sync machinery it never runs.
_EXPORTS = {
    "RetrySettings": "syncengine.core.config",
    "SyncSettings": "syncengine.core.config",
    "TableNames": "syncengine.core.config",
    "SyncProgress": "syncengine.runtime",
    "get_cached_records": "syncengine.reads",
    "get_records_by_execution": "syncengine.reads",
    "get_sync_status": "syncengine.reads",
    "run_blocking": "syncengine.core.resident",
    "sync_all": "syncengine.sync.engine",
    "sync_scope": "syncengine.sync.engine",
    "AccessDeniedError": "syncengine.core.errors",
    "AwsError": "syncengine.core.errors",
    "ConfigurationError": "syncengine.core.errors",
    "ExecutionNotFoundError": "syncengine.core.errors",
    "InvalidRequestError": "syncengine.core.errors",
    "NotFoundError": "syncengine.core.errors",
    "RecoveryPlanNotFoundError": "syncengine.core.errors",
    "SyncEngineError": "syncengine.core.errors",
    "SyncInProgressError": "syncengine.core.errors",
    "RecoveryInstanceRecord": "syncengine.core.models",
    "RunStatus": "syncengine.core.models",
    "Scope": "syncengine.core.models",
    "ScopeResult": "syncengine.core.models",
    "SyncReport": "syncengine.core.models",
    "SyncStatus": "syncengine.core.models",
}

if TYPE_CHECKING:  # pragma: no cover
    from syncengine.core.config import RetrySettings, SyncSettings, TableNames
    from syncengine.core.errors import (
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
    from syncengine.core.models import (
        RecoveryInstanceRecord,
        RunStatus,
        Scope,
        ScopeResult,
        SyncReport,
        SyncStatus,
    )
    from syncengine.core.resident import run_blocking
    from syncengine.reads import get_cached_records, get_records_by_execution, get_sync_status
    from syncengine.runtime import SyncProgress
    from syncengine.sync.engine import sync_all, sync_scope


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
