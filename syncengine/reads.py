"""The read use cases: the sync status and cached records, from DynamoDB alone.

Each opens a runtime (``syncengine.runtime``) and nothing of the sync: the read-only query
handler's cold start loads only what these need (tests/unit/test_import_graph.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from syncengine.core.config import SyncSettings
from syncengine.core.models import SyncStatus
from syncengine.runtime import open_runtime

if TYPE_CHECKING:  # pragma: no cover
    import aioboto3


async def get_sync_status(settings: SyncSettings, *, session: aioboto3.Session | None = None) -> SyncStatus:
    """The last full sync's summary, every scope's status and the health judged from them."""
    async with open_runtime(settings, session=session, read_only=True) as rt:
        return await rt.status.sync_status()


async def get_cached_records(
    settings: SyncSettings, server_ids: Iterable[str], *, session: aioboto3.Session | None = None
) -> list[dict[str, Any]]:
    """Cached records of these source servers (absent servers have no recovery instance)."""
    async with open_runtime(settings, session=session, read_only=True) as rt:
        return await rt.store.get_records(server_ids)


async def get_records_by_execution(
    settings: SyncSettings, execution_id: str, *, session: aioboto3.Session | None = None
) -> list[dict[str, Any]]:
    """Cached records of the recovery instances an execution launched (no DRS call)."""
    async with open_runtime(settings, session=session, read_only=True) as rt:
        return await rt.store.records_by_execution(execution_id)
