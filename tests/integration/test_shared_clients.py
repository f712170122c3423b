"""Every assumed-role account of a region signs through one shared DRS/EC2 client: each call must
still go out as the account its caller named, however the calls interleave."""

from __future__ import annotations

import random

import anyio
import pytest
from aiobotocore.session import AioSession

from syncengine.aws.clients import SHARED_CLIENT_SERVICES, AccountClient, AwsClients
from syncengine.core.models import AccountTarget
from tests.integration.engine_support import engine_settings


def _targets(sim) -> list[AccountTarget]:
    return [
        AccountTarget(a.account_id, role_arn=a.role_arn, external_id=a.external_id, regions=a.regions)
        for a in sim.estate.accounts
        if not a.is_hub
    ]


async def test_interleaved_calls_each_go_out_as_their_own_account(ddb_moto, make_simulator) -> None:
    """Forty calls from three accounts, interleaved on one shared client: the simulator (which
    routes by the signing key) counts each account's own ten-plus calls, and every answer holds
    only that account's source servers."""
    sim = make_simulator(accounts=4, regions=("us-east-1",), instances_per_scope=5, seed=21)
    settings = engine_settings(ddb_moto, sim)
    targets = _targets(sim)
    sim.calls.reset()
    answers: dict[str, list[str]] = {t.account_id: [] for t in targets}
    async with AwsClients(settings) as aws:
        handles = {t.account_id: await aws.client("drs", "us-east-1", t) for t in targets}
        shared = {id(handle._client) for handle in handles.values()}
        assert len(shared) == 1

        async def one_call(account_id: str) -> None:
            await anyio.sleep(random.uniform(0, 0.02))
            page = await handles[account_id].describe_source_servers(maxResults=50)
            answers[account_id].extend(server["arn"] for server in page["items"])

        async with anyio.create_task_group() as tg:
            for n in range(40):
                tg.start_soon(one_call, targets[n % len(targets)].account_id)
    for target in targets:
        calls = sim.calls.count(service="drs", operation="DescribeSourceServers", account_id=target.account_id)
        assert calls == len([n for n in range(40) if targets[n % len(targets)] == target])
        assert answers[target.account_id]
        assert all(f":{target.account_id}:" in arn for arn in answers[target.account_id])


async def test_a_shared_client_refuses_to_sign_without_an_account(ddb_moto, make_simulator) -> None:
    """Called directly, not through an account's handle, the shared client raises before sending."""
    sim = make_simulator(accounts=2, regions=("us-east-1",), instances_per_scope=1, seed=4)
    settings = engine_settings(ddb_moto, sim)
    sim.calls.reset()
    async with AwsClients(settings) as aws:
        handle = await aws.client("ec2", "us-east-1", _targets(sim)[0])
        assert isinstance(handle, AccountClient)
        with pytest.raises(RuntimeError, match="without an account"):
            await handle._client.describe_instances()
    assert sim.calls.count(service="ec2") == 0


async def test_releasing_a_scope_keeps_the_shared_client_and_the_run_closes_it(ddb_moto, make_simulator) -> None:
    """A finished scope drops its handles; the region's client stays for the other accounts and
    closes with the run. Our own account signs through it too."""
    sim = make_simulator(accounts=3, regions=("us-east-1",), instances_per_scope=1, seed=5)
    settings = engine_settings(ddb_moto, sim)
    first, second = _targets(sim)
    async with AwsClients(settings) as aws:
        drs_first = await aws.client("drs", "us-east-1", first)
        await aws.release(("drs", "ec2"), "us-east-1", first)
        drs_second = await aws.client("drs", "us-east-1", second)
        assert drs_second._client is drs_first._client
        assert (await drs_second.describe_source_servers(maxResults=10))["items"]
        own = await aws.client("drs", "us-east-1", None)
        assert own._client is drs_first._client
        pools = list(drs_first._client._endpoint.http_session._sessions.values())
        assert len(pools) == 1 and not pools[0].closed  # one connection pool for both accounts
    assert pools[0].closed


async def test_our_own_account_signs_through_the_shared_client_with_the_sessions_credentials(
    ddb_moto, make_simulator
) -> None:
    """The hub's scopes (no role) share the region's client with the assumed-role accounts, each
    call still signed as the account its caller named: the hub's with the session's own
    credential chain, interleaved with a target account's."""
    sim = make_simulator(accounts=2, regions=("us-east-1",), instances_per_scope=3, seed=8)
    settings = engine_settings(ddb_moto, sim)
    (target,) = _targets(sim)
    hub = next(a for a in sim.estate.accounts if a.is_hub)
    sim.calls.reset()
    async with AwsClients(settings) as aws:
        own = await aws.client("drs", "us-east-1", None)
        theirs = await aws.client("drs", "us-east-1", target)
        assert own._client is theirs._client
        answers: dict[str, list[str]] = {}

        async def listing(name: str, handle: AccountClient) -> None:
            page = await handle.describe_source_servers(maxResults=50)
            answers[name] = [server["arn"] for server in page["items"]]

        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(listing, f"own-{n}", own)
                tg.start_soon(listing, f"target-{n}", theirs)
    assert sim.calls.count(service="drs", operation="DescribeSourceServers", account_id=hub.account_id) == 6
    assert sim.calls.count(service="drs", operation="DescribeSourceServers", account_id=target.account_id) == 6
    for name, arns in answers.items():
        account_id = hub.account_id if name.startswith("own") else target.account_id
        assert arns and all(f":{account_id}:" in arn for arn in arns)


async def test_our_own_account_without_credentials_fails_as_botocore_does(
    ddb_moto, make_simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No credentials in the session's chain: our own account's call fails with botocore's
    NoCredentialsError, as a client of its own would, and nothing is sent (no other account's
    credentials sign it)."""
    from botocore.exceptions import NoCredentialsError

    from syncengine.aws.clients import new_session

    sim = make_simulator(accounts=2, regions=("us-east-1",), instances_per_scope=1, seed=9)
    settings = engine_settings(ddb_moto, sim)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    sim.calls.reset()
    async with AwsClients(settings, session=new_session()) as aws:
        own = await aws.client("drs", "us-east-1", None)
        assert isinstance(own, AccountClient)
        with pytest.raises(NoCredentialsError):
            await own.describe_source_servers(maxResults=10)
    assert sim.calls.count(service="drs") == 0


@pytest.mark.parametrize("service", sorted(SHARED_CLIENT_SERVICES))
async def test_shared_services_endpoints_do_not_depend_on_the_account(service: str) -> None:
    """Sharing a client across accounts is only sound while the service's endpoint rules take no
    AccountId (DynamoDB's do, so it is not shared); a botocore upgrade that adds one fails here."""
    session = AioSession()
    async with session.create_client(
        service, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    ) as client:
        assert "AccountId" not in client._ruleset_resolver._param_definitions
    async with session.create_client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    ) as dynamodb:
        assert "AccountId" in dynamodb._ruleset_resolver._param_definitions
