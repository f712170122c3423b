"""relaxed_gc raises the collector's thresholds while any run is open and restores the process's
own thresholds when the last one closes, however runs overlap."""

from __future__ import annotations

import gc

import pytest

from syncengine.core.gctune import RUN_GC_THRESHOLDS, relaxed_gc


@pytest.fixture
def default_thresholds():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield (700, 10, 10)
    gc.set_threshold(*saved)


def test_thresholds_are_raised_inside_and_restored_after(default_thresholds) -> None:
    with relaxed_gc():
        assert gc.get_threshold() == RUN_GC_THRESHOLDS
    assert gc.get_threshold() == default_thresholds


def test_overlapping_runs_restore_only_when_the_last_closes(default_thresholds) -> None:
    first, second = relaxed_gc(), relaxed_gc()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first run ends while the second is still going
    assert gc.get_threshold() == RUN_GC_THRESHOLDS
    second.__exit__(None, None, None)
    assert gc.get_threshold() == default_thresholds


def test_a_process_that_set_higher_thresholds_keeps_them(default_thresholds) -> None:
    gc.set_threshold(100_000, 5, 50)
    with relaxed_gc():
        assert gc.get_threshold() == (100_000, 20, 50)
    assert gc.get_threshold() == (100_000, 5, 50)


def test_thresholds_are_restored_when_the_run_fails(default_thresholds) -> None:
    with pytest.raises(RuntimeError), relaxed_gc():
        raise RuntimeError("boom")
    assert gc.get_threshold() == default_thresholds
