"""scripts/deploy.sh: the dry run builds the Lambda package and never calls AWS; a real deploy
without credentials stops with a clear error.

Every run puts a stub `aws` first on PATH that records its arguments: the tests can prove which
AWS commands ran (none, in a dry run), and no test can ever reach a real AWS endpoint.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.cfn_yaml import ROOT

DEPLOY = ROOT / "scripts" / "deploy.sh"
BASH = shutil.which("bash") or "/bin/bash"
# What a pip or checkov install prints when the package index cannot be reached; only then is
# the package build skipped rather than failed.
NETWORK_FAILURE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|ConnectTimeoutError|ReadTimeoutError|"
    r"Connection refused|No route to host"
)
STUB_AWS = """#!/usr/bin/env bash
echo "$*" >> "{log}"
if [[ "$1 $2" == "sts get-caller-identity" ]]; then
    echo "Unable to locate credentials. You can configure credentials by running \\"aws configure\\"." >&2
    exit 253
fi
echo "stub aws: refusing to call AWS from a test" >&2
exit 99
"""


@pytest.fixture
def aws_stub(tmp_path: Path) -> Path:
    """A directory holding a fake `aws`; its calls land in aws-calls.log beside it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "aws-calls.log"
    log.touch()
    stub = bin_dir / "aws"
    stub.write_text(STUB_AWS.format(log=log), encoding="utf-8")
    stub.chmod(0o755)
    return bin_dir


