"""An opt-in region that DescribeRegions lists as enabled but whose DRS rejects the credentials is
a real failure (degraded, records kept), never NOT_ENABLED."""

from handlers.data_management import lambda_handler as data_management
from tests.acceptance.conftest import OPT_IN_REGION, TARGET, Context, Estate
from tests.acceptance.fake_aws import INVALID_TOKEN, AwsError
from tests.acceptance.test_sync_truth import FULL_SYNC, scopes, seed, status


def test_enabled_opt_in_region_rejecting_credentials_fails_and_keeps_its_records(estate: Estate) -> None:
    seed(estate)
    estate.aws.accounts[TARGET].enabled_regions.add(OPT_IN_REGION)
    server = estate.aws.add_server(TARGET, OPT_IN_REGION, "cape-town-1")
    estate.aws.launch(TARGET, OPT_IN_REGION, [server])
    data_management(FULL_SYNC, Context())
    for op in ("DescribeRecoveryInstances", "DescribeSourceServers"):
        rejected = AwsError(403, "UnrecognizedClientException", INVALID_TOKEN)
        estate.aws.errors[("drs", op, TARGET, OPT_IN_REGION)] = rejected

    report = data_management(FULL_SYNC, Context())
    assert report["status"] == "PARTIAL"
    assert [e["errorType"] for e in report["errors"]] == ["UnrecognizedClientException"]

    body = status()
    assert server in estate.cache()
    assert scopes(body)[(TARGET, OPT_IN_REGION)]["status"] != "NOT_ENABLED"
    assert body["status"] == "degraded"
