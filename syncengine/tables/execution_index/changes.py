"""The execution index's change log (the ``meta#changes`` item of the ``execution-index`` table):
which index keys were written when, so that a sync attributes again only the cached records whose
keys changed since their scope was last attributed (``syncengine.sync.attribution``; issue 24).

Every writer of keys (a refresh, a rebuild, a rebuild's replay) logs them as ``pending`` before
writing (``<epoch>#<key>``: a writer that dies between the two leaves an entry too many, never one
too few) and moves them to ``keys`` with the time they landed once written. A write of too many
keys to list (a first rebuild), or one that finds the item full, says instead until when unlisted
writes land (``unloggedUntil``). The rebuild drops entries older than
``CHANGE_LOG_RETENTION_SECONDS`` and moves the log's horizon (``since``) with them.

A sync that read the index at ``stamp`` (its scope's ``attributedAt``) saw every key that landed
before it; it may have missed the ones landed after it, and the pending ones logged up to
``CHANGE_MARGIN_SECONDS`` before it (``KeyChanges.since_stamp``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncengine.core.errors import AwsError
from syncengine.dynamodb.seam import Dynamo, chunked, from_item, is_condition_failed
from syncengine.tables.execution_index.items import KEY

CHANGES_KEY = "meta#changes"
CHANGED = "keys"
PENDING = "pending"
SINCE = "since"
UNLOGGED_UNTIL = "unloggedUntil"
# A key write lands within this long of its pending entry (both happen inside one Lambda
# invocation, at most 900 s).
CHANGE_MARGIN_SECONDS = 900.0
# How far apart two Lambda containers' clocks may be (an entry's time is the writer's, a stamp the
# reader's; Lambda's clocks follow the Amazon Time Sync Service, within milliseconds).
CLOCK_SKEW_SECONDS = 2.0
# The rebuild drops change-log entries older than this; a scope not attributed since is attributed
# again whole.
CHANGE_LOG_RETENTION_SECONDS = 7200.0
# A write of more keys than this (a first rebuild) is not listed key by key (``unloggedUntil``):
# the log item stays far below DynamoDB's 400 KB item limit.
CHANGE_LOG_MAX_KEYS = 2000


@dataclass(frozen=True)
class KeyChanges:
    """The change log as read: complete for entries at or after ``since``; ``written``: each key
    whose write has landed -> when (epoch seconds); ``pending``: each key logged for a write not
    yet known to have landed -> when it was logged."""

    since: float = 0.0
    written: Mapping[str, float] = field(default_factory=dict)
    pending: Mapping[str, float] = field(default_factory=dict)
    # Writes too large to log key by key land until then (a stamp before it cannot tell).
    unlogged_until: float = 0.0

    def since_stamp(self, stamp: float | None) -> frozenset[str] | None:
        """The keys that may have been written after a sync that attributed at ``stamp`` read
        them: landed at or after it, or logged within ``CHANGE_MARGIN_SECONDS`` before it and not
        known to have landed. None when the log cannot tell (no stamp, one older than its
        horizon, or one taken while a write it does not list was landing)."""
        if stamp is None or stamp < self.unlogged_until or stamp - CHANGE_MARGIN_SECONDS < self.since:
            return None
        landed = {key for key, at in self.written.items() if at >= stamp - CLOCK_SKEW_SECONDS}
        return frozenset(landed | {key for key, at in self.pending.items() if at >= stamp - CHANGE_MARGIN_SECONDS})

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None) -> KeyChanges:
        if not item:
            return cls()
        return cls(
            float(item.get(SINCE) or 0),
            _latest(item.get(CHANGED)),
            _latest(item.get(PENDING)),
            float(item.get(UNLOGGED_UNTIL) or 0),
        )


def _latest(entries: Any) -> dict[str, float]:
    """``<epoch>#<key>`` entries as key -> the latest epoch."""
    latest: dict[str, float] = {}
    for entry in entries or ():
        at, _, key = str(entry).partition("#")
        latest[key] = max(latest.get(key, 0.0), _as_float(at))
    return latest


@dataclass(frozen=True)
class LoggedWrite:
    """What ``log_changes`` logged, for ``changes_written`` once the keys are written: the keys
    and their pending entries, or the mark of a write too large to list."""

    keys: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    unlogged_mark: float | None = None


