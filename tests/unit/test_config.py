"""SyncSettings: defaults, the environment, and what it refuses."""

from __future__ import annotations

import pytest

from syncengine.aws import new_session
from syncengine.config import SyncSettings
from syncengine.errors import ConfigurationError
from syncengine.fastpath import FastResponseParserFactory
from tests.fixtures.dynamodb import fast_paths_from_env


def test_config_fast_paths_on_by_default() -> None:
    settings = SyncSettings.from_env({})
    assert settings.fast_paths is True


@pytest.mark.parametrize(("raw", "expected"), [("false", False), ("0", False), ("true", True), ("", True)])
def test_config_fast_paths_from_env(raw: str, expected: bool) -> None:
    assert SyncSettings.from_env({"SYNC_FAST_PATHS": raw}).fast_paths is expected


def test_config_rejects_a_fast_paths_value_that_is_not_a_boolean() -> None:
    with pytest.raises(ConfigurationError):
        SyncSettings.from_env({"SYNC_FAST_PATHS": "sometimes"})


def test_config_rejects_max_concurrency_above_the_pool() -> None:
    with pytest.raises(ConfigurationError):
        SyncSettings(max_concurrency=10, max_pool_connections=5)


def test_config_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        SyncSettings.from_env({}, no_such_setting=1)


def test_config_test_backends_follow_sync_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second `make test` pass (SYNC_FAST_PATHS=false) really turns the fast paths off."""
    monkeypatch.setenv("SYNC_FAST_PATHS", "false")
    assert fast_paths_from_env() is False


def test_config_session_without_fast_paths_keeps_botocore_parsers() -> None:
    fast = new_session(fast_paths=True)._session.get_component("response_parser_factory")
    plain = new_session(fast_paths=False)._session.get_component("response_parser_factory")
    assert isinstance(fast, FastResponseParserFactory)
    assert not isinstance(plain, FastResponseParserFactory)
