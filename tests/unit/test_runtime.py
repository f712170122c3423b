"""syncengine.runtime: the deadline, lease lifetimes and the shielded cleanup budget."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from syncengine.core.config import LEASE_MARGIN_SECONDS, SyncSettings
from syncengine.runtime import CLEANUP_SECONDS, cleanup_budget, deadline_scope, lease_seconds, shielded_cleanup

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_runtime_cleanup_budget_is_bounded_only_with_a_deadline() -> None:
    assert cleanup_budget(SyncSettings()) is None
    assert cleanup_budget(SyncSettings(deadline_seconds=30.0)) == CLEANUP_SECONDS


async def test_runtime_lease_without_any_deadline_is_the_configured_lifetime() -> None:
    assert lease_seconds(SyncSettings(lease_seconds=123.0)) == 123.0


def test_runtime_lease_lives_as_long_as_its_holder_plus_the_margin() -> None:
    assert lease_seconds(SyncSettings(), remaining=40.0) == 40.0 + LEASE_MARGIN_SECONDS


async def test_runtime_lease_follows_the_enclosing_deadline() -> None:
    with anyio.move_on_after(50.0):
        await anyio.lowlevel.checkpoint()
        seconds = lease_seconds(SyncSettings(lease_seconds=900.0))
    assert 45.0 < seconds <= 50.0 + LEASE_MARGIN_SECONDS


async def test_runtime_deadline_scope_without_deadline_never_cancels() -> None:
    with deadline_scope(SyncSettings()) as scope:
        await anyio.lowlevel.checkpoint()
    assert scope.deadline == float("inf")
    assert not scope.cancelled_caught


async def test_runtime_deadline_scope_cancels_at_the_deadline() -> None:
    with deadline_scope(SyncSettings(deadline_seconds=0.01)) as scope:
        await anyio.sleep(5)
    assert scope.cancelled_caught


async def test_runtime_shielded_cleanup_runs_after_the_deadline() -> None:
    """Work in the cleanup scope completes although the enclosing scope is already cancelled."""
    done = []
    with anyio.CancelScope() as outer:
        outer.cancel()
        with shielded_cleanup(SyncSettings(deadline_seconds=1.0)):
            await anyio.sleep(0.01)
            done.append(True)
    assert done == [True]