class ChangeLog:
    """Reads and writes of the change log item."""

    def __init__(self, dynamo: Dynamo, table: str):
        self.dynamo = dynamo
        self.table = table

    async def read(self) -> KeyChanges:
        response = await self.dynamo.call(
            "get_item", TableName=self.table, Key={KEY: {"S": CHANGES_KEY}}, ConsistentRead=True
        )
        item = response.get("Item")
        return KeyChanges.from_item(from_item(item) if item else None)

    async def log_changes(self, keys: Sequence[str], now: float) -> LoggedWrite:
        """Log ``keys`` as about to be written (``pending``, at ``now``), before they are written:
        a writer that dies between the two leaves an entry too many, never one too few. Too many
        keys, or a log item grown too large, are not listed: the log then says that unlisted writes
        land until ``now`` plus ``CHANGE_MARGIN_SECONDS``. Pass the answer to ``changes_written``."""
        if not keys:
            return LoggedWrite()
        if len(keys) > CHANGE_LOG_MAX_KEYS:
            return LoggedWrite(unlogged_mark=await self._mark_unlogged(now))
        pending = tuple(sorted({f"{int(now)}#{key}" for key in keys}))
        try:
            await self.dynamo.call(
                "update_item",
                TableName=self.table,
                Key={KEY: {"S": CHANGES_KEY}},
                UpdateExpression="ADD #pending :entries",
                ExpressionAttributeNames={"#pending": PENDING},
                ExpressionAttributeValues={":entries": {"SS": list(pending)}},
            )
        except AwsError as exc:
            if exc.code != "ValidationException":  # the 400 KB item limit
                raise
            mark = await self._mark_unlogged(now)
            await self.prune_changes(now)  # a stamp after the mark needs no entry before ``now``
            return LoggedWrite(unlogged_mark=mark)
        return LoggedWrite(tuple(keys), pending)

    async def changes_written(self, logged: LoggedWrite, now: float) -> None:
        """The writes ``logged`` announced have all landed (at ``now``): their entries move from
        pending to written, so only syncs that read the log before now attribute those records
        again (not every sync for the margin); an unlisted write's mark comes down to now."""
        if logged.unlogged_mark is not None:
            await self._unmark_unlogged(logged.unlogged_mark, now)
        if not logged.pending:
            return
        landed = sorted({f"{now:.3f}#{key}" for key in logged.keys})
        try:
            await self.dynamo.call(
                "update_item",
                TableName=self.table,
                Key={KEY: {"S": CHANGES_KEY}},
                UpdateExpression="ADD #keys :landed DELETE #pending :pending",
                ExpressionAttributeNames={"#keys": CHANGED, "#pending": PENDING},
                ExpressionAttributeValues={":landed": {"SS": landed}, ":pending": {"SS": list(logged.pending)}},
            )
        except AwsError as exc:
            if exc.code != "ValidationException":
                raise
            # The pending entries stay: they cover the write for the margin, which is long enough.

    async def _mark_unlogged(self, now: float) -> float:
        until = now + CHANGE_MARGIN_SECONDS
        try:
            await self.dynamo.call(
                "update_item",
                TableName=self.table,
                Key={KEY: {"S": CHANGES_KEY}},
                UpdateExpression="SET #until = :until",
                # Only forward: another unlisted write may land later than this one.
                ConditionExpression="attribute_not_exists(#until) OR #until < :until",
                ExpressionAttributeNames={"#until": UNLOGGED_UNTIL},
                ExpressionAttributeValues={":until": {"N": str(until)}},
            )
        except AwsError as exc:
            if not is_condition_failed(exc):
                raise
        return until

    async def _unmark_unlogged(self, mark: float, now: float) -> None:
        try:
            await self.dynamo.call(
                "update_item",
                TableName=self.table,
                Key={KEY: {"S": CHANGES_KEY}},
                UpdateExpression="SET #until = :now",
                # Only our own mark: another unlisted write may have moved it since.
                ConditionExpression="#until = :mark",
                ExpressionAttributeNames={"#until": UNLOGGED_UNTIL},
                ExpressionAttributeValues={":now": {"N": str(now)}, ":mark": {"N": str(mark)}},
            )
        except AwsError as exc:
            if not is_condition_failed(exc):
                raise

    async def prune_changes(self, before: float) -> None:
        """Make the log complete only from ``before`` on: its horizon first (so a reader never
        sees an entry gone without the horizon covering it), then the older entries dropped."""
        try:
            await self.dynamo.call(
                "update_item",
                TableName=self.table,
                Key={KEY: {"S": CHANGES_KEY}},
                UpdateExpression="SET #since = :before",
                # The horizon only moves forward: a racing writer may have moved it further.
                ConditionExpression="attribute_not_exists(#since) OR #since < :before",
                ExpressionAttributeNames={"#since": SINCE},
                ExpressionAttributeValues={":before": {"N": str(before)}},
            )
        except AwsError as exc:
            if not is_condition_failed(exc):
                raise
        response = await self.dynamo.call(
            "get_item", TableName=self.table, Key={KEY: {"S": CHANGES_KEY}}, ConsistentRead=True
        )
        item = from_item(response.get("Item") or {})
        for attribute in (CHANGED, PENDING):
            old = [str(e) for e in item.get(attribute) or () if _as_float(str(e).partition("#")[0]) < before]
            for batch in chunked(old, 1000):
                await self.dynamo.call(
                    "update_item",
                    TableName=self.table,
                    Key={KEY: {"S": CHANGES_KEY}},
                    UpdateExpression="DELETE #entries :old",
                    ExpressionAttributeNames={"#entries": attribute},
                    ExpressionAttributeValues={":old": {"SS": batch}},
                )


def _as_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0
