"""What the embedded DynamoDB (dynalite) and the two DynamoDB clients cost per call
(``python -m benchmarks.experiments.dynamodb_costs``): the tail of latency_bound and fanout.

Server side: the embedded DynamoDB's CPU per call for the writes a sync makes after its throttle
wait (a batch of 20 cache records, on the cache table with its three indexes and on a table with
none; a scope's conditional status and lease update) and for simpler calls beside them. Node runs
it on one thread: these writes are serial, whatever the engine's concurrency. Real DynamoDB
spreads them over partitions.

Client side: this process's CPU per call through aiobotocore and through the light client
(``syncengine.dynamodb.client``), the same conditional update and the same read, with 8 in flight.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

CALLS = 400
IN_FLIGHT = 16
NOW = int(time.time())
LEASE = {
    "UpdateExpression": "SET #owner = :owner, #exp = :exp, #acct = :acct, #region = :region",
    "ConditionExpression": "attribute_not_exists(#exp) OR #exp < :now OR #owner = :owner",
    "ExpressionAttributeNames": {
        "#owner": "leaseOwner",
        "#exp": "leaseExpiresAt",
        "#acct": "accountId",
        "#region": "region",
    },
    "ExpressionAttributeValues": {
        ":owner": {"S": "run-1"},
        ":exp": {"N": str(NOW + 900)},
        ":now": {"N": str(NOW)},
        ":acct": {"S": "111111111111"},
        ":region": {"S": "us-east-1"},
    },
}


def cache_item(n: int) -> dict[str, Any]:
    """A cache record as a cold sync writes it (the attributes of syncengine.tables.records)."""
    text = {
        "sourceServerId": f"s-{n:017d}",
        "recoveryInstanceId": f"i-{n:017d}",
        "accountId": "111111111111",
        "region": "us-east-1",
        "ec2InstanceId": f"i-{n:017x}",
        "ec2InstanceState": "running",
        "sourceServerName": "web-01",
        "name": "web-01",
        "privateIp": "10.0.0.1",
        "instanceType": "t3.large",
        "launchTime": "2026-11-29T00:00:00Z",
        "jobId": "drsjob-123",
        "pointInTimeSnapshotDateTime": "2026-11-29T00:00:00Z",
        "sourceExecutionId": "exec-1",
        "sourcePlanName": "plan",
        "scopeKey": "111111111111#us-east-1",
        "contentHash": "abcdef0123456789abcdef01",
        "lastSyncTime": "2026-11-29T00:00:00Z",
    }
    item: dict[str, Any] = {key: {"S": value} for key, value in text.items()}
    item["isDrill"] = {"BOOL": True}
    item["observedAt"] = {"N": "1700000000000"}
    item["sourceServerTags"] = {"M": {"Name": {"S": "web-01"}, "env": {"S": "prod"}}}
    return item


async def _server_costs(client: Any, tables: Any, cpu: Callable[[], float]) -> dict[str, float]:
    """The embedded DynamoDB's CPU (ms) per call, by kind of call."""
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def phase(make: Callable[[int], Awaitable[Any]]) -> float:
        async def one(i: int) -> None:
            async with limit:
                await make(i)

        await asyncio.gather(*(one(i) for i in range(20)))  # warm the server's code paths
        before = cpu()
        await asyncio.gather(*(one(i) for i in range(20, 20 + CALLS)))
        return round((cpu() - before) / CALLS * 1000, 3)

    def key(prefix: str, i: int) -> dict[str, Any]:
        return {"pk": {"S": "SCOPE"}, "sk": {"S": f"{prefix}{i:06d}"}}

    def batch(table: str, i: int, extra: dict[str, Any]) -> Any:
        items = [{"PutRequest": {"Item": {**cache_item(i * 20 + j), **extra(i * 20 + j)}}} for j in range(20)]
        return client.batch_write_item(RequestItems={table: items})

    return {
        "batch_of_20_cache_records_ms": await phase(lambda i: batch(tables.cache, i, lambda n: {})),
        "batch_of_20_records_no_index_ms": await phase(
            lambda i: batch(tables.status, i, lambda n: {"pk": {"S": "X"}, "sk": {"S": str(n)}})
        ),
        "conditional_lease_update_ms": await phase(
            lambda i: client.update_item(TableName=tables.status, Key=key("lease", i), **LEASE)
        ),
        "plain_update_ms": await phase(
            lambda i: client.update_item(
                TableName=tables.status,
                Key=key("plain", i),
                UpdateExpression="SET a = :a",
                ExpressionAttributeValues={":a": {"S": "x"}},
            )
        ),
        "put_item_ms": await phase(
            lambda i: client.put_item(TableName=tables.status, Item={**key("put", i), "a": {"S": "x"}})
        ),
        "get_item_ms": await phase(lambda i: client.get_item(TableName=tables.status, Key=key("put", i))),
    }


async def _client_costs(endpoint: str, tables: Any) -> dict[str, float]:
    """This process's CPU (ms) per call through each client."""
    from botocore.config import Config

    from syncengine.aws.clients import shared_session
    from syncengine.dynamodb.client import DynamoDBHttpClient

    limit = asyncio.Semaphore(8)

    async def per_call(make: Callable[[int], Awaitable[Any]]) -> float:
        async def one(i: int) -> None:
            async with limit:
                await make(i)

        await asyncio.gather(*(one(i) for i in range(50)))
        before = time.process_time()
        await asyncio.gather(*(one(i) for i in range(50, 50 + CALLS)))
        return round((time.process_time() - before) / CALLS * 1000, 3)

    def update(client: Any, prefix: str) -> Callable[[int], Awaitable[Any]]:
        return lambda i: client.update_item(
            TableName=tables.status, Key={"pk": {"S": "SCOPE"}, "sk": {"S": f"{prefix}{i:06d}"}}, **LEASE
        )

    def read(client: Any) -> Callable[[int], Awaitable[Any]]:
        return lambda i: client.get_item(TableName=tables.status, Key={"pk": {"S": "SCOPE"}, "sk": {"S": f"a{i:06d}"}})

    config = Config(retries={"max_attempts": 1}, max_pool_connections=16)
    result: dict[str, float] = {}
    async with shared_session().client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", config=config) as c:
        result["aiobotocore_update_item_ms"] = await per_call(update(c, "a"))
        result["aiobotocore_get_item_ms"] = await per_call(read(c))
    async with DynamoDBHttpClient(endpoint, "us-east-1", connect_timeout=5, read_timeout=30, writes=True) as light:
        result["light_update_item_ms"] = await per_call(update(light, "b"))
        result["light_get_item_ms"] = await per_call(read(light))
    return result


def main() -> None:
    import psutil

    from benchmarks import harness as h
    from devtools.localdb import embedded_dynamodb

    h.isolate_from_aws()
    with embedded_dynamodb(prefer="auto") as db:
        tables = h.run_async(h.create_fresh_tables(db.endpoint_url, "dynamodb-costs"))
        server = psutil.Process(db.pid)

        def server_cpu() -> float:
            times = server.cpu_times()
            return times.user + times.system

        async def run() -> dict[str, Any]:
            from syncengine.aws.clients import shared_session

            session = shared_session()
            async with session.client("dynamodb", endpoint_url=db.endpoint_url, region_name="us-east-1") as client:
                server_side = await _server_costs(client, tables, server_cpu)
            return {
                "backend": db.backend,
                "server": server_side,
                "client": await _client_costs(db.endpoint_url, tables),
            }

        print(json.dumps(asyncio.run(run()), indent=1))


if __name__ == "__main__":
    main()
