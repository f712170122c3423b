"""SyncSettings: defaults, the environment, and what it refuses."""

from __future__ import annotations

import pytest

from syncengine.core.config import SyncSettings
from syncengine.core.errors import ConfigurationError


def test_config_rejects_max_concurrency_above_the_pool() -> None:
    with pytest.raises(ConfigurationError):
        SyncSettings(max_concurrency=10, max_pool_connections=5)


def test_config_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        SyncSettings.from_env({}, no_such_setting=1)
