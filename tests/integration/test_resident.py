"""The resident event loop of synchronous callers (a Lambda container): one loop and one client
pool across calls, nothing else carried from one call to the next, clients closed when the pool's
state is unknown and at shutdown. On DynamoDB (dynalite)."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from syncengine.core.config import SyncSettings
from syncengine.core.errors import RecoveryPlanNotFoundError
from syncengine.core.logging import structlog
from syncengine.core.resident import close_resident, resident, run_blocking
from syncengine.dynamodb.client import DynamoDBHttpClient
from syncengine.plans.check_existing import check_existing_instances
from syncengine.sync.engine import get_sync_status, open_runtime, sync_all
from tests.integration.test_handlers_support import REGION, estate_settings, seed_estate

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend

MARK: contextvars.ContextVar[str | None] = contextvars.ContextVar("test_resident_mark", default=None)


@pytest.fixture
def settings(ddb: Any) -> Iterator[SyncSettings]:
    close_resident()
    yield ddb.settings()
    close_resident()


async def dynamodb_client(settings: SyncSettings) -> Any:
    """The DynamoDB client a run on these settings uses."""
    async with open_runtime(settings) as rt:
        await rt.status.sync_status()
        return rt.dynamo.client


def is_open(client: DynamoDBHttpClient) -> bool:
    return not client.closed


def test_run_blocking_reuses_dynamodb_client_across_calls(settings: SyncSettings) -> None:
    first = run_blocking(dynamodb_client, settings)
    second = run_blocking(dynamodb_client, settings)
    assert isinstance(first, DynamoDBHttpClient)
    assert second is first
    assert is_open(first)


def test_run_blocking_engine_call_answers_on_reused_client(settings: SyncSettings) -> None:
    run_blocking(get_sync_status, settings)
    status = run_blocking(get_sync_status, settings)
    assert status.to_dict()["status"]
    assert len(resident().pool) == 1


def test_aws_clients_outside_resident_closed_with_run(settings: SyncSettings) -> None:
    client = asyncio.run(dynamodb_client(settings))
    assert not is_open(client)
    assert len(resident().pool) == 0


def test_run_blocking_each_call_starts_with_clean_context(settings: SyncSettings) -> None:
    async def mark_and_read(value: str) -> tuple[str | None, dict[str, Any]]:
        seen = MARK.get(), structlog.contextvars.get_contextvars()
        MARK.set(value)
        structlog.contextvars.bind_contextvars(run_id=value)
        return seen

    # Each call sees the caller's context (a handler binds its request id before calling), never
    # what an earlier call bound.
    caller = structlog.contextvars.get_contextvars()
    assert "run_id" not in caller
    assert run_blocking(mark_and_read, "first") == (None, caller)
    assert run_blocking(mark_and_read, "second") == (None, caller)


def test_run_blocking_keeps_pool_after_engine_error(settings: SyncSettings) -> None:
    first = run_blocking(dynamodb_client, settings)
    with pytest.raises(RecoveryPlanNotFoundError):
        run_blocking(check_existing_instances, settings, "plan-that-does-not-exist")
    assert run_blocking(dynamodb_client, settings) is first


def test_run_blocking_discards_pool_after_unexpected_error(settings: SyncSettings) -> None:
    first = run_blocking(dynamodb_client, settings)

    async def broken() -> None:
        async with open_runtime(settings):
            raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_blocking(broken)
    assert not is_open(first)
    second = run_blocking(dynamodb_client, settings)
    assert second is not first
    assert is_open(second)


def test_close_resident_closes_pooled_clients_and_next_call_reopens(settings: SyncSettings) -> None:
    first = run_blocking(dynamodb_client, settings)
    close_resident()
    assert not is_open(first)
    second = run_blocking(dynamodb_client, settings)
    assert second is not first


def test_run_blocking_inside_running_call_refuses_instead_of_waiting() -> None:
    async def nested() -> Any:
        async def inner() -> int:
            return 1

        return run_blocking(inner)

    with pytest.raises(RuntimeError, match="running event loop"):
        run_blocking(nested)


def test_resident_sigterm_in_lambda_closes_pool_then_dies_of_signal() -> None:
    code = textwrap.dedent(
        """
        import os, signal, time
        from syncengine.core import resident

        async def noop():
            return 1

        resident.run_blocking(noop)
        current = resident.resident()
        original = resident.close_resident

        def closing():
            original()
            print("closed", current.closed, flush=True)

        resident.close_resident = closing
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        print("survived", flush=True)
        """
    )
    env = {**os.environ, "AWS_LAMBDA_FUNCTION_NAME": "query-test"}
    command = [sys.executable, "-c", code]  # our own interpreter and code
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert done.stdout.split() == ["closed", "True"]
    assert done.returncode == -signal.SIGTERM


@pytest.fixture
def estate(make_simulator: Any, ddb_moto: Any) -> Iterator[tuple[Any, SyncSettings]]:
    sim = make_simulator(accounts=3, regions=(REGION,), instances_per_scope=5, seed=43)
    settings = estate_settings(ddb_moto, sim)
    asyncio.run(seed_estate(settings, sim.estate))
    close_resident()
    yield sim, settings
    close_resident()


def test_resident_sync_signs_each_run_with_its_own_assumed_roles(estate: tuple[Any, SyncSettings]) -> None:
    """The regional DRS/EC2 clients are reused across runs, the credentials are not: every run
    assumes each target role again and every account's calls are signed (and answered) as that
    account."""
    sim, settings = estate
    first = run_blocking(sync_all, settings)
    pooled = len(resident().pool)
    sim.calls.reset()
    second = run_blocking(sync_all, settings)
    targets = [a.account_id for a in sim.estate.accounts if not a.is_hub]
    assert (first.scopes_failed, second.scopes_failed) == (0, 0)
    assert second.instances_found == first.instances_found > 0
    assert len(resident().pool) == pooled
    assert sim.calls.count(service="sts", operation="AssumeRole", outcome="Success") == len(targets)
    for account_id in targets:
        assert sim.calls.count(service="drs", account_id=account_id, outcome="Success") > 0
