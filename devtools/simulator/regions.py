"""Regions as AWS has them: seventeen enabled in every account, the rest opt-in.

An opt-in region works for an account only after the account enabled it. Until then AWS does not
recognise the account's credentials there: DRS answers 403 ``UnrecognizedClientException`` ("The
security token included in the request is invalid."), EC2 401 ``AuthFailure`` ("AWS was not able
to validate the provided access credentials"), STS ``InvalidClientTokenId``
(https://repost.aws/knowledge-center/iam-validate-access-credentials;
https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html).
EC2 DescribeRegions lists "the Regions that are enabled for your account, or all Regions" with
``AllRegions``, each with its ``optInStatus`` (``opt-in-not-required`` | ``opted-in`` |
``not-opted-in``) (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeRegions.html).

Kept apart from the engine's own list (``syncengine.aws.regions``) on purpose: the simulator models
AWS, and a shared constant would hide a mistake in both.

In the simulator an account has enabled every opt-in region its estate operates in
(``EstateConfig.regions``) except those named in ``EstateConfig.disabled_regions``; other opt-in
regions are not enabled, as in a new AWS account.
"""

from __future__ import annotations

# Launched before March 20, 2019: enabled in every account, cannot be disabled.
ALWAYS_ENABLED = (
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
)
OPT_IN = (
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-west-1",
    "eu-central-2",
    "eu-south-1",
    "eu-south-2",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
)
# AWS GovCloud (US), partition aws-us-gov: both regions enabled for every GovCloud account.
GOVCLOUD = ("us-gov-east-1", "us-gov-west-1")
ALL_REGIONS = ALWAYS_ENABLED + OPT_IN + GOVCLOUD

OPT_IN_NOT_REQUIRED = "opt-in-not-required"
OPTED_IN = "opted-in"
NOT_OPTED_IN = "not-opted-in"


def partition_of(region: str) -> str:
    """The partition of a simulated region: GovCloud's, else the commercial one."""
    return "aws-us-gov" if region in GOVCLOUD else "aws"


def is_opt_in(region: str) -> bool:
    return region in OPT_IN


def opt_in_status(region: str, enabled: bool) -> str:
    if not is_opt_in(region):
        return OPT_IN_NOT_REQUIRED
    return OPTED_IN if enabled else NOT_OPTED_IN


def endpoint(region: str) -> str:
    return f"ec2.{region}.amazonaws.com"
