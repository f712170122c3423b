"""What a sync re-attributes without reading the index (issue 24): the split ``contentHash``
(observed part, attribution kind) and the change log's answer for a scope's stamp."""

from __future__ import annotations

import dataclasses

import pytest

from syncengine.core.models import RecoveryInstanceRecord, Scope
from syncengine.tables.cache import CachedEntry
from syncengine.tables.execution_index.changes import CHANGE_MARGIN_SECONDS, CLOCK_SKEW_SECONDS, KeyChanges
from syncengine.tables.records import observed_hash, record_content, record_to_item, split_record_hash

SCOPE = Scope("111122223333", "us-east-1")
RECORD = RecoveryInstanceRecord(
    source_server_id="s-1",
    recovery_instance_id="i-1",
    account_id=SCOPE.account_id,
    region=SCOPE.region,
    ec2_instance_id="i-e1",
    ec2_instance_state="RUNNING",
    job_id="drsjob-1",
    observed_at=1,
)


def _hash(record: RecoveryInstanceRecord) -> str:
    return str(record_to_item(record, "t")["contentHash"]["S"])


def test_record_hash_keeps_the_observed_part_apart_from_the_attribution() -> None:
    attributed = dataclasses.replace(RECORD, source_execution_id="exec-1", source_plan_name="P", attribution="job")
    renamed = dataclasses.replace(RECORD, name="web-02")

    assert split_record_hash(_hash(attributed))[0] == split_record_hash(_hash(RECORD))[0]
    assert _hash(attributed) != _hash(RECORD)
    assert split_record_hash(_hash(renamed))[0] != split_record_hash(_hash(RECORD))[0]
    assert split_record_hash(_hash(RECORD))[0] == observed_hash(record_content(attributed))


@pytest.mark.parametrize(
    ("attribution", "kind"),
    [
        pytest.param("job", "j", id="job"),
        pytest.param("recoveryInstance", "r", id="recovery-instance"),
        pytest.param("inferred", "i", id="inferred"),
        pytest.param(None, "n", id="none"),
    ],
)
def test_record_hash_names_the_attribution_kind(attribution: str | None, kind: str) -> None:
    record = dataclasses.replace(RECORD, source_execution_id="exec-1" if attribution else None, attribution=attribution)

    assert CachedEntry("s-1", "i-1", _hash(record), 1).attribution_kind == kind


def test_record_hash_of_the_older_single_form_is_unknown() -> None:
    """A record written before the split is attributed again once (then stored in the new form)."""
    entry = CachedEntry("s-1", "i-1", "0123456789abcdef01234567", 1)

    assert (entry.observed_hash, entry.attribution_kind) == (None, None)


def test_key_changes_lists_keys_landed_after_the_stamp_and_pending_within_the_margin() -> None:
    stamp = 10_000.0
    changes = KeyChanges(
        since=0.0,
        written={"job#old": stamp - CLOCK_SKEW_SECONDS - 1, "job#new": stamp + 5},
        pending={"ri#in-flight": stamp - CHANGE_MARGIN_SECONDS + 1, "ri#abandoned": stamp - CHANGE_MARGIN_SECONDS - 1},
    )

    assert changes.since_stamp(stamp) == {"job#new", "ri#in-flight"}


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(KeyChanges(since=10_000.0 - CHANGE_MARGIN_SECONDS + 1), id="older-than-the-horizon"),
        pytest.param(KeyChanges(unlogged_until=10_001.0), id="during-an-unlisted-write"),
    ],
)
def test_key_changes_cannot_tell(changes: KeyChanges) -> None:
    assert changes.since_stamp(10_000.0) is None
    assert KeyChanges().since_stamp(None) is None


def test_key_changes_from_item_keeps_each_keys_latest_entry() -> None:
    item = {"keys": ["5.000#job#a", "7.500#job#a"], "pending": ["3#ri#b"], "since": 1, "unloggedUntil": 2}

    changes = KeyChanges.from_item(item)

    assert (changes.written, changes.pending, changes.since, changes.unlogged_until) == (
        {"job#a": 7.5},
        {"ri#b": 3.0},
        1.0,
        2.0,
    )
