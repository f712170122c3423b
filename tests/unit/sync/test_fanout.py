"""syncengine.sync.fanout decisions and the status of a fan-out run, without I/O."""

from __future__ import annotations

import pytest

from syncengine.core.config import SyncSettings
from syncengine.core.errors import ConfigurationError, InvalidRequestError
from syncengine.core.models import HealthStatus, RunStatus, Scope, SyncStatus
from syncengine.refresh.events import coalesce, parse_refresh_request, parse_refresh_requests
from syncengine.sync.fanout import fanout_wanted, group_message, scope_groups, summary_report
from syncengine.tables.status import with_fanout_run

RUN = "0123456789abcdef"


@pytest.mark.parametrize(
    ("mode", "scopes", "expected"),
    [
        pytest.param("off", 10_000, False, id="off"),
        pytest.param("on", 1, True, id="on"),
        pytest.param("auto", 499, False, id="auto-below"),
        pytest.param("auto", 500, True, id="auto-at-threshold"),
    ],
)
def test_fanout_wanted_by_mode_and_scope_count(mode: str, scopes: int, expected: bool) -> None:
    assert fanout_wanted(SyncSettings(fanout=mode, fanout_threshold=500), scopes) is expected


def test_fanout_settings_from_env() -> None:
    settings = SyncSettings.from_env(
        {"SYNC_FANOUT": "AUTO", "SYNC_FANOUT_THRESHOLD": "50", "SYNC_WORK_QUEUE_URL": "https://queue/work"}
    )
    assert (settings.fanout, settings.fanout_threshold, settings.work_queue_url) == ("auto", 50, "https://queue/work")


def test_fanout_setting_rejects_an_unknown_mode() -> None:
    with pytest.raises(ConfigurationError, match="SYNC_FANOUT"):
        SyncSettings.from_env({"SYNC_FANOUT": "sometimes"})


def test_fanout_group_message_is_a_refresh_scope_group_message_with_its_run() -> None:
    scopes = [Scope("111111111111", "us-east-1"), Scope("111111111111", "us-west-2")]
    requests = parse_refresh_requests(group_message(scopes, RUN))
    assert [r.scope for r in requests] == scopes
    assert all(r.whole_scope and r.run_id == RUN for r in requests)
    work = coalesce([("m1", r) for r in requests])
    assert [w.run_messages for w in work.values()] == [{"m1": RUN}, {"m1": RUN}]


def _account_scopes(account: str, regions: int) -> list[Scope]:
    return [Scope(account, f"region-{i}") for i in range(regions)]


def test_fanout_scope_groups_keep_an_account_s_regions_together() -> None:
    a, b, c = _account_scopes("1" * 12, 4), _account_scopes("2" * 12, 4), _account_scopes("3" * 12, 4)
    assert scope_groups(a + b + c, 10) == [a + b, c]


def test_fanout_scope_groups_split_an_account_larger_than_a_group() -> None:
    a, b = _account_scopes("1" * 12, 5), _account_scopes("2" * 12, 1)
    assert scope_groups(a + b, 2) == [a[0:2], a[2:4], [a[4], b[0]]]


def test_fanout_scope_groups_hold_every_scope_once() -> None:
    scopes = [s for n in range(30) for s in _account_scopes(f"{n:012d}", n % 7 + 1)]
    groups = scope_groups(scopes, 10)
    assert sorted(s for g in groups for s in g) == sorted(scopes)
    assert max(len(g) for g in groups) <= 10


def test_fanout_scopes_per_message_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="fanout_scopes_per_message"):
        SyncSettings(fanout_scopes_per_message=101)


def test_fanout_scope_message_with_a_malformed_run_id_is_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="runId"):
        parse_refresh_request({"accountId": "111111111111", "region": "us-east-1", "runId": "x; drop"})


def test_fanout_summary_counts_removed_records_as_deleted() -> None:
    record = {
        "runId": RUN,
        "startedAt": "2026-01-01T00:00:00Z",
        "scopesSynced": 3,
        "scopesFailed": 1,
        "instancesDeleted": 2,
    }
    report = summary_report(record, removed_scopes=1, removed_records=5)
    assert report.status is RunStatus.PARTIAL
    assert (report.instances_deleted, report.scopes_removed, report.run_id) == (7, 1, RUN)


@pytest.mark.parametrize(
    ("health", "finished", "expected"),
    [
        pytest.param(HealthStatus.HEALTHY, 3, HealthStatus.DEGRADED, id="lost-message"),
        pytest.param(HealthStatus.HEALTHY, 4, HealthStatus.HEALTHY, id="finished"),
        pytest.param(HealthStatus.RUNNING, 3, HealthStatus.RUNNING, id="still-running"),
        pytest.param(HealthStatus.ERROR, 3, HealthStatus.ERROR, id="worse-stays"),
    ],
)
def test_fanout_unfinished_run_is_never_healthy(health: HealthStatus, finished: int, expected: HealthStatus) -> None:
    record = {"runId": RUN, "total": 4, "finished": finished, "startedAt": "2026-01-01T00:00:00Z"}
    status = with_fanout_run(SyncStatus(status=health), record)
    assert status.status is expected
    assert status.to_dict()["fanoutRun"]["finished"] == finished


