"""The simulator's opt-in regions, as AWS answers them (devtools/simulator/regions.py)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.fixtures.simulator import NO_RETRY, assume_role, client_kwargs

OPT_IN = "af-south-1"


@pytest.fixture
def sim(make_simulator):
    return make_simulator(
        accounts=3, regions=("us-east-1", OPT_IN), instances_per_scope=2, seed=41, disabled_regions=(f"1#{OPT_IN}",)
    )


def client(sim, service: str, region: str, account_index: int):
    account = sim.estate.accounts[account_index]
    return boto3.client(service, config=NO_RETRY, **client_kwargs(sim, region, assume_role(sim, account.account_id)))


def test_simulator_describe_regions_lists_only_the_callers_enabled_regions(sim) -> None:
    lagging = {r["RegionName"] for r in client(sim, "ec2", "us-east-1", 1).describe_regions()["Regions"]}
    enabled = {r["RegionName"] for r in client(sim, "ec2", "us-east-1", 2).describe_regions()["Regions"]}
    assert OPT_IN not in lagging and OPT_IN in enabled
    assert enabled - lagging == {OPT_IN}
    assert "me-south-1" not in enabled and "us-west-2" in lagging


def test_simulator_describe_regions_all_regions_says_not_opted_in(sim) -> None:
    ec2 = client(sim, "ec2", "us-east-1", 1)
    every = {r["RegionName"]: r["OptInStatus"] for r in ec2.describe_regions(AllRegions=True)["Regions"]}
    assert every[OPT_IN] == "not-opted-in" and every["us-east-1"] == "opt-in-not-required"
    only = ec2.describe_regions(RegionNames=[OPT_IN])["Regions"]
    assert [r["RegionName"] for r in only] == [OPT_IN]


@pytest.mark.parametrize(
    ("service", "call", "code", "status"),
    [
        pytest.param("drs", "describe_recovery_instances", "UnrecognizedClientException", 403, id="drs"),
        pytest.param("ec2", "describe_instances", "AuthFailure", 401, id="ec2"),
    ],
)
def test_simulator_disabled_region_answers_the_auth_failure(sim, service, call, code, status) -> None:
    with pytest.raises(ClientError) as caught:
        getattr(client(sim, service, OPT_IN, 1), call)()
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert getattr(client(sim, service, OPT_IN, 2), call)()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_simulator_only_an_opt_in_region_can_be_disabled(make_simulator) -> None:
    with pytest.raises(ValueError, match="opt-in"):
        make_simulator(accounts=2, regions=("us-east-1",), disabled_regions=("1#us-east-1",))
