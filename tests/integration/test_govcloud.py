"""A hub in AWS GovCloud (US) (partition ``aws-us-gov``): its DRS regions are GovCloud's (from
botocore's partition data, not the commercial list), its target roles' ARNs are GovCloud ARNs
(the simulator's STS refuses another partition's, as STS does), and a scoped sync of a GovCloud
region is valid. Tables are created in the GovCloud home region (moto keeps tables per region)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from devtools.tables import create_tables, delete_tables
from syncengine.core.errors import InvalidRequestError
from syncengine.sync.engine import sync_all
from tests.fixtures.dynamodb import _SESSION, DynamoDBTables, unique_table_names
from tests.integration.engine_support import cache_items, engine_settings, seed

# The subject is not DynamoDB: one backend, the strict one (tests/fixtures/dynamodb.py).
pytestmark = pytest.mark.one_backend

GOV_HUB = "us-gov-west-1"
GOV_REGIONS = ("us-gov-east-1", "us-gov-west-1")


@pytest.fixture
async def gov_ddb(dynamodb_backend: str, dynamodb_endpoint: str, monkeypatch: Any) -> AsyncIterator[DynamoDBTables]:
    monkeypatch.setenv("AWS_REGION", GOV_HUB)
    monkeypatch.setenv("AWS_DEFAULT_REGION", GOV_HUB)
    names = unique_table_names()
    await create_tables(names, session=_SESSION, endpoint_url=dynamodb_endpoint, region=GOV_HUB)
    try:
        yield DynamoDBTables(endpoint_url=dynamodb_endpoint, backend=dynamodb_backend, tables=names, region=GOV_HUB)
    finally:
        with contextlib.suppress(Exception):
            await delete_tables(names, session=_SESSION, endpoint_url=dynamodb_endpoint, region=GOV_HUB)


async def test_govcloud_hub_syncs_every_govcloud_region_with_govcloud_role_arns(gov_ddb, make_simulator) -> None:
    """No configured regions: every DRS region of the hub's partition, both GovCloud regions, and
    nothing else; each target account's role assumed by its ``arn:aws-us-gov:iam`` ARN."""
    sim = make_simulator(accounts=3, regions=GOV_REGIONS, instances_per_scope=2, seed=23)
    settings = engine_settings(gov_ddb, sim, regions=())
    await seed(settings, sim.estate)

    report = await sync_all(settings)

    assert report.scopes_failed == 0, report.to_dict()["errors"]
    assert sorted({r.scope.region for r in report.scopes}) == list(GOV_REGIONS)
    assert report.scopes_synced == 3 * len(GOV_REGIONS)
    assert len(await cache_items(settings)) == 3 * len(GOV_REGIONS) * 2
    assert sim.calls.count("sts", "AssumeRole", outcome="Success") == 2  # the two non-hub accounts


async def test_govcloud_hub_accepts_a_scoped_sync_of_a_govcloud_region_only(gov_ddb, make_simulator) -> None:
    sim = make_simulator(accounts=1, regions=GOV_REGIONS, instances_per_scope=2, seed=24)
    settings = engine_settings(gov_ddb, sim)
    await seed(settings, sim.estate)

    report = await sync_all(settings, region="us-gov-east-1")

    assert report.scopes_synced == 1 and report.scopes_failed == 0
    with pytest.raises(InvalidRequestError):
        await sync_all(settings, region="us-east-1")  # not a region of the hub's partition
