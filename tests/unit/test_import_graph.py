"""What ``import handlers.query`` loads, in a clean interpreter: the read-only handler's cold start
pays for every module it imports (measured with ``python -X importtime -c "import handlers.query"``
and the cold_read benchmark), so the sync, terminate and Lambda-invoke machinery, the CLI's
console libraries and every dev tool must stay out of it."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cfn_yaml import ROOT

# Modules of this project the read path may load: the handler plumbing, the runtime it opens
# (DynamoDB through the light client, cache and status stores) and check-existing itself. Not the
# aiobotocore clients (syncengine.aws.clients, credentials, fastpath): a read builds them only on demand.
ALLOWED_OWN = frozenset(
    {
        "handlers",
        "handlers.api",
        "handlers.authorization",
        "handlers.dependencies",
        "handlers.dispatch",
        "handlers.events",
        "handlers.operations",
        "handlers.query",
        "handlers.routes",
        "syncengine",
        # The packages of the modules below (docstrings only).
        "syncengine.aws",
        "syncengine.core",
        "syncengine.dynamodb",
        "syncengine.plans",
        "syncengine.tables",
        "syncengine.tables.execution_index",
        "syncengine.terminate",
        "syncengine.tables.accounts",
        "syncengine.core.callstats",
        "syncengine.core.concurrency",
        "syncengine.core.config",
        "syncengine.tables.health",
        "syncengine.tables.orchestration",
        "syncengine.tables.records",
        "syncengine.dynamodb.seam",
        "syncengine.dynamodb.client",
        "syncengine.reads",
        "syncengine.runtime",
        "syncengine.core.errors",
        "syncengine.tables.execution_index.attribution",
        "syncengine.core.gctune",
        "syncengine.core.logging",
        "syncengine.core.metrics",
        "syncengine.core.models",
        "syncengine.plans.check_existing",
        "syncengine.aws.regions",
        "syncengine.core.resident",
        "syncengine.core.retry",
        "syncengine.tables.status",
        "syncengine.tables.cache",
        "syncengine.terminate.rules",
    }
)
# Heavy or foreign packages, by what they cost when measured: aiobotocore with aiohttp ~130 ms and
# botocore's client machinery ~90 ms (the read path's DynamoDB calls need neither:
# syncengine.dynamodb.client), rich + pygments ~40-60 ms (structlog's dev console), the simulator and
# fault proxy (aiohttp servers), YAML (the table definitions), multiprocessing (sharded syncs), and
# the test and benchmark tools.
FORBIDDEN = (
    "aioboto3",
    "aiobotocore",
    "aiohttp",
    "boto3",
    "rich",
    "pygments",
    "yaml",
    "multiprocessing",
    "benchmarks",
    "pytest",
    "moto",
    "hypothesis",
    "pyinstrument",
    "matplotlib",
    "psutil",
)
# botocore's package itself is small (Powertools imports it); its client machinery is not.
FORBIDDEN_MODULES = ("botocore.client", "botocore.session", "botocore.endpoint", "botocore.parsers")


def modules_after(statement: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter after ``statement`` (no inherited PYTHON* settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    command = [sys.executable, "-c", code]  # our own interpreter and code
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)  # noqa: S603
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def query_modules() -> set[str]:
    return modules_after("import handlers.query")


def test_import_graph_query_loads_only_read_path_modules(query_modules: set[str]) -> None:
    own = {m for m in query_modules if m.split(".")[0] in ("syncengine", "handlers")}
    assert sorted(own - ALLOWED_OWN) == []


def test_import_graph_query_loads_no_heavy_or_dev_package(query_modules: set[str]) -> None:
    loaded = sorted(m for m in query_modules if m.split(".")[0] in FORBIDDEN)
    assert loaded == []


def test_import_graph_query_loads_no_botocore_client_machinery(query_modules: set[str]) -> None:
    assert sorted(set(FORBIDDEN_MODULES) & query_modules) == []


def test_import_graph_query_needs_no_sync_or_invoke_machinery(query_modules: set[str]) -> None:
    unwanted = {
        "syncengine.sync.discovery",
        "syncengine.sync.enrich",
        "syncengine.terminate.instances",
        "devtools.simulator",
        "devtools.faultproxy",
        "syncengine.aws.selfinvoke",
    }
    assert sorted(unwanted & query_modules) == []


def test_import_graph_plain_structlog_would_load_rich() -> None:
    """Why the guard lists rich: structlog imported directly (not through syncengine.core.logging)
    brings it in."""
    assert "rich" in modules_after("import structlog")


def test_import_graph_structlog_keeps_rich_out_and_cli_can_still_import_it() -> None:
    loaded = modules_after("import syncengine.core.logging\nimport rich.console")
    assert "structlog" in loaded
    assert "rich.console" in loaded


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name a source file imports, at any depth (lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["syncengine", "handlers"])
def test_import_graph_product_never_imports_devtools(package: str) -> None:
    """The Lambda package is syncengine/ + handlers/: neither may reach the dev tools."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in imported_modules(path) if n.split(".")[0] == "devtools")
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_import_graph_product_never_imports_devtools_sees_a_lazy_import(tmp_path: Path) -> None:
    """The scan above finds an import inside a function, the form a regex over lines could miss."""
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from devtools.simulator import SimulatorThread\n", encoding="utf-8")
    assert "devtools.simulator" in imported_modules(source)


def product_import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (at any depth, type-checking imports included)."""
    graph: dict[str, set[str]] = {}
    for package in ("syncengine", "handlers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            graph[module] = {
                name for name in imported_modules(path) if name.split(".")[0] in ("syncengine", "handlers")
            }
    # ``from syncengine.core import metrics`` names a module too.
    for module, names in graph.items():
        graph[module] = {name for name in names if name in graph and name != module}
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph ([] when there is none), found depth first."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                return [*stack[stack.index(child) :], child]
            if child not in state and (found := visit(child)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_import_graph_has_no_cycle() -> None:
    """No module of syncengine/ or handlers/ imports, directly or not, one that imports it back
    (the package ``syncengine`` itself re-exports lazily and is left out)."""
    graph = product_import_graph()
    graph.pop("syncengine")
    for names in graph.values():
        names.discard("syncengine")
    assert import_cycle(graph) == []


def test_import_graph_cycle_finder_sees_a_cycle() -> None:
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
