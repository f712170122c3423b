"""The execution index's items: keys, the mapping to and from ``ExecutionIndex``, the two reads a
scope makes (resolving exactly as the whole in-memory index), and the "most recent wins" order."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.dynamodb.seam import from_item
from syncengine.sync.execution_sync import StoredExecutions
from syncengine.tables.execution_index.items import (
    entries,
    entry_item,
    entry_ref,
    first_keys,
    index_of,
    order,
    second_keys,
)
from syncengine.tables.execution_index.lookup import ExecutionIndex, ExecutionRef
from syncengine.tables.execution_index.table import Lookup

REGIONS = ("us-east-1", "eu-west-1")
SERVERS = tuple(f"s-{n:017x}" for n in range(4))
RECOVERY_INSTANCES = tuple(f"i-{n:017x}" for n in range(4))
JOBS = tuple(f"drsjob-{n:017x}" for n in range(4))

STATUSES = st.fixed_dictionaries(
    {"sourceServerId": st.sampled_from(SERVERS)},
    optional={"recoveryInstanceId": st.sampled_from(RECOVERY_INSTANCES)},
)
WAVES = st.fixed_dictionaries(
    {"region": st.sampled_from(REGIONS), "serverStatuses": st.lists(STATUSES, max_size=3)},
    optional={"jobId": st.sampled_from(JOBS), "serverIds": st.lists(st.sampled_from(SERVERS), max_size=2)},
)
EXECUTIONS = st.fixed_dictionaries(
    {
        "executionId": st.sampled_from([f"exec-{n}" for n in range(5)]),
        "planName": st.sampled_from(["Plan A", "Plan B", ""]),
        # Few distinct times: ties (broken by execution id) are common.
        "startTime": st.sampled_from([0, 10, 20, 20.5]),
        "waves": st.lists(WAVES, max_size=3),
    }
)
HISTORIES = st.lists(EXECUTIONS, max_size=6)
INSTANCES = st.lists(
    st.fixed_dictionaries(
        {"sourceServerID": st.sampled_from(SERVERS), "recoveryInstanceID": st.sampled_from(RECOVERY_INSTANCES)},
        optional={"jobID": st.sampled_from(JOBS)},
    ),
    max_size=5,
)


def _scope_read(stored: dict[str, ExecutionRef], region: str, instances: list[dict[str, Any]]) -> ExecutionIndex:
    """What ``ExecutionIndexTable.lookup`` reads, with the table as a dict (absent keys absent)."""
    found = {key: stored[key] for key in first_keys(region, instances) if key in stored}
    found.update((key, stored[key]) for key in second_keys(region, instances, found) if key in stored)
    return index_of(found)


def _resolved(index: ExecutionIndex, region: str, ri: dict[str, Any]) -> Any:
    return index.resolve(
        job_id=ri.get("jobID"),
        recovery_instance_id=ri["recoveryInstanceID"],
        source_server_id=ri["sourceServerID"],
        region=region,
    )


def test_execution_index_items_round_trip_an_entry() -> None:
    ref = ExecutionRef("exec-1", "Plan A", 1_750_000_000.25)

    item = from_item(entry_item("job#drsjob-1", ref))

    assert item["indexKey"] == "job#drsjob-1"
    assert entry_ref(item) == ref


def test_execution_index_items_entry_without_plan_name_round_trips() -> None:
    ref = ExecutionRef("exec-1", None, 0.0)

    assert entry_ref(from_item(entry_item("ri#i-1", ref))) == ref


@settings(max_examples=300)
@given(HISTORIES)
def test_execution_index_items_entries_round_trip_the_index(history: list[dict[str, Any]]) -> None:
    index = ExecutionIndex.from_items(history)

    again = index_of(entries(index))

    assert again.by_job == index.by_job
    assert again.by_recovery_instance == index.by_recovery_instance
    assert again.by_server_region == index.by_server_region


@settings(max_examples=300)
@given(HISTORIES, INSTANCES, st.sampled_from(REGIONS))
def test_execution_index_items_scope_read_resolves_as_the_whole_index(
    history: list[dict[str, Any]], instances: list[dict[str, Any]], region: str
) -> None:
    """The keys a scope reads (two rounds) resolve every one of its recovery instances exactly
    as the in-memory index of the whole history does: same execution, same rule."""
    whole = ExecutionIndex.from_items(history)

    partial = _scope_read(entries(whole), region, instances)

    for ri in instances:
        assert _resolved(partial, region, ri) == _resolved(whole, region, ri)


def test_execution_index_items_second_read_only_for_unknown_jobs() -> None:
    known = {"sourceServerID": SERVERS[0], "recoveryInstanceID": RECOVERY_INSTANCES[0], "jobID": JOBS[0]}
    unknown = {"sourceServerID": SERVERS[1], "recoveryInstanceID": RECOVERY_INSTANCES[1], "jobID": JOBS[1]}

    keys = second_keys("us-east-1", [known, unknown], {f"job#{JOBS[0]}"})

    assert keys == [f"ri#{RECOVERY_INSTANCES[1]}", f"srv#{SERVERS[1]}#us-east-1"]


def test_execution_index_items_order_is_start_time_then_execution_id() -> None:
    refs = [ExecutionRef("exec-b", None, 10), ExecutionRef("exec-a", None, 20), ExecutionRef("exec-c", None, 10)]

    assert max(refs, key=order).execution_id == "exec-a"
    assert sorted(refs, key=order)[:2] == [refs[0], refs[2]]


@pytest.mark.parametrize(
    ("unknown", "first_seen", "asks"),
    [
        pytest.param(["job#drsjob-1"], [], True, id="a-job-with-no-item"),
        pytest.param([], [99.0, 100.0], False, id="markers-covered-by-the-last-rebuild"),
        pytest.param([], [100.5], True, id="a-marker-newer-than-the-last-rebuild"),
        pytest.param([], [], False, id="nothing-unknown"),
    ],
)
def test_execution_index_stored_source_asks_for_a_rebuild_only_for_news(
    unknown: list[str], first_seen: list[float], asks: bool
) -> None:
    source = StoredExecutions("index", "history", rebuilt_at=100.0)
    markers = {f"job#drsjob-m{n}": first for n, first in enumerate(first_seen)}

    assert source._asks_for_rebuild(Lookup(ExecutionIndex(), unknown, markers)) is asks
