"""syncengine.sync.engine: the public API refuses bad requests before it opens anything."""

from __future__ import annotations

import pytest

from syncengine.core.config import SyncSettings
from syncengine.core.errors import InvalidRequestError
from syncengine.sync import engine

# Nothing listens here: a request that got past validation would fail to connect, not pass.
UNREACHABLE = SyncSettings(endpoint_urls=(("dynamodb", "http://127.0.0.1:9"), ("sts", "http://127.0.0.1:9")))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"account_id": "12345"}, "12-digit", id="short-account"),
        pytest.param({"account_id": "12345678901\n"}, "12-digit", id="trailing-newline"),
        pytest.param({"account_id": "١٢٣٤٥٦٧٨٩٠١٢"}, "12-digit", id="non-ascii-digits"),
        pytest.param({"region": "mars-1"}, "region", id="unknown-region"),
    ],
)
async def test_engine_sync_all_refuses_a_bad_scope(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        await engine.sync_all(UNREACHABLE, **kwargs)


async def test_engine_sync_scope_refuses_a_bad_server_id() -> None:
    with pytest.raises(InvalidRequestError, match="source server id"):
        await engine.sync_scope(UNREACHABLE, "123456789012", "us-east-1", ["not-a-server"])


def test_engine_exports_exist() -> None:
    assert [name for name in engine.__all__ if not hasattr(engine, name)] == []
