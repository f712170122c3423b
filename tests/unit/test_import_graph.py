"""The import rules, as far as a test must check them: the contracts of ``[tool.importlinter]``
(the layers of syncengine/, no dev tools in the product, no sync machinery on the read path) fail
on an upward import, and what ``import handlers.query`` loads at run time, in a clean
interpreter, which no import graph sees: the read-only handler's cold start pays for every module
it imports (``python -X importtime -c "import handlers.query"`` and the cold_read benchmark), and
third-party packages import others (structlog imports rich)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.cfn_yaml import ROOT

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


def test_import_graph_query_loads_no_heavy_or_dev_package(query_modules: set[str]) -> None:
    loaded = sorted(m for m in query_modules if m.split(".")[0] in FORBIDDEN)
    assert loaded == []


def test_import_graph_query_loads_no_botocore_client_machinery(query_modules: set[str]) -> None:
    assert sorted(set(FORBIDDEN_MODULES) & query_modules) == []


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


def lint_imports(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """import-linter's ``lint-imports`` on ``config``, with ``cwd`` first on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    code = "import sys\nfrom importlinter.cli import lint_imports\nsys.exit(lint_imports(sys.argv[1], no_cache=True))"
    command = [sys.executable, "-c", code, str(config)]  # our own interpreter and code
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)  # noqa: S603


def test_import_contracts_hold() -> None:
    """The contracts ``make lint`` checks hold on the tree as it is."""
    done = lint_imports(ROOT / "pyproject.toml", ROOT)
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.fixture(scope="module")
def layered_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of syncengine/ and a config holding the project's layers contract alone."""
    folder = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "syncengine", folder / "syncengine", ignore=shutil.ignore_patterns("__pycache__"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (layers,) = [c for c in project["contracts"] if c["id"] == "layers"]
    lines = ["[importlinter]", "root_package = syncengine", "", "[importlinter:contract:layers]"]
    lines += [f"name = {layers['name']}", "type = layers", "layers =", *(f"    {name}" for name in layers["layers"])]
    (folder / "layers.ini").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_import_contracts_layers_hold_on_the_copy(layered_copy: Path) -> None:
    """The copy is faithful: unchanged, it keeps the contract (so the failure below is the edit's)."""
    done = lint_imports(layered_copy / "layers.ini", layered_copy)
    assert done.returncode == 0, done.stdout[-3000:]


def test_import_contracts_layers_fail_on_an_upward_import(layered_copy: Path, tmp_path: Path) -> None:
    """A core module that imports the CLI (a lazy import, inside a function) breaks the contract."""
    copy = tmp_path / "upward"
    shutil.copytree(layered_copy, copy)
    errors = copy / "syncengine" / "core" / "errors.py"
    errors.write_text(
        errors.read_text(encoding="utf-8") + "\n\ndef _upward():\n    from syncengine.cli.main import main\n",
        encoding="utf-8",
    )
    done = lint_imports(copy / "layers.ini", copy)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "Contracts: 0 kept, 1 broken." in done.stdout
    assert "syncengine.core.errors -> syncengine.cli.main" in done.stdout
