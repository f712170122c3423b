"""requirements-lambda.lock: the Lambda package's dependencies, hash-locked, from the dev lock."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.cfn_yaml import ROOT

LOCK = ROOT / "requirements-lambda.lock"


def _entries(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile style lock."""
    entries = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", block)
        if match:
            entries[canonicalize_name(match.group(1))] = (match.group(2), re.findall(r"--hash=sha256:\w+", block))
    return entries


def test_lambda_lock_is_current() -> None:
    """Regenerating from the dev lock gives the committed file (`make lock` was run)."""
    result = subprocess.run(  # noqa: S603 - the project's own script
        [sys.executable, str(ROOT / "scripts" / "lambda_lock.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_lambda_lock_pins_the_dev_lock_versions_and_hashes() -> None:
    lambda_entries = _entries(LOCK.read_text(encoding="utf-8"))
    dev_entries = _entries((ROOT / "requirements-dev.lock").read_text(encoding="utf-8"))
    assert lambda_entries
    for name, (version, hashes) in lambda_entries.items():
        assert hashes, name
        assert dev_entries[name] == (version, hashes), name


def test_lambda_lock_has_the_runtime_roots_and_no_dev_dependency() -> None:
    with (ROOT / "pyproject.toml").open("rb") as stream:
        project = tomllib.load(stream)["project"]
    names = set(_entries(LOCK.read_text(encoding="utf-8")))
    roots = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    dev = {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["dev"]}
    assert roots <= names
    assert not names & dev, sorted(names & dev)
