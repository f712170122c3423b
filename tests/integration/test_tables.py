"""Tables created from cfn/database-stack.yaml on real DynamoDB-compatible servers (moto and
dynalite over HTTP), the ``tables`` command, and the limits only dynalite enforces."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import fields
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devtools.localdb import dynalite_available, dynalite_server, free_port, moto_server
from devtools.tables import create_tables, delete_tables, main
from syncengine.core.config import SyncSettings, TableNames
from tests.fixtures.dynamodb import TEST_REGION, DynamoDBTables, fresh_tables, unique_table_names


def _all_names(tables: TableNames) -> list[str]:
    return [str(getattr(tables, f.name)) for f in fields(TableNames)]


async def _list_tables(db: DynamoDBTables) -> set[str]:
    async with db.client() as client:
        return set((await client.list_tables(Limit=100))["TableNames"])


def _is_listening(endpoint_url: str) -> bool:
    host, _, port = endpoint_url.removeprefix("http://").partition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


# --- creation on both backends ----------------------------------------------------------------


async def test_create_tables_creates_all_six(ddb: DynamoDBTables) -> None:
    """Every table of the template exists under its configured name."""
    assert set(_all_names(ddb.tables)) <= await _list_tables(ddb)


async def test_create_tables_cache_keys_and_indexes_match_template(ddb: DynamoDBTables) -> None:
    """The created cache table has the template's key and both GSIs with their projections."""
    async with ddb.client() as client:
        table = (await client.describe_table(TableName=ddb.tables.cache))["Table"]
    assert table["KeySchema"] == [{"AttributeName": "sourceServerId", "KeyType": "HASH"}]
    projections = {i["IndexName"]: i["Projection"]["ProjectionType"] for i in table["GlobalSecondaryIndexes"]}
    assert projections == {
        "sourceExecutionId-index": "ALL",
        "scopeKey-index": "INCLUDE",
        "ec2InstanceId-index": "INCLUDE",
    }


async def test_create_tables_second_call_creates_nothing(ddb: DynamoDBTables) -> None:
    """Creating again is a no-op that reports every table as already there."""
    created = await create_tables(ddb.tables, endpoint_url=ddb.endpoint_url, region=ddb.region)
    assert created == []


async def test_create_tables_execution_index_is_queryable(ddb: DynamoDBTables) -> None:
    """Records are found by sourceExecutionId right after creation."""
    async with ddb.client() as client:
        for server, execution in (("s-1", "exec-a"), ("s-2", "exec-a"), ("s-3", "exec-b")):
            item = {"sourceServerId": {"S": server}, "sourceExecutionId": {"S": execution}}
            await client.put_item(TableName=ddb.tables.cache, Item=item)
        response = await client.query(
            TableName=ddb.tables.cache,
            IndexName="sourceExecutionId-index",
            KeyConditionExpression="sourceExecutionId = :e",
            ExpressionAttributeValues={":e": {"S": "exec-a"}},
        )
    assert sorted(i["sourceServerId"]["S"] for i in response["Items"]) == ["s-1", "s-2"]


async def test_create_tables_scope_index_returns_only_projected_attributes(ddb: DynamoDBTables) -> None:
    """The by-scope index carries the content hash but not the full record."""
    item = {
        "sourceServerId": {"S": "s-1"},
        "scopeKey": {"S": "111111111111#us-east-1"},
        "contentHash": {"S": "abc"},
        "privateIp": {"S": "10.0.0.1"},
    }
    async with ddb.client() as client:
        await client.put_item(TableName=ddb.tables.cache, Item=item)
        response = await client.query(
            TableName=ddb.tables.cache,
            IndexName="scopeKey-index",
            KeyConditionExpression="scopeKey = :s",
            ExpressionAttributeValues={":s": {"S": "111111111111#us-east-1"}},
        )
    [found] = response["Items"]
    assert found["contentHash"] == {"S": "abc"}
    assert "privateIp" not in found


async def test_delete_tables_removes_all_six(dynamodb_backend: str, dynamodb_endpoint: str) -> None:
    """delete_tables drops the set it created and reports each table."""
    names = unique_table_names()
    await create_tables(names, endpoint_url=dynamodb_endpoint, region=TEST_REGION)
    deleted = await delete_tables(names, endpoint_url=dynamodb_endpoint, region=TEST_REGION)
    db = DynamoDBTables(endpoint_url=dynamodb_endpoint, backend=dynamodb_backend, tables=names)
    assert sorted(deleted) == sorted(_all_names(names))
    assert not set(deleted) & await _list_tables(db)


# --- moto-only behaviour ----------------------------------------------------------------------


