"""Pure properties of the store's units (no server): the attribute-value codec round-trips, a record
survives the trip to an item and back, the content hash sees content and nothing else, and the
batched writer never sends more than 25 writes a batch nor names a key twice."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import anyio
import anyio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.core.models import RecoveryInstanceRecord
from syncengine.dynamodb.seam import BATCH_WRITE_MAX, from_item, to_attr, to_item
from syncengine.tables.cache import CachedEntry, CacheStore
from syncengine.tables.records import content_hash, public_record, record_content, record_to_item
from tests.property.conftest import PURE_EXAMPLES

pure = settings(max_examples=PURE_EXAMPLES)

scalars = (
    st.text(max_size=12)
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**6), max_value=10**6)
    | st.none()
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=16,
)


def normalized(value: Any) -> Any:
    """What a value reads back as: absent when empty (None, "", empty or all-empty collections),
    numbers as int when integral, else float; the codec's documented contract."""
    if value is None or value == "" or (isinstance(value, list | dict) and not value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal):
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() else float(number)
    if isinstance(value, dict):
        members = {k: n for k, v in value.items() if (n := normalized(v)) is not None}
        return members or None
    if isinstance(value, list):
        items = [n for v in value if (n := normalized(v)) is not None]
        return items or None
    return value


@pure
@given(item=st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=6))
def test_codec_round_trips_every_value(item: dict[str, Any]) -> None:
    """from_item(to_item(x)) is x with empty values dropped: nothing else is lost or changed."""
    expected = {k: n for k, v in item.items() if (n := normalized(v)) is not None}
    assert from_item(to_item(item)) == expected


@pure
@given(value=values)
def test_codec_never_writes_an_empty_string_or_collection(value: Any) -> None:
    """DynamoDB rejects empty key strings and the contract forbids "" values: none is ever written."""

    def walk(attr: dict[str, Any]) -> None:
        ((kind, inner),) = attr.items()
        if kind == "S":
            assert inner != ""
        elif kind == "M":
            assert inner
            for member in inner.values():
                walk(member)
        elif kind == "L":
            assert inner
            for member in inner:
                walk(member)

    attr = to_attr(value)
    if attr is not None:
        walk(attr)


hex17 = st.text(alphabet="0123456789abcdef", min_size=17, max_size=17)
optional_text = st.none() | st.text(min_size=0, max_size=10)
records = st.builds(
    RecoveryInstanceRecord,
    source_server_id=hex17.map(lambda h: "s-" + h),
    recovery_instance_id=hex17.map(lambda h: "i-" + h),
    account_id=st.from_regex(r"\A[1-9][0-9]{11}\Z"),
    region=st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2"]),
    ec2_instance_id=hex17.map(lambda h: "i-" + h),
    ec2_instance_state=st.sampled_from(["running", "stopped", "pending"]),
    source_server_name=optional_text,
    name=optional_text,
    private_ip=st.none() | st.ip_addresses(v=4).map(str),
    public_ip=st.none() | st.ip_addresses(v=4).map(str),
    launch_time=st.none() | st.sampled_from(["2025-06-01T00:00:00.000Z", "2025-06-02T10:11:12.131Z"]),
    is_drill=st.none() | st.booleans(),
    source_security_group_ids=st.lists(st.text(min_size=1, max_size=6), max_size=3).map(tuple),
    source_server_tags=st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=3).map(
        lambda tags: tuple(sorted(tags.items()))
    ),
    observed_at=st.integers(0, 2**45),
)


@pure
@given(record=records)
def test_record_survives_the_trip_to_an_item_and_back(record: RecoveryInstanceRecord) -> None:
    """The public record read back equals the record's content plus lastSyncTime; the bookkeeping
    attributes are there for the engine and stripped from what callers see."""
    item = from_item(record_to_item(record, "2025-06-01T00:00:00.000Z"))
    expected = {k: normalized(v) for k, v in record_content(record).items() if normalized(v) is not None}
    assert public_record(item) == {**expected, "lastSyncTime": "2025-06-01T00:00:00.000Z"}
    assert item["scopeKey"] == f"{record.account_id}#{record.region}"
    assert item["observedAt"] == record.observed_at


