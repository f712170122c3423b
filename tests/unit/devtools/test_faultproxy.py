"""The DynamoDB fault proxy: transparent when idle, faithful when it injects (aiobotocore parses
every answer it gives), counted, configurable at run time, usable in-process and in a thread."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import aiohttp
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from devtools.faultproxy import DynamoFaultProxy, FaultKind, FaultProxyThread, FaultRule
from syncengine.core.config import RetrySettings
from syncengine.core.errors import ThrottledError, TransientAwsError
from syncengine.core.retry import CallContext, classify
from syncengine.dynamodb.seam import Dynamo

TABLE = "fault-proxy-test"
# botocore's own retries off (total_max_attempts: one try): every injected fault reaches the caller.
NO_RETRIES = AioConfig(retries={"total_max_attempts": 1}, read_timeout=10, connect_timeout=5)
_SESSION = aioboto3.Session(
    aws_access_key_id="AKIDPROXYTEST", aws_secret_access_key="proxy-secret", region_name="us-east-1"
)


def _put(key: str) -> dict[str, Any]:
    return {"PutRequest": {"Item": {"k": {"S": key}, "v": {"N": "1"}}}}


def _keys(keys: list[str]) -> list[dict[str, Any]]:
    return [{"k": {"S": key}} for key in keys]


@pytest.fixture
async def table(moto_endpoint: str) -> AsyncIterator[str]:
    """A fresh one-key table on moto (name unique per test)."""
    name = f"{TABLE}-{time.monotonic_ns()}"
    async with _SESSION.client("dynamodb", endpoint_url=moto_endpoint, config=NO_RETRIES) as client:
        await client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield name
        await client.delete_table(TableName=name)


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[DynamoFaultProxy]:
    async with DynamoFaultProxy(moto_endpoint, seed=7, record=True) as running:
        yield running


def client_of(endpoint_url: str) -> Any:
    return _SESSION.client("dynamodb", endpoint_url=endpoint_url, config=NO_RETRIES)


async def backend_keys(moto_endpoint: str, table: str) -> set[str]:
    async with client_of(moto_endpoint) as direct:
        response = await direct.scan(TableName=table)
    return {item["k"]["S"] for item in response["Items"]}


async def test_faultproxy_without_rules_is_transparent(proxy, table, moto_endpoint) -> None:
    """No rule: every request reaches the backend and the answer comes back unchanged."""
    async with client_of(proxy.endpoint_url) as client:
        await client.put_item(TableName=table, Item={"k": {"S": "a"}})
        got = await client.get_item(TableName=table, Key={"k": {"S": "a"}})

    assert got["Item"] == {"k": {"S": "a"}}
    assert await backend_keys(moto_endpoint, table) == {"a"}
    assert proxy.injected() == 0
    assert proxy.requests("PutItem") == proxy.requests("GetItem") == 1


async def test_faultproxy_unprocessed_items_forwards_only_the_processed_part(proxy, table, moto_endpoint) -> None:
    """BatchWriteItem: the held-back writes come back as UnprocessedItems and never reach the backend."""
    proxy.set_rules(FaultRule(FaultKind.UNPROCESSED, fraction=0.4))
    keys = [f"k{i}" for i in range(10)]
    async with client_of(proxy.endpoint_url) as client:
        response = await client.batch_write_item(RequestItems={table: [_put(k) for k in keys]})

    unprocessed = {r["PutRequest"]["Item"]["k"]["S"] for r in response["UnprocessedItems"][table]}
    assert len(unprocessed) == 4
    assert await backend_keys(moto_endpoint, table) == set(keys) - unprocessed
    assert proxy.injected(FaultKind.UNPROCESSED, "BatchWriteItem") == 1
    assert proxy.held_back == 4


async def test_faultproxy_unprocessed_keys_reads_only_part_of_a_batch_get(proxy, table) -> None:
    """BatchGetItem: held-back keys come back as UnprocessedKeys with the request's other parameters."""
    keys = [f"k{i}" for i in range(10)]
    async with client_of(proxy.endpoint_url) as client:
        await client.batch_write_item(RequestItems={table: [_put(k) for k in keys]})
        proxy.set_rules(FaultRule(FaultKind.UNPROCESSED, fraction=0.5))
        response = await client.batch_get_item(RequestItems={table: {"Keys": _keys(keys), "ConsistentRead": True}})

    found = {item["k"]["S"] for item in response["Responses"][table]}
    pending = response["UnprocessedKeys"][table]
    held = {key["k"]["S"] for key in pending["Keys"]}
    assert len(held) == 5 and found.isdisjoint(held) and found | held == set(keys)
    assert pending["ConsistentRead"] is True


