"""The tests never depend on, nor use, the AWS credentials of the shell that runs them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cfn_yaml import ROOT

# A test that opens real AWS SDK clients (against moto): it fails if the credentials it gets
# are unusable, and it would sign with the shell's keys if those leaked through.
PROBE = "tests/integration/test_tables.py::test_create_tables_creates_all_six[moto]"


@pytest.mark.parametrize(
    "shell",
    [
        pytest.param({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, id="empty"),
        pytest.param({"AWS_PROFILE": "no-such-profile", "AWS_SESSION_TOKEN": "stale"}, id="profile-and-token"),
        pytest.param(
            {"AWS_ACCESS_KEY_ID": "AKIAREALLOOKINGKEY00", "AWS_SECRET_ACCESS_KEY": "s" * 40, "AWS_REGION": ""},
            id="real-looking",
        ),
    ],
)
def test_test_environment_ignores_the_shell_credentials(shell: dict[str, str]) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(shell)
    result = subprocess.run(  # noqa: S603 - this interpreter running pytest on one test
        [sys.executable, "-m", "pytest", PROBE, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_test_environment_has_only_fake_credentials() -> None:
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIATESTHUBACCESSKEY"
    assert "AWS_PROFILE" not in os.environ and "AWS_SESSION_TOKEN" not in os.environ
    assert os.environ["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
