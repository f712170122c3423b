"""Which executions run now, from the execution index (moto and dynalite): the rebuild records
the running ones, a refresh by key adds or removes one, and the fan-out sweep asks the index and
reads those executions by key instead of scanning the whole history (issue 16 item 4: the
sweep's cost does not grow with the history)."""

from __future__ import annotations

from typing import Any

from syncengine.core.models import Scope
from syncengine.sync.engine import open_runtime, sync_all
from syncengine.sync.execution_sync import index_table
from syncengine.sync.fanout import active_execution_scopes
from tests.integration.engine_support import engine_settings, put_raw, seed
from tests.integration.test_handlers_support import execution_item

REGION = "us-east-1"


def _execution(execution_id: str, account: str, status: str) -> dict[str, Any]:
    job = {"region": REGION, "accountId": account, "jobID": f"drsjob-{execution_id}"}
    return {**execution_item(execution_id, "plan-r", [job]), "status": status}


async def _active(settings: Any) -> set[str] | None:
    async with open_runtime(settings) as rt:
        return await index_table(rt.dynamo, settings).active_executions()


async def _scopes(settings: Any) -> set[Scope]:
    async with open_runtime(settings) as rt:
        return await active_execution_scopes(rt)


async def _refresh(settings: Any, execution_id: str) -> None:
    async with open_runtime(settings) as rt:
        await index_table(rt.dynamo, settings).refresh(execution_id)


async def _built(ddb: Any, make_simulator: Any, history: tuple[tuple[str, str], ...] = ()) -> tuple[Any, str]:
    """Settings of an estate whose first sync built the index, with ``history`` (execution id,
    status; in the estate's target account) in place; and that account."""
    sim = make_simulator(accounts=2, regions=(REGION,), instances_per_scope=2, seed=5)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    account = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    if history:
        items = [_execution(execution_id, account, status) for execution_id, status in history]
        await put_raw(settings, settings.tables.execution_history, items)
    await sync_all(settings)
    return settings, account


async def test_execution_active_index_knows_nothing_before_its_first_rebuild(ddb: Any) -> None:
    assert await _active(ddb.settings()) is None


async def test_execution_active_rebuild_records_the_running_executions(ddb: Any, make_simulator: Any) -> None:
    settings, _ = await _built(ddb, make_simulator, (("exec-run", "RUNNING"), ("exec-done", "COMPLETED")))

    assert await _active(settings) == {"exec-run"}


async def test_execution_active_refresh_adds_a_started_and_removes_a_finished_execution(
    ddb: Any, make_simulator: Any
) -> None:
    settings, account = await _built(ddb, make_simulator)
    await put_raw(settings, settings.tables.execution_history, [_execution("exec-new", account, "RUNNING")])
    await _refresh(settings, "exec-new")
    assert await _active(settings) == {"exec-new"}

    await put_raw(settings, settings.tables.execution_history, [_execution("exec-new", account, "COMPLETED")])
    await _refresh(settings, "exec-new")

    assert await _active(settings) == set()


async def test_execution_active_sweep_delays_the_scope_of_an_execution_the_index_lists(
    ddb: Any, make_simulator: Any
) -> None:
    settings, account = await _built(ddb, make_simulator)
    await put_raw(settings, settings.tables.execution_history, [_execution("exec-new", account, "RUNNING")])
    await _refresh(settings, "exec-new")

    assert await _scopes(settings) == {Scope(account, REGION)}


async def test_execution_active_sweep_does_not_scan_for_executions_the_index_has_not_heard_of(
    ddb: Any, make_simulator: Any
) -> None:
    """The cost of no Scan: a running execution that no rebuild, wave or terminate told the index
    about is not seen until one does (the delay protects quota, not safety)."""
    settings, account = await _built(ddb, make_simulator)
    await put_raw(settings, settings.tables.execution_history, [_execution("exec-unheard", account, "RUNNING")])

    assert await _scopes(settings) == set()


async def test_execution_active_sweep_takes_a_finished_execution_off_the_list(ddb: Any, make_simulator: Any) -> None:
    settings, account = await _built(ddb, make_simulator, (("exec-run", "RUNNING"),))
    await put_raw(settings, settings.tables.execution_history, [_execution("exec-run", account, "COMPLETED")])

    assert await _scopes(settings) == set()
    assert await _active(settings) == set()


async def test_execution_active_sweep_scans_before_the_index_exists(ddb: Any, make_simulator: Any) -> None:
    sim = make_simulator(accounts=2, regions=(REGION,), instances_per_scope=2, seed=5)
    settings = engine_settings(ddb, sim)
    await seed(settings, sim.estate)
    account = next(a.account_id for a in sim.estate.accounts if not a.is_hub)
    await put_raw(settings, settings.tables.execution_history, [_execution("exec-run", account, "RUNNING")])

    assert await _scopes(settings) == {Scope(account, REGION)}
