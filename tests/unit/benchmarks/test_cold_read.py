"""The cold_read benchmark's arithmetic and wiring (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from benchmarks.run import selected_scenarios
from benchmarks.scenarios.cold_read import (
    BARE,
    PRELUDE,
    ColdTimings,
    child_environment,
    deployed_copy,
    seconds_to_answer,
    summary,
)
from benchmarks.scenarios.large import ScenarioBroken
from benchmarks.sizes import FULL, QUICK
from syncengine.core.config import SyncSettings


def test_summary_subtracts_interpreter_median_from_percentiles() -> None:
    answers = [100.0 + i for i in range(20)]  # 100..119
    bare = [10.0] * 10 + [30.0] * 10  # nearest-rank median: 10
    section = summary(ColdTimings(answers, bare, [50.0] * 20, [8.0] * 20))
    assert section["processes"] == 20
    assert section["interpreter_p50_ms"] == 10.0
    assert section["p50_ms"] == 109.0 - 10.0
    assert section["p99_ms"] == 119.0 - 10.0
    assert section["cpu_p50_ms"] == 42.0


@pytest.mark.parametrize("sizes", [QUICK, FULL])
def test_selected_scenarios_runs_cold_read_in_every_mode(sizes: object) -> None:
    assert "cold_read" in selected_scenarios(sizes, [])  # type: ignore[arg-type]
    assert sizes.cold_processes >= 20  # type: ignore[attr-defined]


def test_child_environment_names_tables_and_dynamodb_endpoint() -> None:
    settings = SyncSettings(endpoint_urls=(("dynamodb", "http://127.0.0.1:4567"),))
    env = child_environment(settings)
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:4567"
    assert env["RECOVERY_INSTANCES_CACHE_TABLE"] == settings.tables.cache
    assert env["AWS_LAMBDA_FUNCTION_NAME"]


def test_seconds_to_answer_reads_bare_interpreter_line() -> None:
    seconds, printed = seconds_to_answer(BARE, [], os.environ)
    assert seconds > 0
    assert set(printed) == {"cpu_s"}


def test_seconds_to_answer_failed_child_breaks_scenario() -> None:
    with pytest.raises(ScenarioBroken, match="cold child failed"):
        seconds_to_answer("raise SystemExit(3)", [], os.environ)


def test_deployed_copy_compiled_holds_unchecked_bytecode_of_each_module(tmp_path: Path) -> None:
    """The cold child's copy is compiled as deploy.sh compiles the package: one hash-based,
    unchecked pyc per module, and no simulator."""
    folder = deployed_copy(tmp_path, compiled=True)
    sources = sorted(folder.rglob("*.py"))
    assert (folder / "handlers" / "query.py") in sources
    assert not (folder / "syncengine" / "simulator").exists()
    for source in sources:
        header = Path(importlib.util.cache_from_source(str(source))).read_bytes()[:8]
        assert int.from_bytes(header[4:8], "little") == 0b01, source


def test_deployed_copy_uncompiled_holds_no_bytecode(tmp_path: Path) -> None:
    folder = deployed_copy(tmp_path, compiled=False)
    assert (folder / "syncengine" / "__init__.py").is_file()
    assert list(folder.rglob("*.pyc")) == []


def test_child_environment_writes_no_bytecode() -> None:
    """Lambda's code directory is read-only: the cold child writes nothing beside the package."""
    assert child_environment(SyncSettings())["PYTHONDONTWRITEBYTECODE"] == "1"


def test_cold_child_sees_only_the_package_folders(tmp_path: Path) -> None:
    """The child runs on the package's folders alone: the virtualenv's packages (rich, pytest, the
    dev tools) are out of its reach, so what is measured is what ships."""
    code = (
        PRELUDE + "import importlib.util, time\nprint(time.time() if importlib.util.find_spec('pytest') is None else 0)"
    )
    seconds, _ = seconds_to_answer(code, [str(tmp_path)], os.environ)
    assert seconds > 0
