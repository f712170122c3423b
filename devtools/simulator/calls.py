"""Counts every AWS call the simulator answers, by service, operation, account, region and
outcome ("Success" or the error code), so tests and benchmarks can assert on call volume
(e.g. "zero DRS describe calls") and on what the faults did."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

SUCCESS = "Success"

_Key = tuple[str, str, str, str, str]


class CallCounter:
    def __init__(self) -> None:
        # Recorded on the server loop, read from test threads: the lock keeps snapshots whole.
        self._lock = threading.Lock()
        self._counts: Counter[_Key] = Counter()

    def record(self, service: str, operation: str, account_id: str, region: str, outcome: str) -> None:
        key = (service, operation, account_id, region, outcome)
        with self._lock:
            self._counts[key] += 1

    def count(
        self,
        service: str | None = None,
        operation: str | None = None,
        account_id: str | None = None,
        region: str | None = None,
        outcome: str | None = None,
    ) -> int:
        wanted = (service, operation, account_id, region, outcome)
        with self._lock:
            items = list(self._counts.items())
        return sum(n for key, n in items if all(w is None or w == k for w, k in zip(wanted, key, strict=True)))

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> dict[str, Any]:
        """The ``GET /_simulator/calls`` document."""
        with self._lock:
            items = sorted(self._counts.items())
        by_service: Counter[str] = Counter()
        by_operation: Counter[str] = Counter()
        by_account: Counter[str] = Counter()
        by_region: Counter[str] = Counter()
        by_outcome: Counter[str] = Counter()
        calls = []
        for (service, operation, account_id, region, outcome), n in items:
            by_service[service] += n
            by_operation[f"{service}:{operation}"] += n
            by_account[account_id] += n
            by_region[region] += n
            by_outcome[outcome] += n
            calls.append(
                {
                    "service": service,
                    "operation": operation,
                    "accountId": account_id,
                    "region": region,
                    "outcome": outcome,
                    "count": n,
                }
            )
        return {
            "total": sum(by_service.values()),
            "byService": dict(by_service),
            "byOperation": dict(by_operation),
            "byAccount": dict(by_account),
            "byRegion": dict(by_region),
            "byOutcome": dict(by_outcome),
            "calls": calls,
        }
