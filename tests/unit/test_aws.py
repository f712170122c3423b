"""syncengine.aws and syncengine.credentials: sessions, role ARNs, per-call credentials."""

from __future__ import annotations

import pytest

from syncengine.aws import drs_regions, new_session, role_arn_for, shared_session
from syncengine.credentials import CallScopedCredentials


def test_aws_role_arn_for_an_account() -> None:
    assert role_arn_for("123456789012", "Sync") == "arn:aws:iam::123456789012:role/Sync"


def test_aws_shared_session_is_one_per_process_and_mode() -> None:
    assert shared_session(fast_paths=True) is shared_session(fast_paths=True)
    assert shared_session(fast_paths=False) is not shared_session(fast_paths=True)


def test_aws_new_session_is_new() -> None:
    assert new_session() is not new_session()


def test_aws_drs_regions_come_from_botocore() -> None:
    assert {"us-east-1", "eu-west-1"} <= drs_regions()


async def test_aws_shared_client_credentials_refuse_to_sign_without_an_account() -> None:
    """A shared client called without AccountClient binding an account must not sign at all."""
    with pytest.raises(RuntimeError, match="without an account"):
        await CallScopedCredentials().get_frozen_credentials()
