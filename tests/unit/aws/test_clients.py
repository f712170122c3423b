"""syncengine.aws.clients and syncengine.aws.credentials: sessions, role ARNs, per-call credentials."""

from __future__ import annotations

from typing import Any

import pytest

from syncengine.aws import clients as aws_module
from syncengine.aws.clients import (
    account_scoped_session,
    botocore_session_of,
    drs_regions,
    new_session,
    preload_service_models,
    role_arn_for,
    shared_session,
)
from syncengine.aws.credentials import CallScopedCredentials
from syncengine.aws.fastpath import FastResponseParserFactory
from syncengine.core.config import SyncSettings


def test_aws_role_arn_for_an_account() -> None:
    assert role_arn_for("123456789012", "Sync") == "arn:aws:iam::123456789012:role/Sync"


def test_aws_shared_session_is_one_per_process() -> None:
    assert shared_session() is shared_session()


def test_aws_sessions_parse_with_the_engines_parsers() -> None:
    """The parsers hang on the public ``response_parser_factory`` component, shared clients too."""
    session = new_session()
    factory = botocore_session_of(session).get_component("response_parser_factory")
    assert isinstance(factory, FastResponseParserFactory)
    assert account_scoped_session(session) is account_scoped_session(session)


async def test_aws_shared_clients_sign_as_the_account_bound_to_each_call() -> None:
    """A shared DRS client (from the account-scoped session) signs with the credentials that
    ``AccountClient`` binds for the call, and refuses to sign with none bound."""
    from datetime import UTC, datetime, timedelta

    from syncengine.aws.credentials import AccountClient, Credentials

    signed: list[str] = []

    def capture(request: Any, **_: Any) -> None:
        header = request.headers["Authorization"]
        signed.append(header.decode() if isinstance(header, bytes) else header)
        raise _Stop

    scoped = account_scoped_session(new_session())
    async with scoped.client("drs", region_name="us-east-1", endpoint_url="http://127.0.0.1:9") as client:
        client.meta.events.register("before-send.drs", capture)
        expiry = datetime.now(UTC) + timedelta(hours=1)
        for key in ("ASIAFIRSTACCOUNT", "ASIASECONDACCOUNT"):
            handle = AccountClient(client, Credentials(key, "secret", "token", expiry))
            with pytest.raises(_Stop):
                await handle.describe_jobs()
        with pytest.raises(RuntimeError, match="without an account"):
            await client.describe_jobs()
    assert [header.split("Credential=")[1].split("/")[0] for header in signed] == [
        "ASIAFIRSTACCOUNT",
        "ASIASECONDACCOUNT",
    ]


class _Stop(Exception):
    """Stops a request once it is signed."""


def test_aws_new_session_is_new() -> None:
    assert new_session() is not new_session()


def test_aws_drs_regions_come_from_botocore() -> None:
    assert {"us-east-1", "eu-west-1"} <= drs_regions()


async def test_aws_shared_client_credentials_refuse_to_sign_without_an_account() -> None:
    """A shared client called without AccountClient binding an account must not sign at all."""
    with pytest.raises(RuntimeError, match="without an account"):
        await CallScopedCredentials().get_frozen_credentials()


async def test_aws_preloaded_models_leave_the_first_clients_nothing_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws_module, "_shared_session", None)  # a fresh process's session
    settings = SyncSettings()
    preload_service_models(settings)
    session = shared_session()
    loader = botocore_session_of(session).get_component("data_loader")
    loaded: list[str] = []
    real_load = loader.file_loader.load_file

    def counted_load(path: str) -> object:
        loaded.append(path)
        return real_load(path)

    monkeypatch.setattr(loader.file_loader, "load_file", counted_load)
    keys = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "example"}  # not a secret
    for service in ("drs", "ec2", "sts"):
        async with session.client(service, region_name="us-east-1", **keys):
            pass

    # Only the cheap probes for optional extras are left; no model or rule set is read again.
    assert [path for path in loaded if path.endswith(("/service-2", "/endpoint-rule-set-1"))] == []
    assert any(path.endswith("/ec2/2016-11-15/service-2.sdk-extras") for path in loaded)


def test_drs_regions_are_the_hub_partition_s() -> None:
    """From botocore's partition data: a commercial hub knows no GovCloud region, a GovCloud hub
    only GovCloud's; role ARNs carry the partition."""
    from syncengine.aws.clients import drs_regions, hub_partition, partition_of, role_arn_for

    assert hub_partition({"AWS_REGION": "us-gov-west-1"}) == "aws-us-gov"
    assert hub_partition({"AWS_DEFAULT_REGION": "eu-west-1"}) == "aws"
    assert drs_regions("aws-us-gov") == {"us-gov-east-1", "us-gov-west-1"}
    assert "us-east-1" in drs_regions("aws") and not drs_regions("aws") & drs_regions("aws-us-gov")
    assert drs_regions() == drs_regions("aws")  # the tests' hub is us-east-1
    assert partition_of("us-gov-east-1") == "aws-us-gov" and partition_of("nowhere-1") == "aws"
    assert role_arn_for("111122223333", "R", "aws-us-gov") == "arn:aws-us-gov:iam::111122223333:role/R"


def test_govcloud_regions_are_not_opt_in_regions() -> None:
    from syncengine.aws.regions import is_opt_in_region

    assert not is_opt_in_region("us-gov-west-1") and not is_opt_in_region("us-gov-east-1")