async def test_faultproxy_never_returns_a_whole_batch_unprocessed(proxy, table, moto_endpoint) -> None:
    """Like DynamoDB, a batch is never entirely unprocessed: a one-item batch passes untouched."""
    proxy.set_rules(FaultRule(FaultKind.UNPROCESSED, fraction=1.0))
    async with client_of(proxy.endpoint_url) as client:
        single = await client.batch_write_item(RequestItems={table: [_put("only")]})
        several = await client.batch_write_item(RequestItems={table: [_put(f"m{i}") for i in range(3)]})

    assert not single["UnprocessedItems"]
    assert len(several["UnprocessedItems"][table]) == 2
    assert proxy.injected(FaultKind.UNPROCESSED) == 1
    assert len(await backend_keys(moto_endpoint, table)) == 2


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        pytest.param(FaultKind.THROUGHPUT, "ProvisionedThroughputExceededException", 400, id="throughput"),
        pytest.param(FaultKind.SERVER_ERROR, "InternalServerError", 500, id="5xx"),
    ],
)
async def test_faultproxy_error_faults_parse_as_dynamodb_errors(
    proxy, table, moto_endpoint, kind, code, status
) -> None:
    """Injected errors are DynamoDB's wire errors: botocore raises the modelled exception; nothing written."""
    proxy.set_rules(FaultRule(kind))
    async with client_of(proxy.endpoint_url) as client:
        with pytest.raises(ClientError) as caught:
            await client.put_item(TableName=table, Item={"k": {"S": "x"}})

    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert isinstance(classify(caught.value, CallContext("dynamodb:put_item")), TransientAwsError)
    assert await backend_keys(moto_endpoint, table) == set()


async def test_faultproxy_throughput_error_is_classified_as_a_throttle(proxy, table) -> None:
    """The engine's retry layer sees the proxy's throughput error as throttling."""
    proxy.set_rules(FaultRule(FaultKind.THROUGHPUT))
    async with client_of(proxy.endpoint_url) as client:
        with pytest.raises(ClientError) as caught:
            await client.get_item(TableName=table, Key={"k": {"S": "x"}})

    assert isinstance(classify(caught.value, CallContext("dynamodb:get_item")), ThrottledError)


@pytest.mark.parametrize("after_forward", [pytest.param(False, id="before"), pytest.param(True, id="after")])
async def test_faultproxy_drop_closes_the_connection_without_an_answer(
    proxy, table, moto_endpoint, after_forward
) -> None:
    """A dropped connection is a transient transport error; after_forward means the write still happened."""
    proxy.set_rules(FaultRule(FaultKind.DROP, after_forward=after_forward))
    async with client_of(proxy.endpoint_url) as client:
        with pytest.raises(Exception) as caught:
            await client.put_item(TableName=table, Item={"k": {"S": "dropped"}})

    assert isinstance(classify(caught.value, CallContext("dynamodb:put_item")), TransientAwsError)
    assert await backend_keys(moto_endpoint, table) == ({"dropped"} if after_forward else set())
    assert proxy.injected(FaultKind.DROP, "PutItem") == 1


async def test_faultproxy_latency_delays_the_answer(proxy, table) -> None:
    proxy.set_rules(FaultRule(FaultKind.LATENCY, seconds=0.3, operations={"GetItem"}))
    async with client_of(proxy.endpoint_url) as client:
        started = time.monotonic()
        await client.get_item(TableName=table, Key={"k": {"S": "x"}})
        slow = time.monotonic() - started
        await client.put_item(TableName=table, Item={"k": {"S": "x"}})

    # A lower bound only (an upper bound on the undelayed call flaked at 0.63 s on a loaded
    # machine): the PutItem went undelayed because the proxy injected the delay once, on GetItem.
    assert slow >= 0.3
    assert proxy.injected(FaultKind.LATENCY) == 1
    assert proxy.injected(FaultKind.LATENCY, "PutItem") == 0


async def test_faultproxy_rules_narrow_by_operation_table_and_limit(proxy, table) -> None:
    """A rule fires only on its operations and tables, and at most ``limit`` times."""
    proxy.set_rules(
        FaultRule(FaultKind.SERVER_ERROR, operations={"GetItem"}, tables={table}, limit=2),
        FaultRule(FaultKind.THROUGHPUT, tables={"some-other-table"}),
    )
    outcomes: list[str] = []
    async with client_of(proxy.endpoint_url) as client:
        await client.put_item(TableName=table, Item={"k": {"S": "x"}})
        for _ in range(4):
            try:
                await client.get_item(TableName=table, Key={"k": {"S": "x"}})
                outcomes.append("ok")
            except ClientError as exc:
                outcomes.append(exc.response["Error"]["Code"])

    assert outcomes == ["InternalServerError", "InternalServerError", "ok", "ok"]
    assert proxy.injected() == 2


