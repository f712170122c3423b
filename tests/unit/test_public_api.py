"""The package's public names."""

from __future__ import annotations

import syncengine


def test_public_api_exports_exist() -> None:
    """Every name in __all__ is importable from the package."""
    missing = [name for name in syncengine.__all__ if not hasattr(syncengine, name)]
    assert missing == []


def test_public_api_has_the_engine_entry_points() -> None:
    """The handlers' entry points are re-exported."""
    expected = {
        "sync_all",
        "sync_scope",
        "get_sync_status",
        "get_cached_records",
        "get_records_by_execution",
        "run_blocking",
        "SyncSettings",
        "SyncReport",
    }
    assert expected <= set(syncengine.__all__)
