"""A thin seam over the low-level DynamoDB client: every call limited, retried by the one retry
layer, and translated into the engine's errors; plus the attribute-value codec.

Items are built as DynamoDB JSON by hand (``to_attr``) rather than with boto3's TypeSerializer:
the cache writes tens of thousands of items per cold sync and the generic serializer's
per-value dispatch shows up in profiles.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from decimal import Decimal
from typing import Any

import anyio

from syncengine.core.callstats import CallStats
from syncengine.core.config import RetrySettings
from syncengine.core.errors import AwsError, TransientAwsError
from syncengine.core.retry import CallContext, call_with_retry, full_jitter

# BatchWriteItem takes at most 25 requests and BatchGetItem 100 keys; DynamoDB rejects a batch
# naming one key twice.
BATCH_WRITE_MAX = 25
BATCH_GET_MAX = 100
UNPROCESSED_MAX_ROUNDS = 10
# The error code of a write whose condition expression did not hold.
CONDITION_FAILED = "ConditionalCheckFailedException"


def to_attr(value: Any) -> dict[str, Any] | None:
    """Python value -> attribute value; None (and empty strings/collections) -> None = omit."""
    if value is None:
        return None
    # The exact-type test first in each branch: a cold sync encodes every attribute of every
    # record, and the abstract-class ``isinstance`` checks cost more than the encoding itself.
    kind = type(value)
    if kind is str or isinstance(value, str):
        return {"S": value} if value else None
    if kind is bool or isinstance(value, bool):
        return {"BOOL": value}
    if kind is int or isinstance(value, int | float | Decimal):
        return {"N": str(value)}
    if kind is dict or isinstance(value, Mapping):
        members = {str(k): a for k, v in value.items() if (a := to_attr(v)) is not None}
        return {"M": members} if members else None
    if kind is list or kind is tuple or isinstance(value, list | tuple | set | frozenset):
        items = [a for v in value if (a := to_attr(v)) is not None]
        return {"L": items} if items else None
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: a for k, v in values.items() if (a := to_attr(v)) is not None}


def from_attr(attr: Mapping[str, Any]) -> Any:
    ((kind, value),) = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [from_attr(v) for v in value]
    if kind == "SS":
        return sorted(value)
    if kind == "NS":
        return sorted(Decimal(v) for v in value)
    raise TypeError(f"unsupported attribute type {kind}")


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: from_attr(v) for k, v in item.items()}


def is_condition_failed(exc: AwsError) -> bool:
    """Whether a conditional write was refused because its condition did not hold (not a fault:
    the item is not the one the write was meant for)."""
    return exc.code == CONDITION_FAILED


def chunked(values: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Dynamo:
    """Limited, retried DynamoDB calls on one client."""

    def __init__(
        self,
        client: Any,
        *,
        retry: RetrySettings,
        stats: CallStats | None = None,
        concurrency: int = 16,
        region: str = "",
    ):
        self.client = client
        self.retry = retry
        self.stats = stats or CallStats()
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.region = region

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        operation = getattr(self.client, method)
        context = CallContext(f"dynamodb:{method}", region=self.region)

        async def attempt() -> dict[str, Any]:
            async with self.limiter:
                return await operation(**params)

        def on_retry(exc: Exception) -> None:
            self.stats.dynamodb_throttles += 1 if "Throughput" in getattr(exc, "code", "") else 0
            self.stats.record_retry(exc)  # type: ignore[arg-type]

        return await call_with_retry(attempt, context, settings=self.retry, on_retry=on_retry)

    async def write_if(self, method: str, **params: Any) -> dict[str, Any] | None:
        """A write whose ``ConditionExpression`` may refuse it: DynamoDB's answer, or None when
        the condition did not hold (not a fault: the item is not the one the write was meant for;
        each caller's condition says why it exists)."""
        try:
            return await self.call(method, **params)
        except AwsError as exc:
            if is_condition_failed(exc):
                return None
            raise

    async def paginate(self, method: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Query/Scan pages, following LastEvaluatedKey."""
        while True:
            page = await self.call(method, **params)
            for item in page.get("Items", []):
                yield item
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            params = {**params, "ExclusiveStartKey": last}

    async def scan_all(self, table: str, **params: Any) -> list[dict[str, Any]]:
        return [from_item(item) async for item in self.paginate("scan", TableName=table, **params)]

    async def batch_write(self, table: str, requests: list[dict[str, Any]]) -> None:
        """One BatchWriteItem of at most 25 requests, re-sending ``UnprocessedItems`` with backoff
        until none are left; raises TransientAwsError if DynamoDB keeps pushing back."""
        if len(requests) > BATCH_WRITE_MAX:
            raise ValueError(f"a batch holds at most {BATCH_WRITE_MAX} writes, got {len(requests)}")
        pending = requests
        for round_number in range(UNPROCESSED_MAX_ROUNDS):
            response = await self.call("batch_write_item", RequestItems={table: pending})
            pending = (response.get("UnprocessedItems") or {}).get(table) or []
            if not pending:
                return
            self.stats.dynamodb_throttles += len(pending)
            await anyio.sleep(full_jitter(self.retry, round_number))
        raise TransientAwsError(
            f"DynamoDB left {len(pending)} writes unprocessed after {UNPROCESSED_MAX_ROUNDS} rounds",
            code="UnprocessedItems",
            operation="dynamodb:batch_write_item",
        )

    async def batch_get(self, table: str, keys: list[dict[str, Any]], **params: Any) -> list[dict[str, Any]]:
        """One BatchGetItem of at most 100 keys, re-requesting ``UnprocessedKeys`` with backoff."""
        if len(keys) > BATCH_GET_MAX:
            raise ValueError(f"a batch reads at most {BATCH_GET_MAX} keys, got {len(keys)}")
        found: list[dict[str, Any]] = []
        pending: dict[str, Any] = {table: {"Keys": keys, **params}}
        for round_number in range(UNPROCESSED_MAX_ROUNDS):
            response = await self.call("batch_get_item", RequestItems=pending)
            found.extend(from_item(item) for item in (response.get("Responses") or {}).get(table, []))
            pending = response.get("UnprocessedKeys") or {}
            if not pending.get(table, {}).get("Keys"):
                return found
            self.stats.dynamodb_throttles += len(pending[table]["Keys"])
            await anyio.sleep(full_jitter(self.retry, round_number))
        raise TransientAwsError(
            f"DynamoDB left keys unprocessed after {UNPROCESSED_MAX_ROUNDS} rounds",
            code="UnprocessedKeys",
            operation="dynamodb:batch_get_item",
        )