async def test_faultproxy_rate_injects_about_that_share(proxy, table) -> None:
    """A 30% rule fails roughly 30% of 200 requests (seeded, so the count is stable)."""
    proxy.set_rules(FaultRule(FaultKind.SERVER_ERROR, rate=0.3))
    failures = 0
    async with client_of(proxy.endpoint_url) as client:
        for _ in range(200):
            try:
                await client.get_item(TableName=table, Key={"k": {"S": "x"}})
            except ClientError:
                failures += 1

    assert 35 <= failures <= 85
    assert failures == proxy.injected(FaultKind.SERVER_ERROR)


async def test_faultproxy_records_request_bodies(proxy, table) -> None:
    async with client_of(proxy.endpoint_url) as client:
        await client.get_item(
            TableName=table, Key={"k": {"S": "x"}}, ProjectionExpression="#k", ExpressionAttributeNames={"#k": "k"}
        )

    recorded = [r for r in proxy.recorded if r.operation == "GetItem"]
    assert recorded[0].body["ProjectionExpression"] == "#k"
    proxy.reset_counts()
    assert proxy.recorded == [] and proxy.requests() == 0


async def test_faultproxy_rewritten_bodies_carry_a_correct_crc32(proxy, table) -> None:
    """Every body the proxy writes itself has DynamoDB's x-amz-crc32 checksum header."""
    proxy.set_rules(FaultRule(FaultKind.UNPROCESSED, fraction=0.5))
    body = json.dumps({"RequestItems": {table: [_put(f"c{i}") for i in range(4)]}}).encode()
    headers = {
        "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
        "Content-Type": "application/x-amz-json-1.0",
        # moto routes by the credential scope's service name.
        "Authorization": "AWS4-HMAC-SHA256 "
        "Credential=AKIDPROXYTEST/20250101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00",
    }
    async with aiohttp.ClientSession() as http, http.post(proxy.endpoint_url, data=body, headers=headers) as resp:
        payload = await resp.read()
        crc = resp.headers["x-amz-crc32"]
        content_type = resp.headers["Content-Type"]

    assert resp.status == 200
    assert content_type == "application/x-amz-json-1.0"
    assert int(crc) == zlib.crc32(payload) & 0xFFFFFFFF
    assert len(json.loads(payload)["UnprocessedItems"][table]) == 2


async def test_faultproxy_engine_batch_write_loses_nothing_under_unprocessed_items(proxy, table, moto_endpoint) -> None:
    """The engine's batch_write re-sends UnprocessedItems until every write landed."""
    proxy.set_rules(FaultRule(FaultKind.UNPROCESSED, rate=0.8, fraction=0.5))
    keys = [f"e{i}" for i in range(25)]
    async with client_of(proxy.endpoint_url) as client:
        dynamo = Dynamo(client, retry=RetrySettings(max_attempts=5, base_delay=0.001, max_delay=0.01))
        await dynamo.batch_write(table, [_put(k) for k in keys])

    assert proxy.injected(FaultKind.UNPROCESSED) >= 1
    assert await backend_keys(moto_endpoint, table) == set(keys)


async def test_faultproxy_runs_in_a_background_thread(moto_endpoint, table) -> None:
    """FaultProxyThread serves from its own loop; rules set from this thread take effect there."""
    with FaultProxyThread(moto_endpoint, seed=3) as threaded:
        threaded.set_rules(FaultRule(FaultKind.THROUGHPUT, limit=1))
        async with client_of(threaded.endpoint_url) as client:
            with pytest.raises(ClientError):
                await client.get_item(TableName=table, Key={"k": {"S": "x"}})
            await client.put_item(TableName=table, Item={"k": {"S": "t"}})

        assert threaded.injected(FaultKind.THROUGHPUT) == 1
        assert threaded.requests() == 2
    assert await backend_keys(moto_endpoint, table) == {"t"}


def test_faultproxy_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError):
        DynamoFaultProxy("http://127.0.0.1:1", host="0.0.0.0")


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"kind": FaultKind.DROP, "rate": 1.5}, id="rate"),
        pytest.param({"kind": FaultKind.UNPROCESSED, "fraction": 0.0}, id="fraction"),
        pytest.param({"kind": FaultKind.UNPROCESSED, "operations": {"PutItem"}}, id="unprocessed-on-put"),
        pytest.param({"kind": "nonsense"}, id="kind"),
    ],
)
def test_faultrule_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultRule(**bad)


def test_faultrule_accepts_a_single_operation_name() -> None:
    assert FaultRule(FaultKind.DROP, operations="PutItem").operations == frozenset({"PutItem"})


async def test_faultproxy_stop_is_idempotent(moto_endpoint) -> None:
    running = DynamoFaultProxy(moto_endpoint)
    await running.start()
    await running.stop()
    await running.stop()
    await asyncio.sleep(0)
