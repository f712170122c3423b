"""DynamoDB calls and consumed capacity per table, as DynamoDB itself reports them.

``DynamoCounter`` observes the engine's DynamoDB client (``syncengine.dynamodb.client.CALL_OBSERVERS``)
while ``observing``: before each call it counts the call per table and adds
``ReturnConsumedCapacity=TOTAL`` to every operation that takes it; after it, it sums the answer's
``ConsumedCapacity`` per table. The numbers are read and write units as DynamoDB bills them on
demand, not estimates (history_cost, cost).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from syncengine.dynamodb.client import CallObserver

# Operations that take ReturnConsumedCapacity.
CAPACITY_OPERATIONS = frozenset(
    {"GetItem", "BatchGetItem", "Query", "Scan", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
)
READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan"})


class DynamoCounter(CallObserver):
    """Calls and consumed read/write units per table, seen by the engine's DynamoDB client."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.read_units: Counter[str] = Counter()
        self.write_units: Counter[str] = Counter()

    def reset(self) -> None:
        self.calls.clear()
        self.read_units.clear()
        self.write_units.clear()

    def before(self, operation: str, params: dict[str, Any]) -> None:
        tables = [params["TableName"]] if "TableName" in params else list(params.get("RequestItems") or {})
        for table in tables:
            self.calls[table] += 1
        if operation in CAPACITY_OPERATIONS:
            params["ReturnConsumedCapacity"] = "TOTAL"

    def after(self, operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> None:
        consumed = parsed.get("ConsumedCapacity") or []
        for entry in [consumed] if isinstance(consumed, Mapping) else consumed:
            units = float(entry.get("CapacityUnits") or 0)
            target = self.read_units if operation in READ_OPERATIONS else self.write_units
            target[str(entry.get("TableName"))] += units

    def of(self, table: str) -> dict[str, float]:
        return {
            "calls": self.calls[table],
            "read_units": round(self.read_units[table], 1),
            "write_units": round(self.write_units[table], 1),
        }

    def totals(self) -> dict[str, float]:
        return {
            "calls": sum(self.calls.values()),
            "read_units": round(sum(self.read_units.values()), 1),
            "write_units": round(sum(self.write_units.values()), 1),
        }
