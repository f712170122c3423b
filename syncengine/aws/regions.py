"""Which regions exist for an account: opt-in regions an account has not enabled are reported
``NOT_ENABLED``, never synced and never failed.

Every region launched since March 2019 is an opt-in region: an account must enable it before it
can call any service there. The seventeen older ones are enabled in every account and cannot be
disabled, so only a scope in an opt-in region needs asking about. Two signals, in this order:

1. EC2 DescribeRegions (``AllRegions`` false) with the account's own credentials, once per
   account per run: "Describes the Regions that are enabled for your account"
   (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeRegions.html). A region
   it does not list is not enabled. It is asked in a region that is always enabled.
2. The auth failure a disabled region answers with (for when DescribeRegions is not allowed or
   not answered): AWS does not recognise the account's credentials there, so DRS answers
   ``UnrecognizedClientException`` ("The security token included in the request is invalid")
   and EC2 ``AuthFailure`` ("AWS was not able to validate the provided access credentials")
   (https://repost.aws/knowledge-center/iam-validate-access-credentials). Only in an opt-in
   region: the same codes in an always-enabled region, or an ``AccessDenied`` anywhere, or an
   AssumeRole that fails, are a broken role or permission and fail the scope as before. Nor in
   an opt-in region that DescribeRegions listed as enabled: there the same codes are credentials
   the region rejects, a real failure that must show (degraded), never hide as NOT_ENABLED.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from syncengine.core.errors import AwsError
from syncengine.core.logging import get_logger
from syncengine.core.models import AccountTarget
from syncengine.core.retry import CallContext

if TYPE_CHECKING:  # pragma: no cover
    from syncengine.aws.clients import AwsClients

log = get_logger(__name__)

# The regions enabled in every account (launched before March 20, 2019); every later region of the
# commercial partition is opt-in. https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html
ALWAYS_ENABLED_REGIONS = frozenset(
    {
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "ca-central-1",
        "sa-east-1",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "eu-central-1",
        "eu-north-1",
        "ap-south-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-southeast-1",
        "ap-southeast-2",
        # GovCloud (aws-us-gov): both regions are enabled for every GovCloud account.
        "us-gov-west-1",
        "us-gov-east-1",
    }
)
# What DRS (rest-json) and EC2 (query) answer to credentials used in a region the account has not
# enabled. Not STS's InvalidClientTokenId: STS is only asked in the home region, by the hub, and
# its failure is the hub's or the role's, never the scope region's.
DISABLED_REGION_CODES = frozenset({"UnrecognizedClientException", "AuthFailure"})
# Where DescribeRegions is asked when the home region is itself an opt-in region.
FALLBACK_QUERY_REGION = "us-east-1"


def is_opt_in_region(region: str) -> bool:
    return region not in ALWAYS_ENABLED_REGIONS


def is_disabled_region_error(exc: AwsError, region: str) -> bool:
    """The answer of a region the account has not enabled (see the module docstring)."""
    return is_opt_in_region(region) and exc.code in DISABLED_REGION_CODES and exc.operation != "AssumeRole"


class EnabledRegions:
    """The enabled regions of each account, asked once per account per run."""

    def __init__(self, aws: AwsClients, home_region: str):
        self.aws = aws
        self.query_region = home_region if not is_opt_in_region(home_region) else FALLBACK_QUERY_REGION
        self._known: dict[str, frozenset[str] | None] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def is_enabled(self, account: AccountTarget, region: str) -> bool | None:
        """True or False when known; None when DescribeRegions did not answer (the auth-failure
        pattern then decides). Raises the account's AssumeRole failure, as any call would."""
        if not is_opt_in_region(region):
            return True
        enabled = await self._enabled(account)
        return None if enabled is None else region in enabled

    def listed(self, account_id: str, region: str) -> bool | None:
        """What this run's DescribeRegions said of the region, without asking: None when it was
        not asked or did not answer."""
        if not is_opt_in_region(region):
            return True
        enabled = self._known.get(account_id)
        return None if enabled is None else region in enabled

    async def _enabled(self, account: AccountTarget) -> frozenset[str] | None:
        async with self._locks.setdefault(account.account_id, anyio.Lock()):
            if account.account_id not in self._known:
                # A role that cannot be assumed fails the scope here, as it always did.
                await self.aws.credentials_for(account)
                self._known[account.account_id] = await self._describe(account)
            return self._known[account.account_id]

    async def _describe(self, account: AccountTarget) -> frozenset[str] | None:
        ec2 = await self.aws.client("ec2", self.query_region, account)
        context = CallContext("ec2:DescribeRegions", account.account_id, self.query_region)
        try:
            response = await self.aws.call(ec2, "describe_regions", context, AllRegions=False)
            regions = frozenset(str(r["RegionName"]) for r in response.get("Regions") or () if r.get("RegionName"))
        except Exception as exc:  # an optional hint: any failure (denied, unparsable) falls back
            log.warning(
                "describe_regions_failed",
                account_id=account.account_id,
                error_type=exc.error_type if isinstance(exc, AwsError) else type(exc).__name__,
                fallback="the auth failure of a disabled region decides",
            )
            return None
        return regions