@pure
@given(
    record=records,
    other_time=st.integers(0, 2**45),
    field=st.sampled_from(["private_ip", "name", "ec2_instance_state"]),
)
def test_content_hash_sees_content_and_not_times(record: RecoveryInstanceRecord, other_time: int, field: str) -> None:
    """Observation and sync times never change the hash (or steady syncs would rewrite everything);
    a changed field always does."""
    same = dataclasses.replace(record, observed_at=other_time)
    assert content_hash(record_content(same)) == content_hash(record_content(record))
    replacement = {"private_ip": "192.0.2.77", "name": "renamed-by-test", "ec2_instance_state": "terminated"}
    changed = dataclasses.replace(record, **{field: replacement[field]})
    if getattr(record, field) != replacement[field]:
        assert content_hash(record_content(changed)) != content_hash(record_content(record))


class RecordingDynamo:
    """A Dynamo double for the store: records each batch write instead of sending it."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    async def batch_write(self, table: str, requests: list[dict[str, Any]]) -> None:
        assert len(requests) <= BATCH_WRITE_MAX, "BatchWriteItem takes at most 25 requests"
        self.batches.append(list(requests))
        await anyio.lowlevel.checkpoint()


def key_of(request: dict[str, Any]) -> str:
    if "PutRequest" in request:
        return request["PutRequest"]["Item"]["sourceServerId"]["S"]
    return request["DeleteRequest"]["Key"]["sourceServerId"]["S"]


@pure
@given(
    drawn=st.lists(records, max_size=80),
    server_pool=st.integers(1, 40),
    cached_hashes=st.dictionaries(st.integers(0, 39), st.sampled_from(["stale", "same"]), max_size=40),
)
def test_store_batches_hold_at_most_25_writes_and_never_repeat_a_key(
    drawn: list[RecoveryInstanceRecord], server_pool: int, cached_hashes: dict[int, str]
) -> None:
    """Many records per server (relaunches), some unchanged in the cache: every
    batch holds at most 25 requests, no key appears twice in the run, each server gets at most one
    put, and it is the newest recovery instance of that server. (Deletes are conditional single
    DeleteItems: tests/integration/test_faults_responses.py.)"""
    pool = [f"s-{i:017x}" for i in range(server_pool)]
    batch = [dataclasses.replace(r, source_server_id=pool[i % server_pool]) for i, r in enumerate(drawn)]
    cached: dict[str, CachedEntry] = {}
    for index, kind in cached_hashes.items():
        sid = f"s-{index:017x}"
        same = next((r for r in batch if r.source_server_id == sid), None)
        digest = content_hash(record_content(same)) if same is not None and kind == "same" else "stale"
        cached[sid] = CachedEntry(sid, "i-0", digest, 0)
    dynamo = RecordingDynamo()
    store = CacheStore(dynamo, "cache", write_concurrency=3)  # type: ignore[arg-type]

    async def scenario() -> None:
        await store.write_records(batch, cached, last_sync_time="2025-06-01T00:00:00.000Z")

    anyio.run(scenario)

    puts = [key_of(r) for b in dynamo.batches for r in b if "PutRequest" in r]
    assert all(0 < len(b) <= BATCH_WRITE_MAX for b in dynamo.batches)
    for one in dynamo.batches:
        assert len({key_of(r) for r in one}) == len(one), "a batch names a key twice"
    assert len(puts) == len(set(puts))
    for request in (r for b in dynamo.batches for r in b if "PutRequest" in r):
        sid = key_of(request)
        newest = max(
            (r for r in batch if r.source_server_id == sid),
            key=lambda r: (r.launch_time or "", r.observed_at, r.recovery_instance_id),
        )
        assert request["PutRequest"]["Item"]["recoveryInstanceId"]["S"] == newest.recovery_instance_id
