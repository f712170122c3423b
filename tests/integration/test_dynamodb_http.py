"""The engine's DynamoDB client (syncengine/dynamodb/client.py) on real servers (moto and dynalite):
the same answers, writes and errors as the aiobotocore client, UnprocessedKeys and throttles
through the fault proxy, a keep-alive connection the server dropped, and a cold handler that
answers without loading aiobotocore."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from devtools.faultproxy import DynamoFaultProxy, FaultKind, FaultRule
from syncengine.core.errors import PermanentAwsError, ThrottledError
from syncengine.dynamodb.client import REQUEST_LISTENERS, DynamoDBHttpClient
from syncengine.dynamodb.seam import Dynamo, to_item
from syncengine.plans.check_existing import check_existing_instances
from syncengine.sync.engine import get_cached_records
from tests.cfn_yaml import ROOT
from tests.integration.test_check_existing import ESTATE, synced
from tests.integration.test_handlers_support import plan_scenario, put, seed_plan

TEST_TIMEOUT = 60


@pytest.fixture
def light_requests() -> Iterator[Counter[str]]:
    """Requests the light client sends during the test, by operation."""
    sent: Counter[str] = Counter()

    def count(operation: str) -> None:
        sent[operation] += 1

    REQUEST_LISTENERS.append(count)
    yield sent
    REQUEST_LISTENERS.remove(count)


@pytest.fixture
async def proxy(ddb: Any) -> AsyncIterator[DynamoFaultProxy]:
    async with DynamoFaultProxy(ddb.endpoint_url, seed=41) as running:
        yield running


def light_client(endpoint: str, *, writes: bool = False) -> DynamoDBHttpClient:
    return DynamoDBHttpClient(endpoint, "us-east-1", connect_timeout=5, read_timeout=10, writes=writes)


async def test_check_existing_reads_through_the_light_client(ddb, make_simulator, light_requests) -> None:
    """The read path's DynamoDB calls (plan, groups, cache) go through the light client."""
    sim = make_simulator(**ESTATE)
    settings = await synced(ddb, sim)
    await seed_plan(settings, plan_scenario(sim.estate))
    light_requests.clear()  # the sync's own calls (the engine uses the light client too)

    light = await check_existing_instances(settings, "plan-mixed")

    assert light["instanceCount"] > 0
    assert {"GetItem", "BatchGetItem"} <= set(light_requests)


async def test_light_client_reads_answer_as_aiobotocore(ddb, make_simulator, light_requests) -> None:
    """What a sync left in the cache and status tables reads the same through both clients."""
    sim = make_simulator(**ESTATE)
    settings = await synced(ddb, sim)
    assert {"UpdateItem", "BatchWriteItem", "PutItem"} <= set(light_requests)  # the sync's writes
    retry = settings.retry
    async with ddb.client() as client:
        for table in (settings.tables.cache, settings.tables.status):
            full = await Dynamo(client, retry=retry).scan_all(table)
            light = await Dynamo(light_client(ddb.endpoint_url), retry=retry).scan_all(table)
            key = "sourceServerId" if table == settings.tables.cache else "sk"
            assert sorted(light, key=lambda item: str(item[key])) == sorted(full, key=lambda item: str(item[key]))
            assert light


async def test_light_client_writes_as_aiobotocore(ddb) -> None:
    """The engine's kinds of write (a conditional update, a put, a batch of puts and deletes, a
    refused condition) leave the same items, and refuse the same way, through both clients."""
    table = ddb.tables.cache
    retry = ddb.settings().retry
    results: list[Any] = []
    async with ddb.client() as client:
        for prefix, each in (("full", client), ("light", light_client(ddb.endpoint_url, writes=True))):
            dynamo = Dynamo(each, retry=retry)
            key = to_item({"sourceServerId": f"{prefix}-1"})
            await dynamo.call("put_item", TableName=table, Item={**key, "n": {"N": "1"}, "tags": {"M": {}}})
            await dynamo.call(
                "update_item",
                TableName=table,
                Key=key,
                UpdateExpression="SET #n = #n + :one, #s = :s",
                ConditionExpression="attribute_exists(#n)",
                ExpressionAttributeNames={"#n": "n", "#s": "state"},
                ExpressionAttributeValues={":one": {"N": "1"}, ":s": {"S": "running"}},
            )
            await dynamo.batch_write(
                table,
                [
                    {"PutRequest": {"Item": to_item({"sourceServerId": f"{prefix}-2", "ok": True})}},
                    {"DeleteRequest": {"Key": to_item({"sourceServerId": f"{prefix}-3"})}},
                ],
            )
            with pytest.raises(PermanentAwsError) as refused:
                await dynamo.call(
                    "delete_item", TableName=table, Key=key, ConditionExpression="attribute_not_exists(n)"
                )
            items = {
                str(item["sourceServerId"]).removeprefix(prefix): {
                    k: v for k, v in item.items() if k != "sourceServerId"
                }
                for item in await dynamo.scan_all(table)
                if str(item["sourceServerId"]).startswith(prefix)
            }
            results.append((items, type(refused.value), refused.value.code))
    assert results[0] == results[1]
    assert results[0][2] == "ConditionalCheckFailedException"


