"""The Lambda package and the layer are proven, not assumed: the zips `deploy.sh --dry-run` builds,
extracted into an empty folder, run in an interpreter that sees only that folder (the layer: its
python/ directory, as Lambda puts it on sys.path) and the standard library.

Both are built by one dry run for this module, for the Python running the tests (same lock, same
steps, another ``LAMBDA_PYTHON_VERSION``, the host's architecture), with the shell's AWS
variables set to junk to show the dry run never needs or uses them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.cfn_yaml import ROOT
from tests.fixtures.dynamodb import DynamoDBTables
from tests.unit.cfn.test_deploy import BASH, NETWORK_FAILURE, STUB_AWS

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
# Slow: its module fixture builds the package and the layer for this interpreter.
pytestmark = [pytest.mark.one_backend, pytest.mark.slow]

HANDLERS = ("handlers.data_management", "handlers.execution", "handlers.query")
# Top-level names no Lambda package may hold: test and dev dependencies, tools, test code.
FORBIDDEN_TOP_LEVEL = {
    "pytest",
    "_pytest",
    "pytest_asyncio",
    "hypothesis",
    "moto",
    "cfnlint",
    "ruff",
    "matplotlib",
    "pyinstrument",
    "psutil",
    "tests",
    "benchmarks",
    "devtools",
    "bin",
    "pip",
    "setuptools",
}
ISOLATED_PRELUDE = """
import sys
folder = sys.argv[1]
leaks = [p for p in sys.path if "site-packages" in p or "dist-packages" in p]
assert not leaks, f"host packages reachable: {leaks}"
sys.path.insert(0, folder)
"""


ARCH = "arm64" if platform.machine() in {"aarch64", "arm64"} else "x86_64"
# The drop-in module (API-CONTRACT.md, "The orchestration's shared module"), at the repository root.


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build directory of one `deploy.sh dev --dry-run` for this interpreter: the package and
    the layer."""
    work = tmp_path_factory.mktemp("lambda-package")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "aws"
    stub.write_text(STUB_AWS.format(log=work / "aws-calls.log"), encoding="utf-8")
    stub.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "BUILD_DIR": str(work / "build"),
        "LAMBDA_ARCH": ARCH,
        "LAMBDA_PYTHON_VERSION": f"{sys.version_info.major}.{sys.version_info.minor}",
        # Junk the dry run must drop: an empty key, a profile that does not exist.
        "AWS_ACCESS_KEY_ID": "",
        "AWS_PROFILE": "no-such-profile",
    }
    result = subprocess.run(  # noqa: S603 - the project's own script
        [BASH, str(ROOT / "scripts" / "deploy.sh"), "dev", "--dry-run", "--skip-tests", "--skip-lint"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and NETWORK_FAILURE.search(output):
        pytest.skip("package index unreachable, wheels could not be downloaded: " + output[-400:])
    assert result.returncode == 0, output[-4000:]
    assert not (work / "aws-calls.log").exists() or not (work / "aws-calls.log").read_text()
    assert (work / "build" / "packaged" / "master-template.yaml").is_file()
    assert "+ aws lambda publish-layer-version" in output
    return work / "build"


@pytest.fixture(scope="module")
def package(build: Path) -> Path:
    return build / f"lambda-{ARCH}.zip"


@pytest.fixture(scope="module")
def layer(build: Path) -> Path:
    return build / "recovery-instance-sync-layer.zip"


@pytest.fixture(scope="module")
def layer_python(layer: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer extracted into an empty folder: its python/ directory, /opt/python in Lambda."""
    folder = tmp_path_factory.mktemp("layer")
    with zipfile.ZipFile(layer) as archive:
        archive.extractall(folder)
    return folder / "python"


@pytest.fixture(scope="module")
def extracted(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("extracted")
    assert not any(folder.iterdir())
    with zipfile.ZipFile(package) as archive:
        archive.extractall(folder)
    return folder


def _isolated(folder: Path, body: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``body`` in ``python -I -S`` (no site-packages, no PYTHON* variables) from an empty
    working directory, with only ``folder`` added to sys.path."""
    cwd = folder.parent / "cwd"
    cwd.mkdir(exist_ok=True)
    return subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-I", "-S", "-c", ISOLATED_PRELUDE + body, str(folder)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("module", HANDLERS)
def test_lambda_package_imports_each_handler_in_isolation(extracted: Path, module: str) -> None:
    result = _isolated(
        extracted,
        f"""
import importlib, pathlib, sysconfig
handler = importlib.import_module({module!r})
assert callable(handler.lambda_handler)
allowed = [pathlib.Path(folder)] + [pathlib.Path(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")]
for name, loaded in list(sys.modules.items()):
    path = getattr(loaded, "__file__", None)
    if path:
        assert any(pathlib.Path(path).is_relative_to(root) for root in allowed), (name, path)
        assert "site-packages" not in path, (name, path)
print("ok", len(sys.modules))
""",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


async def test_lambda_package_answers_status_from_local_dynamodb(extracted: Path, ddb: DynamoDBTables) -> None:
    """A direct get_recovery_instance_sync_status through the packaged query handler, against
    fresh tables: the engine, its AWS SDK and DynamoDB encoding all come from the zip."""
    result = _isolated(
        extracted,
        """
import json
from handlers import query
print(json.dumps(query.lambda_handler({"operation": "get_recovery_instance_sync_status"}, None)))
""",
        env=ddb.env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    body = json.loads(result.stdout.strip().splitlines()[-1])
    assert body["status"] == "no_sync_yet", body
    assert "error" not in body


def test_lambda_package_holds_no_test_or_dev_code(package: Path) -> None:
    with zipfile.ZipFile(package) as archive:
        names = archive.namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    distributions = {canonicalize_name(n.split("-", 1)[0]) for n in top_level if n.endswith(".dist-info")}
    assert not top_level & FORBIDDEN_TOP_LEVEL, sorted(top_level & FORBIDDEN_TOP_LEVEL)
    assert not distributions & {canonicalize_name(n) for n in FORBIDDEN_TOP_LEVEL}
    own = [name for name in names if name.split("/", 1)[0] in {"syncengine", "handlers"}]
    # The dev tools' modules (syncengine/tables/ is the product's table stores, not devtools/tables.py).
    dev_modules = ("/simulator/", "/faultproxy.py", "/localdb.py", "/seed.py", "/demo.py", "/tables.py")
    assert not [name for name in own if any(dev in name for dev in dev_modules)]
    assert {"handlers", "syncengine"} <= top_level


def test_lambda_package_pins_the_lock_versions(package: Path) -> None:
    lock = (ROOT / "requirements-lambda.lock").read_text(encoding="utf-8")
    pinned = {canonicalize_name(n): v for n, v in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", lock, re.M)}
    with zipfile.ZipFile(package) as archive:
        installed = {}
        for name in archive.namelist():
            if re.fullmatch(r"[^/]+\.dist-info/METADATA", name):
                fields = dict(
                    line.split(": ", 1)
                    for line in archive.read(name).decode("utf-8").splitlines()
                    if ": " in line and not line.startswith(" ")
                )
                installed[canonicalize_name(fields["Name"])] = fields["Version"]
    assert installed == pinned


def test_lambda_package_holds_unchecked_bytecode_of_every_module(extracted: Path) -> None:
    """Built by the runtime's own Python, every module of the package has its pyc: hash-based,
    never checked against the source (Lambda's code directory is read-only), and of this very
    source (its hash matches)."""
    sources = [path for path in extracted.rglob("*.py") if "__pycache__" not in path.parts]
    tag = sys.implementation.cache_tag
    missing, stale = [], []
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        if not cached.is_file():
            missing.append(str(source.relative_to(extracted)))
            continue
        header = cached.read_bytes()[:16]
        flags = int.from_bytes(header[4:8], "little")
        if flags != 0b01 or header[8:16] != importlib.util.source_hash(source.read_bytes()):
            stale.append(str(cached.relative_to(extracted)))
    # Our own ~100 modules and the dependencies' (~880 modules in all since rich left the package).
    assert len(sources) > 500
    assert missing == [], missing[:10]
    assert stale == [], stale[:10]
    assert (extracted / "handlers" / "__pycache__" / f"query.{tag}.pyc").is_file()


def test_lambda_package_imports_from_its_bytecode_without_writing(extracted: Path) -> None:
    """As in Lambda (read-only code, nothing written): the query handler's modules load from the
    package's pycs and the import writes no file."""
    before = sorted(str(path) for path in extracted.rglob("*"))
    result = _isolated(
        extracted,
        """
import pathlib, sys
sys.dont_write_bytecode = True
import handlers.query
ours = [m for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").startswith(folder)]
ours = [m for m in ours if m.__file__.endswith(".py")]
uncached = [m.__name__ for m in ours if not pathlib.Path(m.__spec__.cached or "").is_file()]
assert not uncached, uncached
print("ok", len(ours))
""",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")
    assert int(result.stdout.split()[1]) > 100, result.stdout
    assert sorted(str(path) for path in extracted.rglob("*")) == before


# ---------------------------------------------------------------------------------------------
# The layer


def test_lambda_layer_holds_python_with_the_engine_and_the_locked_dependencies(layer: Path) -> None:
    """Everything under python/ (where Lambda looks in a layer): the drop-in module, syncengine/ and
    handlers/ (the operations behind our routes, which the drop-in answers through), the lock's
    distributions at their versions; no test or dev code."""
    with zipfile.ZipFile(layer) as archive:
        names = archive.namelist()
        metadata = [
            archive.read(n).decode("utf-8") for n in names if re.fullmatch(r"python/[^/]+\.dist-info/METADATA", n)
        ]
    assert {name.split("/", 1)[0] for name in names} == {"python"}
    top_level = {name.split("/")[1] for name in names}
    assert {"syncengine", "handlers", "recovery_instance_sync.py"} <= top_level
    assert not top_level & FORBIDDEN_TOP_LEVEL, sorted(top_level & FORBIDDEN_TOP_LEVEL)
    lock = (ROOT / "requirements-lambda.lock").read_text(encoding="utf-8")
    pinned = {canonicalize_name(n): v for n, v in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", lock, re.M)}
    installed = {}
    for text in metadata:
        fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line and not line.startswith(" "))
        installed[canonicalize_name(fields["Name"])] = fields["Version"]
    assert installed == pinned


def test_lambda_layer_drop_in_imports_from_the_layer_alone(layer_python: Path) -> None:
    """`import recovery_instance_sync` as the orchestration's functions will (``python -I -S``, only
    /opt/python on the path): the module and everything it and the engine behind each of its
    functions load come from python/ or the standard library."""
    result = _isolated(
        layer_python,
        """
import importlib, pathlib, sysconfig
import recovery_instance_sync
assert pathlib.Path(recovery_instance_sync.__file__).parent == pathlib.Path(folder), recovery_instance_sync.__file__
for name in recovery_instance_sync.__all__:
    assert getattr(recovery_instance_sync, name)
engine = ("syncengine.sync.engine", "syncengine.terminate.instances", "syncengine.plans.check_existing")
engine += ("syncengine.reads",)
for name in engine:
    importlib.import_module(name)
allowed = [pathlib.Path(folder)] + [pathlib.Path(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")]
for name, loaded in list(sys.modules.items()):
    path = getattr(loaded, "__file__", None)
    if path:
        assert any(pathlib.Path(path).is_relative_to(root) for root in allowed), (name, path)
print("ok")
""",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


def test_lambda_layer_bytecode_names_its_lambda_path(layer_python: Path) -> None:
    """Compiled for /opt/python (tracebacks name the layer's path, not the build machine's), hash-
    based and unchecked like the package's."""
    cached = importlib.util.cache_from_source(str(layer_python / "syncengine" / "sync" / "engine.py"))
    header = Path(cached).read_bytes()
    assert int.from_bytes(header[4:8], "little") == 0b01
    assert b"/opt/python/syncengine/sync/engine.py" in header