def test_fanout_unfinished_run_superseded_by_a_later_full_run_says_nothing() -> None:
    """Fan-out turned off after a run that lost a message: the later in-process full run decides."""
    record = {"runId": RUN, "total": 4, "finished": 3, "startedAt": "2026-01-01T00:00:00Z"}
    status = with_fanout_run(SyncStatus(status=HealthStatus.HEALTHY), record, latest_started_at="2026-01-01T00:05:00Z")
    assert status.status is HealthStatus.HEALTHY
    assert "fanoutRun" not in status.to_dict()


def test_fanout_run_is_judged_when_it_is_the_latest_full_run() -> None:
    record = {"runId": RUN, "total": 4, "finished": 3, "startedAt": "2026-01-01T00:00:00Z"}
    status = with_fanout_run(SyncStatus(status=HealthStatus.HEALTHY), record, latest_started_at="2026-01-01T00:00:00Z")
    assert status.status is HealthStatus.DEGRADED


# -- the run records stay small at any scale ------------------------------------------------------


def _attribute_size(value: object) -> int:
    """DynamoDB's item-size rules: strings their UTF-8 bytes, numbers about one byte per two
    significant digits plus one, booleans one byte."""
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return (len(str(abs(value))) + 1) // 2 + 1
    return len(str(value).encode())


def _item_size(item: dict[str, object]) -> int:
    return sum(len(name.encode()) + _attribute_size(value) for name, value in item.items())


def test_fanout_records_stay_a_few_kb_at_20000_scopes() -> None:
    """Worst case at 20,000 scopes: every scope key as long as any DRS region makes it (GovCloud
    included), every counter at its largest; every part full and counted, the run record holding
    every part's marker. Both under 4 KB: DynamoDB's limit is 400 KB and each update is billed
    on the whole item (one marker per scope on one item reached the limit near 12,000 scopes)."""
    from syncengine.aws.clients import drs_regions
    from syncengine.sync.fanout import part_sizes, plan_groups
    from syncengine.tables.status import FANOUT_COUNTERS, FANOUT_PART_SCOPES, part_marker

    longest_region = max((r for p in ("aws", "aws-us-gov") for r in drs_regions(p)), key=len)
    scopes = [Scope(f"{i:012d}", longest_region) for i in range(20_000)]
    groups = plan_groups(scopes, 10, set())
    sizes = part_sizes(groups)
    assert sum(sizes.values()) == 20_000 and max(sizes.values()) <= FANOUT_PART_SCOPES
    assert all(len({g.part for g in groups if s in g.scopes}) == 1 for s in scopes[:50])  # one part each

    big = 10**12  # more instances than any estate has
    run_id = "0123456789abcdef"
    part_item = {
        "pk": f"FANOUT#{run_id}",
        "sk": "PART#00000",
        "runId": run_id,
        "total": FANOUT_PART_SCOPES,
        "finished": FANOUT_PART_SCOPES,
        "remaining": 0,
        "ttl": 2_000_000_000,
        **dict.fromkeys(FANOUT_COUNTERS, big),
        **{f"{i:012d}#{longest_region}": True for i in range(FANOUT_PART_SCOPES)},
    }
    run_record = {
        "pk": "RUN",
        "sk": "FANOUT",
        "runId": run_id,
        "total": 20_000,
        "finished": 20_000,
        "remaining": 0,
        "parts": len(sizes),
        "startedAt": "2026-12-07T16:00:00.000Z",
        **dict.fromkeys(FANOUT_COUNTERS, big),
        **{part_marker(p): True for p in sizes},
    }
    assert _item_size(part_item) < 4096, _item_size(part_item)
    assert _item_size(run_record) < 4096, _item_size(run_record)


def test_fanout_groups_fill_parts_without_splitting_a_group() -> None:
    from syncengine.sync.fanout import ACTIVE_EXECUTION_DELAY_S, part_sizes, plan_groups
    from syncengine.tables.status import FANOUT_PART_SCOPES

    scopes = [Scope(f"{i:012d}", region) for i in range(100) for region in ("us-east-1", "us-west-2", "eu-west-1")]
    delayed = {scopes[0]}
    groups = plan_groups(scopes, 10, delayed)
    assert sorted(s for g in groups for s in g.scopes) == sorted(scopes)
    assert all(sum(len(g.scopes) for g in groups if g.part == p) <= FANOUT_PART_SCOPES for p in part_sizes(groups))
    assert [g.delay for g in groups if scopes[0] in g.scopes] == [ACTIVE_EXECUTION_DELAY_S]
    parts = [g.part for g in groups]
    assert parts == sorted(parts)  # consecutive groups share a part


def test_fanout_group_message_says_its_part() -> None:
    scopes = [Scope("111111111111", "us-east-1")]
    requests = parse_refresh_requests(group_message(scopes, RUN, 7))
    assert [r.part for r in requests] == [7]
    assert [w.run_parts for w in coalesce([("m1", r) for r in requests]).values()] == [{RUN: 7}]
    with pytest.raises(InvalidRequestError):
        parse_refresh_requests({**group_message(scopes, RUN), "part": -1})