async def test_create_tables_enables_ttl_on_status_table(ddb_moto: DynamoDBTables) -> None:
    """The status table's TTL attribute from the template is switched on."""
    async with ddb_moto.client() as client:
        ttl = (await client.describe_time_to_live(TableName=ddb_moto.tables.status))["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}


async def test_create_tables_uses_sdk_endpoint_variable(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without endpoint_url, botocore's AWS_ENDPOINT_URL_DYNAMODB decides where tables go."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    names = unique_table_names()
    try:
        created = await create_tables(names)
        assert sorted(created) == sorted(_all_names(names))
    finally:
        await delete_tables(names)


def test_tables_cli_create_reports_created_then_existing(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tables create` takes names from the env vars, creates them, and is idempotent."""
    names = unique_table_names()
    for variable, value in names.env().items():
        monkeypatch.setenv(variable, value)
    assert SyncSettings.from_env().tables == names
    argv = ["create", "--endpoint-url", moto_endpoint, "--region", TEST_REGION]

    assert main(argv) == 0
    assert f"created  {names.cache}" in capsys.readouterr().out
    assert main(argv) == 0
    assert f"exists   {names.cache}" in capsys.readouterr().out


def test_tables_cli_delete_without_yes_refuses(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tables delete` drops nothing unless --yes confirms it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    assert main(["delete"]) == 2
    assert "--yes" in capsys.readouterr().err


def test_tables_cli_create_unreachable_endpoint_exits_nonzero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DynamoDB endpoint that does not answer is reported and exits 1, without a traceback."""
    # The SDK's own retry setting, honoured unchanged: one attempt keeps the test fast.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert main(["create", "--endpoint-url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "tables create failed" in capsys.readouterr().err


# --- the fixtures' own contract -----------------------------------------------------------------


def test_ddb_env_round_trips_through_settings(ddb: DynamoDBTables) -> None:
    """ddb.env() is what SyncSettings.from_env reads back into the same table names."""
    env = ddb.env()
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == ddb.endpoint_url
    assert SyncSettings.from_env(env).tables == ddb.tables
    assert ddb.settings(max_concurrency=4).tables == ddb.tables


# --- what only dynalite enforces (why both backends run) -------------------------------------


@pytest.fixture
async def dynalite_tables(dynalite_endpoint: str) -> AsyncIterator[DynamoDBTables]:
    async with fresh_tables(dynalite_endpoint, "dynalite") as tables:
        yield tables


def _put(server_id: str) -> dict[str, Any]:
    return {"PutRequest": {"Item": {"sourceServerId": {"S": server_id}}}}


async def test_dynalite_rejects_batch_of_26_items(dynalite_tables: DynamoDBTables) -> None:
    """BatchWriteItem takes at most 25 requests, as on AWS (moto accepts more)."""
    requests = [_put(f"s-{n}") for n in range(26)]
    async with dynalite_tables.client() as client:
        with pytest.raises(ClientError) as raised:
            await client.batch_write_item(RequestItems={dynalite_tables.tables.cache: requests})
    assert raised.value.response["Error"]["Code"] == "ValidationException"


async def test_dynalite_rejects_batch_with_duplicate_key(dynalite_tables: DynamoDBTables) -> None:
    """Two requests for one key in a batch are rejected, as on AWS (moto accepts them)."""
    requests = [_put("s-1"), _put("s-2"), _put("s-1")]
    async with dynalite_tables.client() as client:
        with pytest.raises(ClientError) as raised:
            await client.batch_write_item(RequestItems={dynalite_tables.tables.cache: requests})
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "duplicates" in raised.value.response["Error"]["Message"]


# --- server lifecycles --------------------------------------------------------------------------


def test_moto_server_stops_listening_on_exit() -> None:
    """The moto thread serves on loopback while open and releases the port on exit."""
    with moto_server() as db:
        assert db.backend == "moto"
        assert db.endpoint_url.startswith("http://127.0.0.1:")
        assert _is_listening(db.endpoint_url)
    assert not _is_listening(db.endpoint_url)


@pytest.fixture
def dynalite_installed(dynalite_endpoint: str) -> Iterator[None]:
    # Reuses the session fixture's skip-or-fail decision instead of repeating it here.
    assert dynalite_available()
    yield


@pytest.mark.usefixtures("dynalite_installed")
def test_dynalite_server_terminates_process_on_exit() -> None:
    """The dynalite process is gone once the context manager exits."""
    with dynalite_server() as db:
        assert db.backend == "dynalite"
        assert db.pid is not None
        assert _is_listening(db.endpoint_url)
    with pytest.raises(ProcessLookupError):
        os.kill(db.pid, 0)