async def test_light_client_error_is_the_aiobotocore_error(ddb) -> None:
    """A read of a table that does not exist: the same class and code from both clients."""
    errors = []
    async with ddb.client() as client:
        for each in (client, light_client(ddb.endpoint_url)):
            with pytest.raises(PermanentAwsError) as raised:
                await Dynamo(each, retry=ddb.settings().retry).call("get_item", TableName="no-such-table", Key={})
            errors.append((type(raised.value), raised.value.code, raised.value.operation))
    assert errors[0] == errors[1]
    assert errors[0][1] == "ResourceNotFoundException"


async def test_light_client_get_item_returns_what_aiobotocore_returns(ddb) -> None:
    table = ddb.tables.recovery_plans
    item = {"planId": "p-1", "planName": "Plan", "waves": [{"waveNumber": 1, "serverIds": ["s-1"]}]}
    await put(ddb.settings(), table, [item])
    key = to_item({"planId": "p-1"})
    async with ddb.client() as client:
        full = await client.get_item(TableName=table, Key=key)
    light = await light_client(ddb.endpoint_url).get_item(TableName=table, Key=key)
    assert light["Item"] == full["Item"]


async def test_light_batch_get_with_unprocessed_keys_returns_every_record(
    ddb, make_simulator, proxy, light_requests
) -> None:
    """BatchGetItem answering only part of each batch: every cached record comes back once."""
    sim = make_simulator(accounts=1, regions=("us-east-1",), instances_per_scope=130, seed=43)
    settings = await synced(ddb, sim)
    wanted = sorted(live["sourceServerID"] for live in sim.estate.recovery_instances())
    proxy.set_rules(FaultRule(FaultKind.UNPROCESSED, operations={"BatchGetItem"}, rate=0.9, fraction=0.6))
    through_proxy = settings.with_changes(endpoint_urls=(("dynamodb", proxy.endpoint_url),))

    with anyio.fail_after(TEST_TIMEOUT):
        records = await get_cached_records(through_proxy, [*wanted, "s-00000000000000000"])

    assert proxy.injected(FaultKind.UNPROCESSED, "BatchGetItem") >= 2
    assert sorted(r["sourceServerId"] for r in records) == wanted
    assert light_requests["BatchGetItem"] > 2


async def test_light_client_throttle_is_retried_by_the_retry_layer(ddb, proxy) -> None:
    proxy.set_rules(FaultRule(FaultKind.THROUGHPUT, operations={"GetItem"}, limit=2))
    dynamo = Dynamo(light_client(proxy.endpoint_url), retry=ddb.settings().retry)
    retried: list[Exception] = []
    dynamo.stats.record_retry = retried.append  # type: ignore[method-assign]

    with anyio.fail_after(TEST_TIMEOUT):
        answer = await dynamo.call("get_item", TableName=ddb.tables.recovery_plans, Key=to_item({"planId": "none"}))

    assert "Item" not in answer
    assert [type(error) for error in retried] == [ThrottledError, ThrottledError]
    assert proxy.injected(FaultKind.THROUGHPUT, "GetItem") == 2


async def test_light_client_resends_on_a_keep_alive_connection_the_server_dropped() -> None:
    """The server closes an idle keep-alive connection (as after a Lambda freeze) when the next
    request arrives: the request goes again on a new connection, once."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        await reader.readexactly(length)
        body = b'{"Count": 0, "Items": []}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        await reader.read(1)  # the next request on this connection: dropped unanswered
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, light_client(f"http://127.0.0.1:{port}") as client:
        with anyio.fail_after(TEST_TIMEOUT):
            first = await client.query(TableName="t")
            second = await client.query(TableName="t")
    assert first["Count"] == second["Count"] == 0
    assert connections == 2


async def test_cold_query_handler_answers_without_aiobotocore(ddb) -> None:
    """A fresh interpreter imports the query handler and answers check-existing through it (the
    plan, its group and the cache read through the light client): aiobotocore, aiohttp and
    botocore's client machinery are never loaded."""
    plan = {"planId": "plan-cold", "accountId": "111122223333", "region": "us-east-1"}
    plan["waves"] = [{"waveNumber": 1, "protectionGroupId": "pg-cold"}]
    await put(ddb.settings(), ddb.tables.recovery_plans, [plan])
    await put(ddb.settings(), ddb.tables.protection_groups, [{"groupId": "pg-cold", "sourceServerIds": ["s-1"]}])
    code = """
import json, sys
from handlers import query
answer = query.lambda_handler({"operation": "check_existing_recovery_instances", "planId": "plan-cold"}, None)
heavy = ("aiobotocore", "aiohttp", "aioboto3", "botocore.client", "botocore.session")
print(json.dumps({"answer": answer, "loaded": sorted(m for m in heavy if m in sys.modules)}))
"""
    env = {**os.environ, **ddb.env(), "AWS_LAMBDA_FUNCTION_NAME": "query-test"}
    env.pop("AWS_ENDPOINT_URL", None)
    with anyio.fail_after(120):
        done = await anyio.run_process([sys.executable, "-c", code], cwd=ROOT, env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    printed = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert printed["answer"]["planId"] == "plan-cold"
    assert printed["answer"]["unverifiedServerIds"] == ["s-1"]
    assert printed["loaded"] == []
