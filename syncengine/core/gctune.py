"""Garbage-collector thresholds while a run is in progress.

A cold sync allocates tens of millions of short-lived containers (parsed responses, records,
items); almost all are freed by reference counting, but each one counts toward CPython's
generation-0 threshold (700 by default), so the cyclic collector runs thousands of times per
run and, as the heap grows, each young collection scans more survivors. A high generation-0
threshold makes those collections rare for a little more peak memory (the numbers are in
``benchmarks/RESULTS.md``). Cyclic garbage is still collected, just in larger, rarer batches.

The thresholds are raised while at least one run is open in the process and restored when the
last one closes (runs may overlap: tests and the handlers' self-checks run several at once), and
never lowered below what the process had already set.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

RUN_GC_THRESHOLDS = (50_000, 20, 10)

_lock = threading.Lock()
_open_runs = 0
_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def relaxed_gc(thresholds: tuple[int, int, int] = RUN_GC_THRESHOLDS) -> Iterator[None]:
    global _open_runs, _saved
    with _lock:
        if _open_runs == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(*(max(wanted, current) for wanted, current in zip(thresholds, _saved, strict=True)))
        _open_runs += 1
    try:
        yield
    finally:
        with _lock:
            _open_runs -= 1
            if _open_runs == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
