"""syncengine.fanout decisions and the status of a fan-out run, without I/O."""

from __future__ import annotations

import pytest

from syncengine.config import SyncSettings
from syncengine.errors import ConfigurationError, InvalidRequestError
from syncengine.fanout import fanout_wanted, group_message, scope_groups, summary_report
from syncengine.models import HealthStatus, RunStatus, Scope, SyncStatus
from syncengine.refresh_events import coalesce, parse_refresh_request, parse_refresh_requests
from syncengine.status import with_fanout_run

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