def _env_without_credentials(tmp_path: Path, aws_stub: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        PATH=f"{aws_stub}{os.pathsep}{os.environ.get('PATH', '')}",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        BUILD_DIR=str(tmp_path / "build"),
        **extra,
    )
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the project's own script, run by the shell it declares
        [BASH, str(DEPLOY), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _build_python() -> str:
    """The version of the interpreter deploy.sh builds with: the project's .venv, else $PYTHON or
    python3, as the script chooses."""
    python = ROOT / ".venv" / "bin" / "python"
    if not python.is_file():
        python = Path(shutil.which(os.environ.get("PYTHON", "python3")) or "python3")
    code = "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    return done.stdout.strip()


def _aws_calls(aws_stub: Path) -> list[str]:
    return (aws_stub.parent / "aws-calls.log").read_text(encoding="utf-8").splitlines()


@pytest.mark.slow  # builds and lints the arm64 package and the layer
def test_cfn_deploy_dry_run_without_credentials_builds_the_package(tmp_path: Path, aws_stub: Path) -> None:
    """`deploy.sh dev --dry-run` lints, builds a zip with syncengine/ and handlers/ at its root,
    prints the AWS commands, and calls none of them."""
    result = _run(["dev", "--dry-run", "--skip-tests"], _env_without_credentials(tmp_path, aws_stub))
    output = result.stdout + result.stderr
    if result.returncode != 0 and NETWORK_FAILURE.search(output):
        pytest.skip(
            "package index unreachable, wheels for the Lambda platform could not be downloaded: " + output[-400:]
        )
    assert result.returncode == 0, output[-4000:]
    assert _aws_calls(aws_stub) == [], "a dry run must not call AWS"
    assert "cfn-lint: no errors or warnings" in output
    assert "checkov: no failed checks" in output
    assert "+ aws cloudformation deploy" in output
    assert "cloudformation package" not in output, "package cannot name the expected bucket owner"
    # Every S3 call names the bucket owner (the account in a real run).
    s3_calls = [line for line in output.splitlines() if re.match(r"\+ aws s3(api)? ", line)]
    assert len(s3_calls) >= 8, s3_calls  # head-bucket, the zip, the layer, five nested templates
    assert all("--expected-bucket-owner ACCOUNT_ID" in line for line in s3_calls), s3_calls
    packaged = (tmp_path / "build" / "packaged" / "master-template.yaml").read_text(encoding="utf-8")
    urls = re.findall(r"TemplateURL: (\S+)", packaged)
    assert len(urls) == 5 and all(url.startswith("https://") for url in urls), urls

    # The layer is built and published beside the package (its content: test_lambda_package).
    assert (tmp_path / "build" / "recovery-instance-sync-layer.zip").is_file()
    (publish,) = re.findall(r"^\+ aws lambda publish-layer-version .*$", output, re.MULTILINE)
    assert "--layer-name drs-orchestration-recovery-instance-sync-dev" in publish
    assert "--compatible-architectures arm64" in publish and "S3Key=layers/drs-orchestration/dev/" in publish

    archive = tmp_path / "build" / "lambda-arm64.zip"
    with zipfile.ZipFile(archive) as package:
        names = package.namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert "syncengine" in top_level
    assert "syncengine/__init__.py" in names
    if (ROOT / "handlers" / "__init__.py").is_file():
        assert "handlers/__init__.py" in names
    for dependency in ("aioboto3", "aiobotocore", "anyio", "tenacity", "structlog", "aws_lambda_powertools"):
        assert dependency in top_level, dependency
    # Dev extras stay out; binary wheels are the Lambda platform's.
    assert not top_level & {"pytest", "moto", "hypothesis", "cfnlint", "matplotlib"}
    extensions = [name for name in names if name.endswith(".so")]
    assert extensions and all("aarch64" in name or "abi3" in name for name in extensions), extensions[:5]
    # Bytecode only from an interpreter of the runtime's version (3.12 by default), else a loud skip.
    pycs = [name for name in names if name.endswith(".pyc")]
    if _build_python() == "3.12":
        assert "handlers/__pycache__/query.cpython-312.pyc" in names
    else:
        assert pycs == [], pycs[:5]
        assert "NO BYTECODE in the package" in output


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({}, id="none"),
        pytest.param({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, id="empty"),
        pytest.param(
            {"AWS_ACCESS_KEY_ID": "AKIAREALLOOKINGKEY00", "AWS_SECRET_ACCESS_KEY": "x" * 40, "AWS_PROFILE": "prod"},
            id="real-looking",
        ),
    ],
)
def test_cfn_deploy_dry_run_ignores_the_shell_credentials(
    tmp_path: Path, aws_stub: Path, credentials: dict[str, str]
) -> None:
    """Whatever the shell holds, a dry run succeeds, calls no AWS, and its test step sees no AWS
    variable of the shell (a stand-in `make` first on PATH records the environment it gets)."""
    make = aws_stub / "make"
    make.write_text(f'#!/usr/bin/env bash\nenv > "{tmp_path}/make-env.txt"\n', encoding="utf-8")
    make.chmod(0o755)
    env = _env_without_credentials(tmp_path, aws_stub, **credentials)
    result = _run(
        ["dev", "--dry-run", "--skip-lint", "--lambda-only", "--code-key", "lambda/x/dev/abc.zip"],
        env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert _aws_calls(aws_stub) == []
    seen = (tmp_path / "make-env.txt").read_text(encoding="utf-8").splitlines()
    assert not [line for line in seen if line.startswith("AWS_")]


def test_cfn_deploy_lambda_only_dry_run_updates_function_code_only(tmp_path: Path, aws_stub: Path) -> None:
    """--lambda-only touches the four functions' code, not the stack; a rollback to an uploaded
    package (--code-key) builds no layer and says so."""
    result = _run(
        [
            "dev",
            "--lambda-only",
            "--dry-run",
            "--skip-tests",
            "--skip-lint",
            "--code-key",
            "lambda/x/dev/abc.zip",
        ],
        _env_without_credentials(tmp_path, aws_stub),
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert _aws_calls(aws_stub) == []
    updates = re.findall(r"^\+ aws lambda update-function-code --function-name (\S+)", output, re.MULTILINE)
    assert updates == [
        "drs-orchestration-data-management-dev",
        "drs-orchestration-execution-dev",
        "drs-orchestration-query-dev",
        "drs-orchestration-refresh-dev",
    ]
    assert "lambda/x/dev/abc.zip" in output
    assert "publish-layer-version" not in output and "attach an earlier version" in output
    assert "cloudformation deploy" not in output
    assert "cloudformation package" not in output


def test_cfn_deploy_without_credentials_fails_clearly(tmp_path: Path, aws_stub: Path) -> None:
    """A real deploy checks credentials first: exit 1, a sentence saying so, nothing built."""
    env = _env_without_credentials(tmp_path, aws_stub, AWS_REGION="us-east-1")
    result = _run(["dev", "--skip-tests", "--skip-lint"], env, timeout=120)
    assert result.returncode == 1
    assert "no usable AWS credentials" in result.stderr
    assert [call.split()[:2] for call in _aws_calls(aws_stub)] == [["sts", "get-caller-identity"]]
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no-environment"),
        pytest.param(["Prod_1", "--dry-run"], id="invalid-environment"),
        pytest.param(["dev", "--dry-run", "--bogus"], id="unknown-option"),
        pytest.param(["dev", "test", "--dry-run"], id="two-environments"),
    ],
)
def test_cfn_deploy_rejects_bad_arguments(tmp_path: Path, aws_stub: Path, args: list[str]) -> None:
    result = _run(args, _env_without_credentials(tmp_path, aws_stub), timeout=60)
    assert result.returncode == 1
    assert "deploy: error:" in result.stderr
    assert _aws_calls(aws_stub) == []


def test_cfn_deploy_help_lists_the_options(tmp_path: Path, aws_stub: Path) -> None:
    result = _run(["--help"], _env_without_credentials(tmp_path, aws_stub), timeout=60)
    assert result.returncode == 0
    for option in ("--lambda-only", "--dry-run", "--skip-tests", "--code-key"):
        assert option in result.stdout


@pytest.mark.parametrize(("arch", "warned"), [("arm64", True), ("x86_64", False)])
def test_cfn_deploy_warns_when_the_layer_would_not_load_beside_the_orchestration(
    tmp_path: Path, aws_stub: Path, arch: str, warned: bool
) -> None:
    """The orchestration's functions declare no architecture (x86_64): an arm64 layer's native wheels
    would not load there."""
    env = _env_without_credentials(tmp_path, aws_stub, LAMBDA_ARCH=arch)
    args = [
        "dev",
        "--dry-run",
        "--skip-tests",
        "--skip-lint",
        "--lambda-only",
        "--code-key",
        f"lambda/x/dev/abc-{arch}.zip",
    ]
    result = _run([*args, "--param", "OrchestrationMode=beside"], env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("LAMBDA_ARCH=x86_64 for its layer" in result.stderr) == warned
